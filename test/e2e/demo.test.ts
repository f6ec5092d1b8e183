// `make demo` end to end: scripts/demo.sh against the built product, checked
// the way a user reads its output, then `sim down` leaves nothing behind.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findProcesses } from '../../src/sim/journal.js';
import { MONITORS, monitorPids } from '../../src/sim/monitors.js';
import { simPaths } from '../../src/sim/paths.js';
import { skipWithout } from '../prerequisites.js';
import { canMountLoop, loopsBackedUnder, mountsBelow } from '../sim/helpers.js';

const repo = resolve(__dirname, '../..');
const zynclone = join(repo, 'dist/src/bin/zynclone.js');
const canRun =
  canMountLoop &&
  existsSync('/usr/bin/xenstore-ls') &&
  existsSync('/usr/sbin/nft') &&
  existsSync('/usr/bin/qemu-system-x86_64');

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 0): Promise<Out> {
  return new Promise((r) => {
    execFile(
      cmd,
      args,
      { cwd: repo, env: { ...process.env, ...env }, maxBuffer: 32 * 1024 * 1024, timeout },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        r({ code, stdout, stderr });
      },
    );
  });
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const st = statSync(full);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(full) : st.mtimeMs);
  }
  return newest;
}

/** The demo runs the built product; build it when src is newer than dist. */
async function ensureBuilt(): Promise<void> {
  if (existsSync(zynclone) && statSync(zynclone).mtimeMs >= newestMtime(join(repo, 'src'))) return;
  const r = await run(process.execPath, [
    join(repo, 'node_modules/typescript/bin/tsc'),
    '-p',
    'tsconfig.build.json',
  ]);
  if (!existsSync(zynclone)) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}

/** The text of the demo step whose header contains `title`, up to the next step. */
function section(out: string, title: string): string {
  const parts = out.split(/^== /m);
  const found = parts.find((p) => p.split('\n')[0]!.includes(title));
  if (found === undefined) throw new Error(`no demo step "${title}" in:\n${out}`);
  return found;
}

describe.skipIf(
  skipWithout(canRun, 'root, loop devices, mkfs.xfs, xenstore-utils, nftables, qemu-system-x86_64'),
)('make demo (scripts/demo.sh)', () => {
  let work = '';
  let root = '';
  let out = '';

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'zc-demo-e2e-'));
    root = join(work, 'root');
    await ensureBuilt();
    const r = await run('bash', ['scripts/demo.sh'], { ZYNCLONE_DEMO_ROOT: root }, 240_000);
    // Without the bold of the step titles, as a user reads them.
    out = (r.stdout + r.stderr).replace(
      new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'),
      '',
    );
    if (r.code !== 0) throw new Error(`scripts/demo.sh failed (exit ${r.code}):\n${out}`);
  }, 300_000);

  afterAll(async () => {
    if (root !== '') await run(process.execPath, [zynclone, 'sim', 'down', '--root', root]);
    if (work !== '') rmSync(work, { recursive: true, force: true });
  }, 120_000);

  it('clones web01 online: the clone is listed running and the pause is reported', () => {
    expect(section(out, 'vmclone list')).toMatch(/^web01\s+web01-clone\s+running\s+online\s+\d+/m);
    expect(section(out, 'vmclone create web01 --online')).toMatch(
      /web01 was paused for \d+(\.\d+)? ms/,
    );
    expect(section(out, 'vmclone status web01')).toMatch(
      /lockdown\s+generation (\d+), acknowledged \1/,
    );
  });

  it('shows the clone disks as reflinks on the XFS', () => {
    const s = section(out, 'reflinks');
    expect(s).toMatch(/\bxfs\b/);
    expect(s).toMatch(/web01-clone\.xvda\.img: .* [1-9]\d* extent\(s\) shared with the original/);
  });

  it('keeps the original reachable while its clone with the same IP is isolated', () => {
    const s = section(out, 'The original still answers');
    expect(s).toMatch(/3 packets transmitted, 3 received, 0% packet loss/);
    expect(s).toMatch(/Received 2 response\(s\)/);
    expect(s).not.toContain('DUP!');
    expect(s).toMatch(/2 packets transmitted, 0 received, 100% packet loss/);
    expect(s).toContain('clone isolated');
    expect(section(out, 'nftables')).toMatch(/iifname "zcv\*" iifname != @clone_allowed .* drop/);
  });

  it('makes a memory clone of db01 with its data volume shared', () => {
    expect(section(out, 'an override')).toMatch(/^shared_volumes\s+\["xvdb"\]\s+override$/m);
    const s = section(out, 'vmclone create db01 --memory');
    expect(s).toMatch(/clone db01-clone of db01 is running \(memory/);
    expect(s).toMatch(/^db01\s+db01-clone\s+running\s+memory/m);
  });

  it('starts the web dashboard with the monitors and prints its URL', async () => {
    const s = section(out, 'The web dashboard');
    const url = /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/) \(log in with the token in (\S+);/m.exec(
      s,
    );
    expect(url).not.toBeNull();
    expect(s).toMatch(/"name":"web01"/);
    // Printed again at the end, where the user looks.
    expect(section(out, 'keep running')).toContain(`Open the dashboard: ${url![1]}`);
    const login = await fetch(new URL('/login', url![1]));
    expect(login.status).toBe(200);
    expect(await login.text()).toContain('action="/login"');
  });

  it('moves the shared volume to the clone with its data, and back once the guest lets go', () => {
    const s = section(out, 'vmclone switch-volume');
    expect(s).toMatch(/xvdb of db01 is now held by the clone \(attached now/);
    expect(s).toContain('db01-clone reads: note from db01');
    expect(s).toMatch(
      /its guest says "16 Device in use; refusing to close".*\[VOLUME_GUEST_REFUSED\]/,
    );
    expect(s).toMatch(/^shared\s+xvdb: held by the original; attached to db01$/m);
  });

  it('leaves only the demo VMs after vmclone remove, and its monitors running', () => {
    const s = section(out, 'vmclone remove web01');
    expect(s).toContain('no clones');
    const names = s
      .split('\n')
      .filter((l) => /^\S+\s+\d+\s+\d+\s+\d+\s/.test(l))
      .map((l) => l.split(/\s+/)[0]);
    expect(names).toEqual(['Domain-0', 'web01', 'win01', 'db01']);
    const p = simPaths(root);
    for (const m of MONITORS) expect(monitorPids(p, m)).toHaveLength(1);
    expect(out).toContain(`Stop everything with: zynclone sim down --root ${root}`);
  });

  it("runs a newcomer's own vmclone create web01, typed in a new shell as the demo says", async () => {
    const said = section(out, 'keep running')
      .split('\n')
      .filter((l) => l.startsWith('  '))
      .map((l) => l.trim());
    expect(said.slice(0, 2)).toEqual([
      `eval "$(.toolchain/node/bin/node dist/src/bin/zynclone.js sim env --root ${root})"`,
      'vmclone create web01 --online',
    ]);
    // A login shell's environment: nothing of the test's own simulator settings.
    const shell = await run('bash', ['-c', [...said.slice(0, 2), 'vmclone list'].join('\n')], {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      XENSTORED_PATH: '',
      ZYNCLONE_ROOT: '',
    });
    expect(shell.code, shell.stdout + shell.stderr).toBe(0);
    expect(shell.stdout).toMatch(/clone web01-clone of web01 is running/);
    expect(shell.stdout).toMatch(/^web01\s+web01-clone\s+running\s+online/m);
  }, 120_000);

  it('web01 asks for its own clone from inside, and the orchestrator log shows it', () => {
    const s = section(out, 'web01 asks for its own clone from inside');
    expect(s).toMatch(/^clone web01-clone is running \(online, \d+ ms\)$/m);
    expect(s).toMatch(/^web01\s+web01-clone\s+running\s+online\s+.*guest:\d+$/m);
    expect(s).toMatch(/"msg":"request done".*"vm":"web01".*"op":"create"/);
    expect(s).toMatch(/^clone removed$/m);
  });

  it('sim down then leaves no mount, loop device, namespace or process', async () => {
    const p = simPaths(root);
    const down = await run(process.execPath, [zynclone, 'sim', 'down', '--root', root]);
    expect(down.code, down.stderr).toBe(0);
    expect(findProcesses(`--netns ${p.prefix}-netdd`)).toEqual([]);
    const ns = await run('ip', ['netns', 'list']);
    expect({
      mounts: mountsBelow(root),
      loops: loopsBackedUnder(root),
      image: existsSync(p.storageImage),
      namespaces: ns.stdout.split('\n').filter((l) => l.startsWith(`${p.prefix}-`)),
      processes: findProcesses(root),
    }).toEqual({ mounts: [], loops: [], image: false, namespaces: [], processes: [] });
  });
});
