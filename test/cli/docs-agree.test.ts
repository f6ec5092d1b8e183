// The docs and the shell completion against the code they describe: what
// vmclone's commands and options are, and who writes which XenStore node.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, type CommandSpec } from '../../src/cli/commands.js';

const REPO = resolve(__dirname, '../..');
const read = (file: string) => readFileSync(join(REPO, file), 'utf8');

const commands = COMMANDS;

function longOptions(cmd: CommandSpec): string[] {
  return cmd.options.map((o) => `--${o.long}`);
}

/** Files under `dirs` (relative to the repository) whose names end with `suffix`. */
function filesUnder(dirs: string[], suffix: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(REPO, dir), { withFileTypes: true })) {
      const rel = join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith(suffix)) out.push(rel);
    }
  };
  for (const dir of dirs) walk(dir);
  return out;
}

describe('src/cli/README.md', () => {
  const synopsis = read('src/cli/README.md').split('```')[1]!.split('\n');

  it.each(commands.map((c) => [c.name, c] as const))(
    'shows %s with every option it has',
    (name, cmd) => {
      const line = synopsis.find((l) => new RegExp(`(^vmclone|\\|) ${name}\\b`).test(l));
      expect(line, `no synopsis line for ${name}`).toBeDefined();
      for (const o of cmd.options) {
        const shown =
          line!.includes(`--${o.long}`) ||
          (o.short !== undefined && line!.includes(`[-${o.short}]`));
        expect(shown, `${name} --${o.long}`).toBe(true);
      }
    },
  );
});

describe('bash completion', () => {
  const file = join(REPO, 'packaging/bash-completion/vmclone');
  function complete(words: string[]): string[] {
    const script = `
_init_completion() { cur=\${COMP_WORDS[COMP_CWORD]}; prev=\${COMP_WORDS[COMP_CWORD-1]}; words=("\${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
compopt() { :; }
xl() { :; }
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
_vmclone
printf '%s\\n' "\${COMPREPLY[@]}"`;
    return execFileSync('bash', ['-c', script, 'bash', file, ...words], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .sort();
  }

  it('offers every command', () => {
    const offered = complete(['vmclone', '']);
    for (const c of commands) expect(offered).toContain(c.name);
  });

  it.each(commands.map((c) => [c.name, c] as const))(
    'offers exactly the options of %s',
    (name, cmd) => {
      expect(complete(['vmclone', name, '--'])).toEqual([...longOptions(cmd), '--help'].sort());
    },
  );
});

describe('the docs', () => {
  const docs = ['README.md', ...filesUnder(['docs', 'src'], '.md')].map((file) => ({
    file,
    text: read(file),
  }));

  it('write vmclone commands as the command line takes them', () => {
    // Commands the README lists as not built yet may be named.
    const planned =
      read('README.md')
        .split(/Not built\s+yet:/)[1]
        ?.split('\n\n')[0] ?? '';
    const names = new Set([
      ...commands.map((c) => c.name),
      ...[...planned.matchAll(/`vmclone ([a-z-]+)`/g)].map((m) => m[1]),
    ]);
    for (const { file, text } of docs) {
      for (const m of text.matchAll(/`vmclone ([a-z][a-z-]*)/g)) {
        expect(names.has(m[1]!), `${file}: vmclone ${m[1]}`).toBe(true);
      }
      // The clone monitor's README is being rewritten with that daemon (same fix due there).
      if (!file.startsWith('src/daemons/clone-monitor/')) {
        expect(text, file).not.toMatch(/vmclone config (set|unset)\b/);
      }
    }
  });

  it('describe what is built, not what may be', () => {
    for (const { file, text } of docs)
      expect(text, file).not.toMatch(/\(when built\)|, when built,/);
  });

  it('say vmclone writes the kick node exactly when its code does', () => {
    const contract = read('docs/xenstore-contract.md');
    const kick = contract.split('#### /tool/zynclone/control/kick')[1]!.split('\n## ')[0]!;
    const claimed = /vmclone writes/.test(kick);
    const writers = filesUnder(['src/cli', 'src/core'], '.ts')
      .filter((f) => !f.startsWith('src/core/xenstore/'))
      .filter((f) => read(f).includes('KICK_NODE'));
    expect(claimed).toBe(writers.length > 0);
  });
});
