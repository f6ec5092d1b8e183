/**
 * vmclone's command line parser and help texts, driven by the table in
 * commands.ts. tokenize() splits the words (--opt=value, -qn 5, --) exactly
 * as node:util's parseArgs does (test/cli/args.test.ts compares the two);
 * what they mean and every usage error is decided here, so each error names
 * the option or argument that is wrong. A parser library cost as much as all
 * of `--version`, and parseArgs, which Node loads as two modules on its first
 * call, a fortieth of `node -e 0`.
 */
import { ZynCloneError } from '../errors/index.js';
import { COMMANDS, type CommandSpec, HELP_EPILOGUE, type OptionSpec } from './commands.js';

/** A command line vmclone cannot run: the message names what is wrong; `help` shows what is right. */
export class UsageError extends ZynCloneError<'CLI_USAGE'> {
  constructor(
    message: string,
    readonly help: string,
  ) {
    super('CLI_USAGE', message);
  }
}

/** The options given to a command, read by their long names. */
export class ParsedOptions {
  constructor(
    private readonly spec: CommandSpec,
    private readonly given: ReadonlyMap<string, string | string[] | true>,
  ) {}

  flag(long: string): boolean {
    return this.given.get(this.known(long).long) === true;
  }

  /** The option's value, else its default. */
  value(long: string): string | undefined {
    const o = this.known(long);
    const v = this.given.get(o.long);
    return typeof v === 'string' ? v : o.default;
  }

  /** Every value of a repeatable option, in the order given. */
  list(long: string): string[] {
    const v = this.given.get(this.known(long).long);
    return Array.isArray(v) ? v : [];
  }

  private known(long: string): OptionSpec {
    const o = this.spec.options.find((x) => x.long === long);
    if (o === undefined) throw new Error(`vmclone ${this.spec.name} has no option --${long}`);
    return o;
  }
}

export type CommandLine =
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'version' }
  | {
      readonly kind: 'run';
      readonly command: CommandSpec;
      /** Positional arguments by name; an optional one not given is absent. */
      readonly args: Readonly<Record<string, string>>;
      readonly options: ParsedOptions;
    };

/** Parses `argv` (without node and script); throws UsageError for a line vmclone cannot run. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError('no command given', topHelp());
  if (first === '-h' || first === '--help') return { kind: 'help', text: topHelp() };
  if (first === '-V' || first === '--version') return { kind: 'version' };
  if (first === 'help') {
    if (rest[0] === undefined) return { kind: 'help', text: topHelp() };
    return { kind: 'help', text: commandHelp(findCommand(rest[0])) };
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}'`, topHelp());
  return parseCommand(findCommand(first), rest);
}

function findCommand(name: string): CommandSpec {
  const command = COMMANDS.find((c) => c.name === name);
  if (command !== undefined) return command;
  const hint = suggestion(
    name,
    COMMANDS.map((c) => c.name),
  );
  throw new UsageError(`unknown command '${name}'${hint}`, topHelp());
}

/** A word of the command line, as node:util's parseArgs reports it with `tokens: true`. */
export type Token =
  | {
      readonly kind: 'option';
      /** The long name, or the letter of a short option nobody declared. */
      readonly name: string;
      /** As written: `--name` or `-n`. */
      readonly rawName: string;
      readonly value: string | undefined;
      /** Whether the value was in the same word (`--name=value`, `-nvalue`). */
      readonly inlineValue: boolean | undefined;
    }
  | { readonly kind: 'positional'; readonly value: string }
  | { readonly kind: 'option-terminator' };

/** What tokenize() needs to know of an option: whether it takes a value, and its letter. */
export interface TokenOption {
  readonly long: string;
  readonly short?: string;
  readonly takesValue: boolean;
}

/**
 * Splits `argv` into options and positionals as node:util's parseArgs does
 * with `strict: false, allowPositionals: true, tokens: true`: an option that
 * takes a value takes the next word, whatever it is; `-abc` is three flags
 * unless one takes a value, which then takes the rest of the word.
 */
export function tokenize(argv: readonly string[], options: readonly TokenOption[]): Token[] {
  const longOf = (letter: string) => options.find((o) => o.short === letter)?.long ?? letter;
  const takesValue = (long: string) => options.some((o) => o.long === long && o.takesValue);
  const tokens: Token[] = [];
  const words = [...argv];
  while (words.length > 0) {
    const word = words.shift()!;
    if (word === '--') {
      tokens.push({ kind: 'option-terminator' });
      for (const value of words.splice(0)) tokens.push({ kind: 'positional', value });
    } else if (word.length < 2 || word[0] !== '-') {
      tokens.push({ kind: 'positional', value: word });
    } else if (word[1] !== '-') {
      const name = longOf(word[1]!);
      const rawName = word.slice(0, 2);
      if (word.length === 2) {
        const value = takesValue(name) && words.length > 0 ? words.shift() : undefined;
        tokens.push({
          kind: 'option',
          name,
          rawName,
          value,
          inlineValue: value === undefined ? undefined : false,
        });
      } else if (takesValue(name)) {
        tokens.push({ kind: 'option', name, rawName, value: word.slice(2), inlineValue: true });
      } else {
        // -abc: each letter on its own; the first that takes a value takes the rest.
        const letters = word.slice(1).split('');
        const at = letters.findIndex((l, i) => i < letters.length - 1 && takesValue(longOf(l)));
        const split =
          at < 0
            ? letters.map((l) => `-${l}`)
            : [...letters.slice(0, at).map((l) => `-${l}`), `-${word.slice(at + 1)}`];
        words.unshift(...split);
      }
    } else {
      // As parseArgs: `--=x` is an option named "=x", `--==x` one named "" with the value "=x".
      if (word.indexOf('=', 3) < 0) {
        const name = word.slice(2);
        const value = takesValue(name) && words.length > 0 ? words.shift() : undefined;
        tokens.push({
          kind: 'option',
          name,
          rawName: word,
          value,
          inlineValue: value === undefined ? undefined : false,
        });
      } else {
        const eq = word.indexOf('=');
        const name = word.slice(2, eq);
        tokens.push({
          kind: 'option',
          name,
          rawName: `--${name}`,
          value: word.slice(eq + 1),
          inlineValue: true,
        });
      }
    }
  }
  return tokens;
}

function parseCommand(command: CommandSpec, argv: string[]): CommandLine {
  const help = () => commandHelp(command);
  const tokens = tokenize(argv, [
    ...command.options.map((o) => ({ ...o, takesValue: o.value !== undefined })),
    { long: 'help', short: 'h', takesValue: false },
  ]);
  // As everywhere, --help wins over whatever else is wrong on the line.
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help'))
    return { kind: 'help', text: help() };

  const given = new Map<string, string | string[] | true>();
  const order: OptionSpec[] = [];
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') positionals.push(t.value);
    if (t.kind !== 'option') continue;
    const o = command.options.find((x) => x.long === t.name);
    if (o === undefined) {
      const names = command.options.map((x) => `--${x.long}`);
      throw new UsageError(
        `unknown option '${t.rawName}' for '${command.name}'${suggestion(t.rawName, names)}`,
        help(),
      );
    }
    order.push(o);
    if (o.value === undefined) {
      if (t.value !== undefined) throw new UsageError(`option '${term(o)}' takes no value`, help());
      given.set(o.long, true);
      continue;
    }
    if (t.value === undefined) throw new UsageError(`option '${term(o)}' needs a value`, help());
    if (!t.inlineValue && t.value.startsWith('-') && t.value !== '-') {
      throw new UsageError(
        `option '${term(o)}' needs a value, got the option '${t.value}' (write --${o.long}=${t.value} if that is the value)`,
        help(),
      );
    }
    if (o.choices !== undefined && !o.choices.includes(t.value)) {
      throw new UsageError(
        `option '${term(o)}' cannot be ${JSON.stringify(t.value)}: it is one of ${o.choices.join(', ')}`,
        help(),
      );
    }
    const before = given.get(o.long);
    given.set(o.long, o.repeatable ? [...(Array.isArray(before) ? before : []), t.value] : t.value);
  }

  for (const o of command.options) {
    if (o.required && !given.has(o.long)) {
      throw new UsageError(`option '${term(o)}' is required`, help());
    }
  }
  for (const o of order) {
    const other = order.find((x) => o.conflicts?.includes(x.long));
    if (other !== undefined) {
      throw new UsageError(
        `option '--${o.long}' cannot be used with option '--${other.long}'`,
        help(),
      );
    }
  }

  const args: Record<string, string> = {};
  command.arguments.forEach((a, i) => {
    const value = positionals[i];
    if (value !== undefined) args[a.name] = value;
    else if (!a.optional) throw new UsageError(`missing required argument '${a.name}'`, help());
  });
  if (positionals.length > command.arguments.length) {
    const takes = command.arguments.map((a) => (a.optional ? `[${a.name}]` : `<${a.name}>`));
    throw new UsageError(
      `too many arguments for '${command.name}': it takes ${takes.join(' ') || 'none'}, got ${positionals.map((p) => `'${p}'`).join(' ')}`,
      help(),
    );
  }
  return { kind: 'run', command, args, options: new ParsedOptions(command, given) };
}

/** " (did you mean list?)" for a near miss of `names` (one edit, two in longer words), else "". */
function suggestion(word: string, names: readonly string[]): string {
  const distances = names.map((n) => editDistance(word, n));
  const best = Math.min(...distances);
  if (best > (word.length > 3 ? 2 : 1)) return '';
  return ` (did you mean ${names.filter((_, i) => distances[i] === best).join(' or ')}?)`;
}

/** Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
      }
    }
  }
  return d[a.length]![b.length]!;
}

// ---- help -------------------------------------------------------------------

/** Help texts are wrapped to this width, terminal or not, so they read the same in a man page. */
const WIDTH = 80;

const HELP_OPTION = { term: '-h, --help', description: 'display help for command' };

/** "--config <file>", "-q, --quiet". */
function term(o: OptionSpec): string {
  return `${o.short ? `-${o.short}, ` : ''}--${o.long}${o.value === undefined ? '' : ` <${o.value}>`}`;
}

function optionDescription(o: OptionSpec): string {
  const notes = [
    o.choices && `(choices: ${o.choices.map((c) => JSON.stringify(c)).join(', ')})`,
    o.default !== undefined && `(default: ${o.default})`,
  ];
  return [o.description, ...notes.filter((n) => typeof n === 'string')].join(' ');
}

function usageTerm(c: CommandSpec): string {
  const args = c.arguments.map((a) => (a.optional ? `[${a.name}]` : `<${a.name}>`));
  return [c.name, '[options]', ...args].join(' ');
}

/** Greedy word wrap to `width` columns; a longer word stands alone. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

type Item = { term: string; description: string };

/** Sections of two-column items ("  term  description"), the terms padded to one width. */
function sections(parts: ReadonlyArray<[string, Item[]]>): string {
  const width = Math.max(...parts.flatMap(([, items]) => items.map((i) => i.term.length)));
  const indent = ' '.repeat(2 + width + 2);
  return parts
    .filter(([, items]) => items.length > 0)
    .map(([title, items]) => {
      const lines = items.map(({ term: t, description }) => {
        const [head, ...more] = wrap(description, WIDTH - indent.length);
        return [`  ${t.padEnd(width)}  ${head}`, ...more.map((l) => indent + l)].join('\n');
      });
      return `${title}:\n${lines.join('\n')}\n`;
    })
    .join('\n');
}

/** `vmclone --help`: commands, examples, exit statuses, environment. */
export function topHelp(): string {
  const body = sections([
    ['Options', [{ term: '-V, --version', description: 'output the version number' }, HELP_OPTION]],
    [
      'Commands',
      [
        ...COMMANDS.map((c) => ({ term: usageTerm(c), description: c.description })),
        { term: 'help [command]', description: 'display help for command' },
      ],
    ],
  ]);
  return `Usage: vmclone [options] [command]\n\nCreate and manage clones of Xen virtual machines.\n\n${body}${HELP_EPILOGUE}\n`;
}

/** `vmclone COMMAND --help`. */
export function commandHelp(c: CommandSpec): string {
  const body = sections([
    ['Arguments', c.arguments.map((a) => ({ term: a.name, description: a.description }))],
    [
      'Options',
      [
        ...c.options.map((o) => ({ term: term(o), description: optionDescription(o) })),
        HELP_OPTION,
      ],
    ],
  ]);
  return `Usage: vmclone ${usageTerm(c)}\n\n${wrap(c.description, WIDTH).join('\n')}\n\n${body}`;
}
