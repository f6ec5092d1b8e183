import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.js';
import { createProgress } from '../../src/cli/progress.js';
import { runVmclone } from '../../src/cli/vmclone.js';
import { CloneError } from '../../src/core/clones/errors.js';
import { zynclonePaths } from '../../src/core/paths.js';
import { openStateStore } from '../../src/core/state/index.js';

function sink(isTTY = false) {
  const s = new PassThrough() as PassThrough & { isTTY?: boolean; text(): string };
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.isTTY = isTTY;
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

describe('vmclone command line', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'zc-cli-'));
    // web01 is a VM of this host: it has an xl config file.
    mkdirSync(join(root, 'etc/xen'), { recursive: true });
    writeFileSync(join(root, 'etc/xen/web01.cfg'), 'name = "web01"\n');
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  async function vmclone(...argv: string[]) {
    const stdout = sink();
    const stderr = sink();
    const code = await runVmclone(argv, {
      stdout,
      stderr,
      env: { ...process.env, ZYNCLONE_ROOT: root, NO_COLOR: '1' },
    });
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  }

  it('prints help with examples and the exit codes', async () => {
    const r = await vmclone('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toMatch(/3\s+busy/);
    for (const c of [
      'create',
      'start',
      'stop',
      'activate',
      'deactivate',
      'remove',
      'list',
      'status',
      'config',
    ]) {
      expect(r.stdout).toContain(`  ${c}`);
    }
  });

  it('exits 2 on usage errors', async () => {
    expect((await vmclone('frobnicate')).code).toBe(EXIT.USAGE);
    expect((await vmclone('create')).code).toBe(EXIT.USAGE);
    expect((await vmclone('create', 'web01', '--offline', '--memory')).code).toBe(EXIT.USAGE);
    const bad = await vmclone('config', 'web01', '--set', 'novalue');
    expect(bad.code).toBe(EXIT.USAGE);
    expect(bad.stderr).toMatch(/--set needs key=value/);
  });

  it('shows the effective config with the origin of each value, and changes it', async () => {
    const set = await vmclone(
      'config',
      'web01',
      '--set',
      'clone_vif_mask=0x5',
      '--set',
      'start_on_create=no',
    );
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/clone_vif_mask\s+"0,2"\s+override/);
    expect(set.stdout).toMatch(/mac_policy\s+"keep"\s+default/);
    const generated = readFileSync(join(root, 'etc/xen/clone/guest/web01.cfg'), 'utf8');
    expect(generated).toContain('start_on_create = false');
    const json = JSON.parse((await vmclone('config', 'web01', '--json')).stdout);
    expect(json.values.clone_vif_mask).toBe('0,2');
    expect(json.origins.clone_vif_mask).toBe('override');
    expect(json.origins.clone_kind).toBe('default');
    const unset = await vmclone('config', 'web01', '--unset', 'clone_vif_mask', '--json');
    expect(JSON.parse(unset.stdout).origins.clone_vif_mask).toBe('default');
  });

  it('refuses a bad config value with exit 6, naming the key', async () => {
    const r = await vmclone('config', 'web01', '--set', 'clone_kind=fast');
    expect(r.code).toBe(EXIT.CONFIG);
    expect(r.stderr).toMatch(/clone_kind.*"offline", "online", "memory"/);
    expect((await vmclone('config', 'bad/name')).code).toBe(EXIT.CONFIG);
  });

  it('refuses to configure a VM this host does not know unless --force, writing nothing', async () => {
    const r = await vmclone('config', 'nosuchvm', '--set', 'clone_kind=offline');
    expect(r.code).toBe(EXIT.NOT_FOUND);
    expect(r.stderr).toMatch(/VM nosuchvm is not known here: .*--force/);
    expect(r.stderr).toContain(join(root, 'etc/xen/nosuchvm.cfg'));
    expect(existsSync(join(root, 'etc/xen/clone'))).toBe(false);

    const forced = await vmclone('config', 'nosuchvm', '--set', 'clone_kind=offline', '--force');
    expect(forced.code).toBe(0);
    // Once it has an override, the VM is known: later edits need no --force.
    expect((await vmclone('config', 'nosuchvm', '--set', 'mac_policy=regenerate')).code).toBe(0);
    // Showing the configuration of any valid name changes nothing and stays allowed.
    expect((await vmclone('config', 'other')).code).toBe(0);
    expect(existsSync(join(root, 'etc/xen/clone/override/other.json'))).toBe(false);
  });

  it('reads an empty host without a word from Xen: no clones, status of none', async () => {
    // No xl on PATH and no xenstored: a command that asked either would say so.
    const env = { PATH: '/nonexistent', XENSTORED_PATH: join(root, 'no-xenstored') };
    const stdout = sink();
    const stderr = sink();
    const run = (...argv: string[]) =>
      runVmclone(argv, { stdout, stderr, env: { ...env, ZYNCLONE_ROOT: root } });
    expect(await run('list')).toBe(EXIT.OK);
    expect(await run('list', '--json')).toBe(EXIT.OK);
    expect(await run('status', 'web01')).toBe(EXIT.NOT_FOUND);
    expect(stdout.text()).toBe('no clones\n[]\nweb01 has no clone\n');
    expect(stderr.text()).toBe('');
    // With --json, status still reports what Xen says of the original (here: nothing).
    const json = await vmclone('status', 'web01', '--json');
    expect(json.code).toBe(EXIT.NOT_FOUND);
    expect(JSON.parse(json.stdout)).toMatchObject({ vm: 'web01', clone: null, original: null });
  });

  it('lists each clone with the holders of its shared volumes', async () => {
    writeFileSync(
      join(root, 'etc/xen/db01.cfg'),
      `name = "db01"\ndisk = [ 'format=raw,vdev=xvda,access=rw,target=/v/root.img', 'format=raw,vdev=xvdb,access=rw,target=/v/data.img' ]\n`,
    );
    expect((await vmclone('config', 'db01', '--set', 'shared_volumes=xvdb')).code).toBe(0);
    const store = openStateStore({ paths: zynclonePaths(root) });
    for (const vm of ['db01', 'web01']) {
      store.putClone({
        vm,
        cloneName: `${vm}-clone`,
        state: 'active',
        kind: 'offline',
        sourceUuid: '6f1c7d52-3b8e-4f0a-9c1d-2e5f8a9b0c1d',
        requestedBy: 'user:test',
      });
    }
    store.setVolumeHolder('db01', 'xvdb', 'clone');
    store.close();
    const r = await vmclone('list');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^db01 +db01-clone +active +offline +- +xvdb:clone +\S+Z +user:test$/m,
    );
    expect(r.stdout).toMatch(/^web01 +web01-clone +active +offline +- +- +\S+Z +user:test$/m);
    const json = JSON.parse((await vmclone('list', '--json')).stdout);
    expect(json.map((c: { sharedVolumes: unknown }) => c.sharedVolumes)).toEqual([
      [{ vdev: 'xvdb', holder: 'clone' }],
      [],
    ]);
  });

  it('maps error codes to exit statuses', () => {
    expect(exitCodeFor(Object.assign(new Error('x'), { code: 'VM_BUSY' }))).toBe(EXIT.BUSY);
    expect(exitCodeFor(new CloneError('CLONE_NOT_FOUND', 'x'))).toBe(EXIT.NOT_FOUND);
    expect(exitCodeFor(new CloneError('CLONE_STATE', 'x'))).toBe(EXIT.REFUSED);
    expect(exitCodeFor(new CloneError('LOCKDOWN_TIMEOUT', 'x'))).toBe(EXIT.LOCKDOWN_TIMEOUT);
    expect(exitCodeFor(new Error('plain'))).toBe(EXIT.FAILURE);
  });
});

describe('progress display', () => {
  it('writes one plain line per event when not on a terminal', () => {
    const s = sink(false);
    const p = createProgress({ stream: s, env: {} });
    p({ kind: 'step', message: 'snapshotting' });
    p({ kind: 'done', message: 'snapshotting', ms: 3.21 });
    p({ kind: 'warn', message: 'careful' });
    expect(s.text()).toBe('snapshotting ...\nsnapshotting: done (3.2 ms)\nwarning: careful\n');
  });

  it('completes steps on one line on a terminal, coloured unless NO_COLOR', () => {
    const tty = sink(true);
    const p = createProgress({ stream: tty, env: {} });
    p({ kind: 'step', message: 'x' });
    p({ kind: 'done', message: 'x', ms: 12 });
    expect(tty.text()).toBe('x ... \x1b[32mdone\x1b[0m (12 ms)\n');
    const plain = sink(true);
    const q = createProgress({ stream: plain, env: { NO_COLOR: '1' } });
    q({ kind: 'step', message: 'x' });
    q({ kind: 'done', message: 'x', ms: 12 });
    expect(plain.text()).toBe('x ... done (12 ms)\n');
  });

  it('shows copy progress every 10% off a terminal, and redraws it in place on one', () => {
    const s = sink(false);
    const p = createProgress({ stream: s, env: {} });
    for (let done = 0; done <= 100; done += 5) {
      p({
        kind: 'progress',
        message: 'copying xvda',
        done: done * 1024 * 1024,
        total: 100 * 1024 * 1024,
      });
    }
    const lines = s.text().trim().split('\n');
    expect(lines).toHaveLength(11);
    expect(lines[0]).toBe('copying xvda: 0% of 100.0 MiB');
    expect(lines[10]).toBe('copying xvda: 100% of 100.0 MiB');
    const tty = sink(true);
    const q = createProgress({ stream: tty, env: { NO_COLOR: '1' } });
    q({ kind: 'progress', message: 'copying xvda', done: 1, total: 2 });
    q({ kind: 'progress', message: 'copying xvda', done: 2, total: 2 });
    q({ kind: 'info', message: 'next' });
    expect(tty.text()).toBe(
      '\rcopying xvda: 50% of 2 B\x1b[K\rcopying xvda: 100% of 2 B\x1b[K\nnext\n',
    );
  });

  it('shows only warnings when quiet', () => {
    const s = sink(false);
    const p = createProgress({ stream: s, env: {}, quiet: true });
    p({ kind: 'step', message: 'x' });
    p({ kind: 'info', message: 'y' });
    p({ kind: 'warn', message: 'z' });
    expect(s.text()).toBe('warning: z\n');
  });
});
