// The package's generated files agree with their sources: the man pages with
// the commands' --help (run from the build output, as make deb runs the
// bundles) and docs/configuration.md, base.json with the schema.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  baseJson,
  commandHelp,
  configManPage,
  listedCommands,
  vmcloneManPage,
  zyncloneManPage,
} from '../../packaging/deb/generate.js';
import { effectiveConfig } from '../../src/core/config/index.js';
import { CONFIG_KEYS, CONFIG_SCHEMA, configJsonSchema } from '../../src/core/config/schema.js';
import { validateVmName, zynclonePaths } from '../../src/core/paths.js';

const repo = resolve(__dirname, '../..');
const vmclone = commandHelp([process.execPath, join(repo, 'dist/src/bin/vmclone.js')]);
const zynclone = commandHelp([process.execPath, join(repo, 'dist/src/bin/zynclone.js')]);
const work = mkdtempSync(join(tmpdir(), 'zc-generate-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The page as man shows it, lines joined: what a reader sees. */
function rendered(page: string): string {
  const file = join(work, 'page.man');
  writeFileSync(file, page);
  const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-P', '-cbou', file], {
    encoding: 'utf8',
    env: { ...process.env, MANWIDTH: '200' },
  });
  expect(r.stderr, 'groff warnings').toBe('');
  return r.stdout;
}

/** Words of a text in order, so line breaks and indentation do not matter. */
const words = (text: string) => text.split(/\s+/).filter(Boolean).join(' ');

describe('vmclone(1)', () => {
  const page = vmcloneManPage(vmclone);
  const shown = words(rendered(page.text));

  it('holds every command with its whole --help, as the command prints it', () => {
    const commands = listedCommands(vmclone(['--help']));
    expect(commands).toEqual(expect.arrayContaining(['create', 'remove', 'config', 'doctor']));
    for (const cmd of commands) {
      expect(shown, cmd).toContain(words(vmclone([cmd, '--help'])));
    }
    expect(shown).toContain(words(vmclone(['--help'])));
  });

  it('is section 1 and carries the package version', () => {
    expect(page.file).toBe('man1/vmclone.1');
    const version = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version;
    expect(page.text).toMatch(new RegExp(`^\\.TH VMCLONE 1 "" "zynclone ${version}"`, 'm'));
  });
});

describe('zynclone(8)', () => {
  it('holds every subcommand the command lists, with its help', () => {
    const shown = words(rendered(zyncloneManPage(zynclone).text));
    const subcommands = listedCommands(zynclone(['--help']));
    expect(subcommands).toEqual(expect.arrayContaining(['net-monitor', 'clone-monitor']));
    for (const sub of subcommands) expect(shown, sub).toContain(words(zynclone([sub, '--help'])));
  });
});

describe('zynclone-config(5)', () => {
  const doc = readFileSync(join(repo, 'docs/configuration.md'), 'utf8');
  const shown = rendered(configManPage(doc, '0.0.0').text);

  it('has a subsection for every key of the schema, with its default', () => {
    for (const key of CONFIG_KEYS) {
      const section = shown.split(new RegExp(`\\n {3}${key}\\n`))[1]?.split(/\n {3}\S/)[0];
      expect(section, key).toBeDefined();
      const d = CONFIG_SCHEMA[key].default;
      const text = typeof d === 'string' ? `"${d}"` : JSON.stringify(d);
      expect(words(section!), key).toContain(text);
    }
  });

  it('keeps code blocks verbatim', () => {
    expect(shown).toContain('"clone_vif_mask": "all",');
    expect(shown).toContain('# overridden: clone_kind clone_vif_mask');
  });
});

describe('the packaged base.json', () => {
  const text = baseJson(configJsonSchema() as never);

  it('sets no key, so every value stays the built-in default', () => {
    const root = join(work, 'root');
    const paths = zynclonePaths(root);
    rmSync(root, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', paths.configDir]);
    writeFileSync(paths.baseConfigFile, text);
    const eff = effectiveConfig(validateVmName('web1'), paths);
    expect(Object.values(eff.origins).every((o) => o === 'default')).toBe(true);
    expect(JSON.parse(text).$version).toBe(1);
  });

  it('explains every key with its default in $comment', () => {
    const comment = (JSON.parse(text) as { $comment: string[] }).$comment.join('\n');
    for (const key of CONFIG_KEYS) {
      expect(comment).toContain(`${key} (default ${JSON.stringify(CONFIG_SCHEMA[key].default)})`);
    }
  });
});
