/**
 * Generated files of the Debian package, from the sources users already see:
 * man pages from the commands' own --help output (help2man's approach) and
 * from docs/configuration.md, and the commented base.json from the JSON
 * Schema. Only node: imports, so that the shipped Node runs this file as is
 * (type stripping) while the build has no TypeScript step of its own.
 *
 *   node generate.ts man OUTDIR LIBDIR [CONFIG_MD]  man1/vmclone.1, man8/zynclone.8, man5/zynclone-config.5
 *                                                   from LIBDIR/{vmclone,zynclone}.mjs run by this Node
 *   node generate.ts base-json SCHEMA               prints base.json
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Runs a command (argv, never a shell) and returns its stdout: the help texts. */
export type HelpSource = (argv: readonly string[]) => string;

export function commandHelp(program: readonly string[]): HelpSource {
  return (argv) => {
    const r = spawnSync(program[0]!, [...program.slice(1), ...argv], {
      encoding: 'utf8',
      env: { ...process.env, COLUMNS: '80', NO_COLOR: '1' },
    });
    // Some subcommands print their usage for --help but exit 2; the text counts.
    if (r.error || r.stdout.trim() === '') {
      throw new Error(`${[...program, ...argv].join(' ')} printed no help: ${r.error ?? r.stderr}`);
    }
    return r.stdout;
  };
}

/** Text as roff: backslashes, leading control characters, and minus signs escaped. */
export function roffText(line: string): string {
  const escaped = line.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

function preformatted(text: string): string[] {
  const lines = text.replace(/\n+$/, '').split('\n');
  return ['.nf', ...lines.map((l) => (l === '' ? '' : roffText(l))), '.fi'];
}

function header(name: string, section: number, version: string, title: string): string[] {
  return [
    `.\\" Generated from ${section === 5 ? 'docs/configuration.md' : `${name} --help`}; do not edit.`,
    `.TH ${name.toUpperCase()} ${section} "" "zynclone ${version}" "${title}"`,
  ];
}

/** The names in a help text's command list (`Commands:` or `commands:`), in order. */
export function listedCommands(help: string): string[] {
  const block = help.split(/^commands:\s*$/im)[1];
  if (block === undefined) return [];
  const names: string[] = [];
  for (const line of block.split('\n').slice(1)) {
    if (line.trim() === '') break;
    const m = /^ {2}([a-z][a-z0-9-]*)\b/.exec(line);
    if (m && m[1] !== 'help') names.push(m[1]!);
  }
  return names;
}

export interface ManPage {
  /** e.g. man1/vmclone.1 */
  readonly file: string;
  readonly text: string;
}

function commandPage(
  name: string,
  section: 1 | 8,
  summary: string,
  help: HelpSource,
  seeAlso: string,
): ManPage {
  const version = help(['--version']).trim();
  const top = help(['--help']);
  const lines = [
    ...header(name, section, version, section === 1 ? 'User Commands' : 'System Administration'),
    '.SH NAME',
    `${name} \\- ${summary}`,
    '.SH SYNOPSIS',
    `.B ${name}`,
    '.I command',
    '.RI [ options ]',
    '.SH DESCRIPTION',
    ...preformatted(top),
  ];
  const commands = listedCommands(top);
  if (commands.length > 0) lines.push('.SH COMMANDS');
  for (const cmd of commands) {
    lines.push(`.SS ${cmd}`, ...preformatted(help([cmd, '--help'])));
  }
  lines.push('.SH SEE ALSO', seeAlso);
  return { file: `man${section}/${name}.${section}`, text: `${lines.join('\n')}\n` };
}

export function vmcloneManPage(help: HelpSource): ManPage {
  return commandPage(
    'vmclone',
    1,
    'create and manage clones of Xen virtual machines',
    help,
    '.BR zynclone (8),\n.BR zynclone-config (5),\n.BR xl (1)',
  );
}

export function zyncloneManPage(help: HelpSource): ManPage {
  return commandPage(
    'zynclone',
    8,
    'ZynClone daemons (clone monitor, net monitor) and tools',
    help,
    '.BR vmclone (1),\n.BR zynclone-config (5),\n.BR systemctl (1),\n.BR journalctl (1)',
  );
}

function inline(text: string): string {
  // `code` in bold, **strong** in bold; everything else as text.
  return roffText(text)
    .replace(/`([^`]+)`/g, '\\fB$1\\fR')
    .replace(/\*\*([^*]+)\*\*/g, '\\fB$1\\fR');
}

/** docs/configuration.md as zynclone-config(5): headings, paragraphs, lists, tables, code. */
export function configManPage(markdown: string, version: string): ManPage {
  const out = [
    ...header('zynclone-config', 5, version, 'File Formats'),
    '.SH NAME',
    'zynclone-config \\- ZynClone configuration: base.json, override files, generated guest files',
  ];
  const lines = markdown.split('\n');
  let i = 0;
  let paragraph: string[] = [];
  const flush = () => {
    if (paragraph.length > 0) out.push('.PP', ...paragraph.map(inline));
    paragraph = [];
  };
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.startsWith('```')) {
      flush();
      const code: string[] = [];
      for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) code.push(lines[i]!);
      out.push('.PP', '.RS 4', ...preformatted(code.join('\n')), '.RE');
    } else if (/^#{1,3} /.test(line)) {
      flush();
      const [hashes, ...words] = line.split(' ');
      const title = words.join(' ').replace(/`/g, '');
      if (hashes === '##') out.push(`.SH ${roffText(title.toUpperCase())}`);
      else if (hashes === '###') out.push(`.SS ${roffText(title)}`);
      else out.push('.SH DESCRIPTION');
    } else if (line.startsWith('|')) {
      flush();
      const rows: string[][] = [];
      for (; i < lines.length && lines[i]!.startsWith('|'); i++) {
        const cells = lines[i]!.slice(1, -1).split(' | ');
        if (!cells.every((c) => /^-+$/.test(c.trim()))) rows.push(cells.map((c) => c.trim()));
      }
      i--;
      for (const [first, ...rest] of rows) {
        out.push('.TP', inline(first ?? ''), inline(rest.join('; ')));
      }
    } else if (/^- /.test(line)) {
      flush();
      out.push('.IP \\(bu 2', inline(line.slice(2)));
    } else if (/^ {2}\S/.test(line) && out.at(-2) === '.IP \\(bu 2') {
      out.push(inline(line.trim()));
    } else if (line.trim() === '') {
      flush();
    } else {
      paragraph.push(line);
    }
    i++;
  }
  flush();
  out.push('.SH SEE ALSO', '.BR vmclone (1),\n.BR zynclone (8)');
  return { file: 'man5/zynclone-config.5', text: `${out.join('\n')}\n` };
}

interface SchemaProperty {
  description?: string;
  default?: unknown;
}

/**
 * The base.json the package installs: no key set (every value is the built-in
 * default, so new defaults reach hosts that never changed them), with each
 * key, its default and its meaning in `$comment` for whoever opens the file.
 */
export function baseJson(schema: {
  properties: Record<string, SchemaProperty>;
}): string {
  const keys = Object.entries(schema.properties).filter(([k]) => !k.startsWith('$'));
  const comment = [
    'ZynClone: defaults for every VM. override/<vm>.json changes them for one VM.',
    'Every key is optional; to change one, add it next to "$version", e.g. "clone_kind": "offline".',
    'Reference: zynclone-config(5). Check with: vmclone config <vm>.',
    '',
    ...keys.map(([k, p]) => `${k} (default ${JSON.stringify(p.default)}): ${p.description ?? ''}`),
  ];
  const doc = {
    $schema: 'zynclone-config.schema.json',
    $comment: comment,
    $version: (schema.properties.$version as { maximum?: number } | undefined)?.maximum ?? 1,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function main(argv: string[]): void {
  const [what, ...args] = argv;
  if (what === 'man' && (args.length === 2 || args.length === 3)) {
    const [outDir, libDir, configDoc = 'docs/configuration.md'] = args as [string, string, string?];
    const vm = commandHelp([process.execPath, join(libDir, 'vmclone.mjs')]);
    const pages = [
      vmcloneManPage(vm),
      zyncloneManPage(commandHelp([process.execPath, join(libDir, 'zynclone.mjs')])),
      configManPage(readFileSync(configDoc, 'utf8'), vm(['--version']).trim()),
    ];
    for (const page of pages) {
      const file = join(outDir, page.file);
      mkdirSync(join(file, '..'), { recursive: true });
      writeFileSync(file, page.text);
    }
  } else if (what === 'base-json' && args.length === 1) {
    process.stdout.write(baseJson(JSON.parse(readFileSync(args[0]!, 'utf8'))));
  } else {
    process.stderr.write('usage: generate.ts man OUTDIR LIBDIR [CONFIG_MD] | base-json SCHEMA\n');
    process.exitCode = 2;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2));
}
