// vmclone's command line as a user types it: help for every command, and for
// every kind of bad input an error that names what is wrong, with exit 2.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type TokenOption, tokenize } from '../../src/cli/args.js';
import { COMMANDS } from '../../src/cli/commands.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { runVmclone } from '../../src/cli/vmclone.js';

const root = mkdtempSync(join(tmpdir(), 'zc-args-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function vmclone(...argv: string[]) {
  const text = (s: PassThrough) => {
    let t = '';
    s.on('data', (c: Buffer) => {
      t += c.toString();
    });
    return () => t;
  };
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = text(stdout);
  const err = text(stderr);
  const code = await runVmclone(argv, {
    stdout,
    stderr,
    env: { ...process.env, ZYNCLONE_ROOT: root, XENSTORED_PATH: join(root, 'none') },
  });
  return { code, stdout: out(), stderr: err() };
}

/** A usage error: exit 2, the message first, then the usage of `command` (or vmclone's). */
async function usageError(argv: string[], message: string, command?: string) {
  const r = await vmclone(...argv);
  expect(r.code, argv.join(' ')).toBe(EXIT.USAGE);
  expect(r.stdout).toBe('');
  const [first, blank, usage] = r.stderr.split('\n');
  expect(first).toBe(`vmclone: ${message} [CLI_USAGE]`);
  expect(blank).toBe('');
  expect(usage).toMatch(new RegExp(`^Usage: vmclone ${command ?? '\\[options\\]'}`));
}

describe('vmclone help', () => {
  it('lists every command with its arguments', async () => {
    const r = await vmclone('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: vmclone \[options\] \[command\]\n/);
    expect(r.stdout).toMatch(/^ {2}switch-volume \[options\] <vm> <vdev> +move a shared volume/m);
    expect(r.stdout).toMatch(/^ {2}logs \[options\] \[daemon\] /m);
    for (const c of COMMANDS)
      expect(r.stdout).toMatch(new RegExp(`^  ${c.name} \\[options\\]`, 'm'));
    expect((await vmclone('-h')).stdout).toBe(r.stdout);
    expect((await vmclone('help')).stdout).toBe(r.stdout);
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))(
    'shows %s with its arguments and every option, by --help, -h and help',
    async (name, c) => {
      const r = await vmclone(name, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toMatch(new RegExp(`^Usage: vmclone ${name} \\[options\\]`));
      for (const a of c.arguments) expect(r.stdout).toMatch(new RegExp(`^ {2}${a.name} +`, 'm'));
      for (const o of c.options) expect(r.stdout).toContain(`--${o.long}`);
      expect(r.stdout).toContain('-h, --help');
      expect((await vmclone('help', name)).stdout).toBe(r.stdout);
      // --help wins over anything else on the line, wrong or not.
      expect((await vmclone(name, '--bogus', '-h')).stdout).toBe(r.stdout);
    },
  );

  it('wraps descriptions under their column and shows choices and defaults', async () => {
    const sv = (await vmclone('switch-volume', '--help')).stdout;
    expect(sv).toContain('  --to <side>  the new holder (choices: "clone", "original")\n');
    expect(sv).toContain(
      '  --force      detach even if the guest does not let go (xl block-detach -f):\n' +
        '               the guest may crash or lose unwritten data\n',
    );
    expect((await vmclone('logs', '--help')).stdout).toContain(
      '  -n, --lines <n>  how many recent lines (default: 100)\n',
    );
    for (const line of sv.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
  });
});

describe('vmclone usage errors', () => {
  it('name an unknown or missing command, with a near miss', async () => {
    await usageError([], 'no command given');
    await usageError(['frobnicate'], "unknown command 'frobnicate'");
    await usageError(['lsit'], "unknown command 'lsit' (did you mean list?)");
    await usageError(['help', 'stauts'], "unknown command 'stauts' (did you mean status?)");
    await usageError(['--bogus', 'list'], "unknown option '--bogus'");
  });

  it('name an unknown option and the command it was given to', async () => {
    await usageError(['list', '--bogus'], "unknown option '--bogus' for 'list'", 'list');
    await usageError(
      ['status', 'web01', '--jsn'],
      "unknown option '--jsn' for 'status' (did you mean --json?)",
      'status',
    );
    await usageError(['list', '-x'], "unknown option '-x' for 'list'", 'list');
  });

  it('name an option that lacks its value, or has one it does not take', async () => {
    await usageError(
      ['create', 'web01', '--config'],
      "option '--config <file>' needs a value",
      'create',
    );
    await usageError(
      ['create', 'web01', '--config', '-q'],
      "option '--config <file>' needs a value, got the option '-q' (write --config=-q if that is the value)",
      'create',
    );
    await usageError(['list', '--json=yes'], "option '--json' takes no value", 'list');
  });

  it('name a value outside its choices, a required option and options that exclude each other', async () => {
    await usageError(
      ['switch-volume', 'db01', 'xvdb', '--to', 'sideways'],
      'option \'--to <side>\' cannot be "sideways": it is one of clone, original',
      'switch-volume',
    );
    await usageError(
      ['switch-volume', 'db01', 'xvdb'],
      "option '--to <side>' is required",
      'switch-volume',
    );
    await usageError(
      ['create', 'web01', '--memory', '--offline'],
      "option '--memory' cannot be used with option '--offline'",
      'create',
    );
    await usageError(
      ['create', 'web01', '--online', '--memory'],
      "option '--online' cannot be used with option '--memory'",
      'create',
    );
  });

  it('name a missing argument and arguments too many', async () => {
    await usageError(['status'], "missing required argument 'vm'", 'status');
    await usageError(
      ['list', 'extra'],
      "too many arguments for 'list': it takes none, got 'extra'",
      'list',
    );
    await usageError(
      ['status', 'web01', 'db01'],
      "too many arguments for 'status': it takes <vm>, got 'web01' 'db01'",
      'status',
    );
  });

  it('come as JSON on stdout too when --json was asked for', async () => {
    const r = await vmclone('list', '--json', 'extra');
    expect(r.code).toBe(EXIT.USAGE);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        code: 'CLI_USAGE',
        message: "too many arguments for 'list': it takes none, got 'extra'",
        exitCode: EXIT.USAGE,
      },
    });
  });
});

describe('vmclone option syntax', () => {
  it('takes --opt=value, options anywhere, and -- before an argument that starts with "-"', async () => {
    const inline = await vmclone('config', 'web01', '--json');
    expect(JSON.parse(inline.stdout).vm).toBe('web01');
    expect(JSON.parse((await vmclone('config', '--json', 'web01')).stdout).vm).toBe('web01');
    // After --, "-x" is the VM's name (not a valid one), not an option.
    const r = await vmclone('status', '--', '-x');
    expect(r.code).toBe(EXIT.CONFIG);
    expect(r.stderr).toMatch(/invalid VM name "-x".*\[VM_NAME_INVALID\]/);
  });

  it('takes short options grouped and with their value attached', async () => {
    const r = await vmclone('logs', '-fn', 'x', 'net-monitor');
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toMatch(/--lines must be a positive integer.*\[LOGS_USAGE\]/);
    const attached = await vmclone('logs', '-n0', 'net-monitor');
    expect(attached.stderr).toMatch(/--lines must be a positive integer, got 0/);
  });
});

describe('tokenize', () => {
  // vmclone splits its words itself (Node's parseArgs costs start-up time);
  // it must split them as parseArgs does, for any words and any options.
  const letter = fc.constantFrom('a', 'b', 'n', 'h', 'q', 'x', '=', '-', '1');
  const word = fc.oneof(
    fc.string({ maxLength: 6 }),
    fc.stringMatching(/^--?[abnqhx1=-]{0,4}(=[a-z-]{0,3})?$/),
    fc.constantFrom('--', '-', '', '--a=', '-n5', '--name', '--name=v'),
  );
  const options = fc.uniqueArray(
    fc.record({
      long: fc.constantFrom('all', 'name', 'quiet', 'a', 'n', 'x'),
      short: fc.option(letter, { nil: undefined }),
      takesValue: fc.boolean(),
    }),
    { selector: (o) => o.long, maxLength: 4 },
  );

  function nodeTokens(argv: string[], opts: readonly TokenOption[]) {
    const { tokens } = parseArgs({
      args: argv,
      options: Object.fromEntries(
        opts.map((o) => [
          o.long,
          {
            type: o.takesValue ? ('string' as const) : ('boolean' as const),
            ...(o.short === undefined ? {} : { short: o.short }),
          },
        ]),
      ),
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    return tokens.map(({ index: _, ...t }) => t);
  }

  it('splits any words into the tokens node:util parseArgs gives', () => {
    fc.assert(
      fc.property(fc.array(word, { maxLength: 6 }), options, (argv, opts) => {
        // parseArgs wants each short letter on one option only.
        const shorts = opts.filter((o) => o.short !== undefined).map((o) => o.short);
        fc.pre(new Set(shorts).size === shorts.length);
        expect(tokenize(argv, opts)).toEqual(nodeTokens(argv, opts));
      }),
      { numRuns: 2000 },
    );
  });
});
