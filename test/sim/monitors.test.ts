// `zynclone sim up --monitors`: ZynClone's daemons run beside the simulator as
// systemd would run them, a user's own commands reach them, and `sim down`
// stops them. Also: the simulator's options are parsed strictly.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findProcesses } from '../../src/sim/journal.js';
import { MONITORS, monitorPids } from '../../src/sim/monitors.js';
import { simPaths } from '../../src/sim/paths.js';
import { skipWithout } from '../prerequisites.js';
import { SimFixture, exec, isRoot } from './helpers.js';

const repo = resolve(__dirname, '../..');

/** The product's entry points, bundled as an installation has them: side by side. */
async function bundleProduct(dir: string): Promise<string> {
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
  for (const tool of ['zynclone', 'vmclone']) {
    await build({
      entryPoints: [join(repo, `src/bin/${tool}.ts`)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      outfile: join(dir, `${tool}.js`),
      banner: {
        js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      },
      logLevel: 'error',
    });
  }
  return join(dir, 'zynclone.js');
}

/** Field 5 of /proc/PID/stat: the process group. */
function processGroup(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

describe('zynclone sim options', () => {
  let fx: SimFixture;
  beforeAll(async () => {
    fx = await SimFixture.create('zc-sim-opts-');
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  it.each([
    [['up', '--bogus'], "Unknown option '--bogus'"],
    [['down', '--monitors'], 'down takes no option --monitors'],
    [['up', '--no-monitors'], 'up takes no option --no-monitors'],
    [['up', 'extra'], "unexpected argument 'extra'"],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [['demo', '--no-network'], 'with --no-network, add --no-monitors'],
    [['up', '--storage', 'zfs'], "--storage must be plain or xfs, not 'zfs'"],
  ])('refuses sim %j with usage and status 2, starting nothing', async (args, message) => {
    const r = await fx.sim(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain('usage: zynclone sim');
    expect(findProcesses(fx.root)).toEqual([]);
  });
});

describe.skipIf(skipWithout(isRoot, 'root'))('zynclone sim up --monitors (root)', () => {
  let fx: SimFixture;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    fx = await SimFixture.create('zc-sim-mon-');
    // The product is one bundle here: the console page is where `npm run build` put it.
    env = {
      ...fx.env,
      ZYNCLONE_ENTRY: await bundleProduct(fx.work),
      ZYNCLONE_CONSOLE_ASSETS: join(repo, 'dist/console-page'),
    };
  }, 60_000);
  afterAll(async () => {
    await fx?.dispose();
  }, 60_000);

  const sim = (...args: string[]) =>
    exec(process.execPath, [fx.entry, 'sim', ...args, '--root', fx.root], env);

  it('starts the net monitor, the clone monitor, the orchestrator, the console monitor, then the web dashboard, each in its own process group', async () => {
    const up = await sim('up', '--monitors');
    expect(up.code, up.stderr).toBe(0);
    const p = simPaths(fx.root);
    const pids = MONITORS.map((m) => {
      const pid = Number(new RegExp(`${m.name} running \\(pid (\\d+)\\)`).exec(up.stdout)?.[1]);
      expect(monitorPids(p, m)).toEqual([pid]);
      return pid;
    });
    expect(up.stdout.indexOf('net-monitor running')).toBeLessThan(
      up.stdout.indexOf('clone-monitor running'),
    );
    expect(up.stdout.indexOf('clone-monitor running')).toBeLessThan(
      up.stdout.indexOf('orchestrator running'),
    );
    expect(up.stdout.indexOf('orchestrator running')).toBeLessThan(
      up.stdout.indexOf('console-monitor running'),
    );
    expect(up.stdout.indexOf('console-monitor running')).toBeLessThan(
      up.stdout.indexOf('web running'),
    );
    expect(readFileSync(join(fx.root, 'log/web.log'), 'utf8')).toMatch(
      /"msg":"serving","url":"http:\/\/127\.0\.0\.1:\d+\/"/,
    );
    for (const pid of pids) expect(processGroup(pid)).toBe(pid);
    expect(readFileSync(join(fx.root, 'log/net-monitor.log'), 'utf8')).toMatch(/^\{.*"msg"/m);
    // A second `up --monitors` finds them running and starts no other.
    const again = await sim('up', '--monitors');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('net-monitor already running');
    expect(monitorPids(p, MONITORS[0]!)).toEqual([pids[0]]);
  }, 60_000);

  it('lets a shell with `sim env` reach the simulator and its monitors with vmclone', async () => {
    const exports = await sim('env');
    const r = await exec(
      'bash',
      ['-c', `${exports.stdout}\nvmclone doctor --netns ${simPaths(fx.root).prefix}-netdd`],
      {
        XENSTORED_PATH: '',
        ZYNCLONE_ROOT: '',
      },
    );
    expect(r.stdout + r.stderr).toMatch(/net-monitor is alive/);
    expect(r.stdout + r.stderr).toMatch(/clone-monitor is alive/);
  }, 60_000);

  it('stops the monitors at sim down', async () => {
    const p = simPaths(fx.root);
    const down = await sim('down');
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toMatch(
      /stopped web \(pid \d+\), console-monitor \(pid \d+\), orchestrator \(pid \d+\), clone-monitor \(pid \d+\), net-monitor \(pid \d+\)/,
    );
    expect(findProcesses(p.xsSocket)).toEqual([]);
  }, 60_000);
});
