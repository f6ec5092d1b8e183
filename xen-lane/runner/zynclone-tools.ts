/**
 * Helpers for the scenarios that drive ZynClone itself in dom0: a ZynClone
 * root of their own, `vmclone` run in-process through runVmclone, the net
 * monitor as a child process (/lane/net-monitor.mjs, bundled by run.sh), a
 * throwaway LVM thin pool, and the counters that show what crossed a vif.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { runVmclone } from '../../src/cli/vmclone.js';
import { XsClient } from '../../src/xenstore/index.js';
import {
  LaneError,
  type RunOptions,
  assertTrue,
  domainByName,
  run,
  sleep,
  waitFor,
} from './dom0-tools.js';

export const NET_MONITOR_BUNDLE = '/lane/net-monitor.mjs';
export const ORCHESTRATOR_BUNDLE = '/lane/orchestrator.mjs';
export const NFT_TABLE = 'zynclone';

/** A ZynClone root under the scenario's work dir, with base.json written. */
export async function makeRoot(
  workDir: string,
  base: Record<string, unknown> = {},
): Promise<string> {
  const root = join(workDir, 'root');
  await mkdir(join(root, 'etc/xen/clone'), { recursive: true });
  await writeFile(
    join(root, 'etc/xen/clone/base.json'),
    `${JSON.stringify({ lockdown_ack_timeout_ms: 60_000, ...base }, null, 2)}\n`,
  );
  return root;
}

export interface VmcloneOutcome {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs `vmclone argv` in this process under `root`; logs and returns its output. */
export async function vmclone(
  root: string,
  argv: readonly string[],
  opts: { log: (l: string) => void; expect?: number },
): Promise<VmcloneOutcome> {
  const stdout = new Collect();
  const stderr = new Collect();
  opts.log(`$ vmclone ${argv.join(' ')}`);
  const t0 = Date.now();
  const code = await runVmclone(argv, {
    stdout,
    stderr,
    env: { ...process.env, ZYNCLONE_ROOT: root, NO_COLOR: '1' },
  });
  const ms = Date.now() - t0;
  for (const l of stderr.text.trimEnd().split('\n')) if (l) opts.log(`  stderr: ${l}`);
  for (const l of stdout.text.trimEnd().split('\n')) if (l) opts.log(`  stdout: ${l}`);
  opts.log(`  exit ${code} after ${ms} ms`);
  const want = opts.expect ?? 0;
  if (code !== want) {
    const why = stderr.text.trim().split('\n').slice(-3).join(' | ');
    throw new LaneError(
      'LANE_VMCLONE_EXIT',
      `vmclone ${argv.join(' ')} exited with ${code} (expected ${want}): ${why}`,
    );
  }
  return { code, stdout: stdout.text, stderr: stderr.text, ms };
}

export interface DaemonHandle {
  readonly lines: string[];
  stop(): Promise<void>;
}
export type NetMonitorHandle = DaemonHandle;

interface DaemonOptions {
  log: (l: string) => void;
  signal?: AbortSignal;
}

/** Starts the net monitor (nft CLI backend: dom0 has no python3) and waits until it watches. */
export function startNetMonitor(opts: DaemonOptions): Promise<DaemonHandle> {
  return startDaemon(
    'net-monitor',
    [NET_MONITOR_BUNDLE, '--nft-backend', 'cli', '--heartbeat-ms', '2000'],
    opts,
  );
}

/** Starts clone_guest_orchestrator on ZynClone root `root` and waits until it watches. */
export function startOrchestrator(root: string, opts: DaemonOptions): Promise<DaemonHandle> {
  return startDaemon(
    'orchestrator',
    [ORCHESTRATOR_BUNDLE, '--root', root, '--scan-ms', '1000', '--heartbeat-ms', '2000'],
    opts,
  );
}

/** A bundled daemon as a child process, its JSON log lines kept and logged. */
async function startDaemon(
  name: string,
  argv: string[],
  opts: DaemonOptions,
): Promise<DaemonHandle> {
  const lines: string[] = [];
  const child: ChildProcess = spawn('node', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited: number | null | undefined;
  child.on('exit', (code, sig) => {
    exited = code ?? -1;
    opts.log(`${name} exited (${code ?? sig})`);
  });
  const onData = (buf: Buffer) => {
    for (const l of buf.toString().split('\n')) {
      if (!l.trim()) continue;
      lines.push(l);
      opts.log(`${name}: ${l.slice(0, 300)}`);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const stop = async (): Promise<void> => {
    if (exited !== undefined) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 50 && exited === undefined; i++) await sleep(200);
    if (exited === undefined) child.kill('SIGKILL');
  };
  try {
    await waitFor(
      `the ${name} to watch XenStore`,
      () => {
        if (exited !== undefined) {
          throw new LaneError('LANE_DAEMON_EXIT', `${name} exited with ${exited}`);
        }
        return lines.some((l) => l.includes('"watching"')) ? true : undefined;
      },
      { timeoutMs: 60_000, ...(opts.signal ? { signal: opts.signal } : {}) },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { lines, stop };
}

export function xsConnect(): Promise<XsClient> {
  return XsClient.connect({
    path: '/run/xenstored/socket',
    transport: 'socket',
    reconnect: false,
    requestTimeoutMs: 15_000,
  });
}

/** Per-rule drop counters of the net monitor's table in one family. */
export async function nftDropCounters(
  family: 'bridge' | 'inet' | 'arp',
): Promise<{ inPrefix: number; outPrefix: number; inMasked: number; outMasked: number }> {
  const { stdout } = await run('nft', ['list', 'table', family, NFT_TABLE], { timeoutMs: 30_000 });
  const get = (re: RegExp): number => Number(stdout.match(re)?.[1] ?? Number.NaN);
  return {
    inPrefix: get(/iifname "[a-z0-9]+\*" iifname != @clone_allowed counter packets (\d+)/),
    outPrefix: get(/oifname "[a-z0-9]+\*" oifname != @clone_allowed counter packets (\d+)/),
    inMasked: get(/iifname @masked counter packets (\d+)/),
    outMasked: get(/oifname @masked counter packets (\d+)/),
  };
}

export async function ifPackets(ifname: string): Promise<{ rx: number; tx: number }> {
  const base = `/sys/class/net/${ifname}/statistics`;
  const rx = Number((await readFile(`${base}/rx_packets`, 'utf8')).trim());
  const tx = Number((await readFile(`${base}/tx_packets`, 'utf8')).trim());
  return { rx, tx };
}

export function bridgePorts(bridge: string): Promise<string[]> {
  return import('node:fs/promises').then((fs) =>
    existsSync(`/sys/class/net/${bridge}/brif`) ? fs.readdir(`/sys/class/net/${bridge}/brif`) : [],
  );
}

export interface ThinPool {
  readonly vg: string;
  /** Creates a thin LV and returns its /dev/<vg>/<lv> path. */
  thinLv(name: string, size: string): Promise<string>;
  lvNames(): Promise<string[]>;
  cleanup(): Promise<void>;
}

/** A volume group with a thin pool on a loop device backed by a sparse file. */
export async function makeThinPool(workDir: string, vg: string, log: (l: string) => void) {
  const o: RunOptions = { log, timeoutMs: 90_000 };
  await run('modprobe', ['dm-thin-pool'], o);
  const pvFile = join(workDir, `${vg}.img`);
  await run('truncate', ['-s', '256M', pvFile], o);
  const loop = (await run('losetup', ['-f', '--show', pvFile], o)).stdout.trim();
  const cleanup = async (): Promise<void> => {
    const q: RunOptions = { ...o, allowFail: true };
    await run('lvm', ['vgchange', '-an', vg], q);
    await run('lvm', ['vgremove', '-f', vg], q);
    await run('lvm', ['pvremove', '-f', loop], q);
    await run('losetup', ['-d', loop], q);
  };
  try {
    await run('lvm', ['pvcreate', '-y', loop], o);
    await run('lvm', ['vgcreate', vg, loop], o);
    await run('lvm', ['lvcreate', '-y', '-L', '160M', '-T', `${vg}/pool`], o);
  } catch (e) {
    await cleanup();
    throw e;
  }
  const pool: ThinPool = {
    vg,
    async thinLv(name, size) {
      await run('lvm', ['lvcreate', '-y', '-V', size, '-T', `${vg}/pool`, '-n', name], o);
      const dev = `/dev/${vg}/${name}`;
      return existsSync(dev) ? dev : `/dev/mapper/${vg}-${name.replace(/-/g, '--')}`;
    },
    async lvNames() {
      const r = await run('lvm', ['lvs', '--noheadings', '-o', 'lv_name', vg], o);
      return r.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
    },
    cleanup,
  };
  return pool;
}

/** Writes `text` and a newline as the first sector of a disk (what the guest prints). */
export async function writeFirstLine(path: string, text: string): Promise<void> {
  const { open } = await import('node:fs/promises');
  const b = Buffer.alloc(512);
  b.write(`${text}\n`, 'utf8');
  const fh = await open(path, 'r+');
  try {
    await fh.write(b, 0, 512, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The uuid xl reports for a domain. */
export async function xlUuid(name: string): Promise<string | undefined> {
  const { stdout } = await run('xl', ['list', '-l', name], { timeoutMs: 60_000 });
  const parsed = JSON.parse(stdout) as { config?: { c_info?: { uuid?: string } } }[];
  return parsed[0]?.config?.c_info?.uuid;
}

/**
 * After a clone: the original and the clone both run (neither paused), and
 * the clone carries the UUID vmclone recorded, not the original's.
 */
export async function assertBothRun(
  vm: string,
  clone: string,
  recordedUuid: string,
  originalUuid: string | undefined,
  log: (line: string) => void,
): Promise<void> {
  const orig = await domainByName(vm);
  const copy = await domainByName(clone);
  log(`xl list: ${vm}=${orig?.state} ${clone}=${copy?.state}`);
  assertTrue(orig && !orig.state.includes('p'), 'LANE_ORIG_STATE', `${vm} is ${orig?.state}`);
  assertTrue(copy && !copy.state.includes('p'), 'LANE_CLONE_DOM', `${clone}: ${copy?.state}`);
  const cloneUuid = await xlUuid(clone);
  assertTrue(
    cloneUuid === recordedUuid && cloneUuid !== originalUuid,
    'LANE_CLONE_UUID',
    `clone uuid ${cloneUuid}, recorded ${recordedUuid}, original ${originalUuid}`,
  );
}
