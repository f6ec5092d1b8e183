import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { listedCommands } from '../../packaging/deb/generate.js';
import { runVmclone } from '../../src/cli/vmclone.js';

const file = resolve(__dirname, '../../packaging/bash-completion/vmclone');

/** Runs the completion function for `words` (the last one being completed). */
function complete(words: string[]): string[] {
  const script = `
_init_completion() { cur=\${COMP_WORDS[COMP_CWORD]}; prev=\${COMP_WORDS[COMP_CWORD-1]}; words=("\${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
compopt() { :; }
xl() { printf 'Name ID Mem VCPUs State Time(s)\\nDomain-0 0 1 1 r----- 0\\nweb01 1 64 2 -b---- 0\\n'; }
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
_vmclone
printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['-c', script, 'bash', file, ...words], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}

describe('bash completion', () => {
  it('completes commands, options, domains and config keys', () => {
    expect(complete(['vmclone', 'de'])).toEqual(['deactivate']);
    expect(complete(['vmclone', 'create', '--m'])).toEqual(['--memory']);
    expect(complete(['vmclone', 'create', 'w'])).toEqual(['web01']);
    expect(complete(['vmclone', 'config', 'web01', '--set', 'mac_'])).toEqual(['mac_policy=']);
    expect(complete(['vmclone', 'sw'])).toEqual(['switch-volume']);
    expect(complete(['vmclone', 'switch-volume', 'db01', 'xvdb', '--to', 'c'])).toEqual(['clone']);
  });

  it('offers every command vmclone --help lists', async () => {
    const out = new PassThrough();
    let help = '';
    out.on('data', (c: Buffer) => {
      help += c.toString();
    });
    await runVmclone(['--help'], { stdout: out, stderr: new PassThrough(), env: process.env });
    const commands = listedCommands(help);
    expect(commands).toContain('logs');
    expect(complete(['vmclone', '']).filter((w) => !w.startsWith('-'))).toEqual(
      expect.arrayContaining(commands),
    );
  });
});
