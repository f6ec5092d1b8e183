/**
 * Helpers the scenarios use inside dom0: running tools with argv arrays and
 * generous time limits, and starting test guests from the guest kernel and
 * initramfs baked into the dom0 image (/guest/vmlinux, /guest/initrd.gz).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const GUEST_KERNEL = '/guest/vmlinux';
export const GUEST_RAMDISK = '/guest/initrd.gz';
export const CONSOLE_LOG_DIR = '/var/log/xen/console';
export const BRIDGE = 'xenbr0';
export const BRIDGE_ADDR = '10.0.0.1/24';

export class LaneError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'LaneError';
    this.code = code;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  /** Single xl commands took up to 15 s under emulation; default 60 s. */
  timeoutMs?: number;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  log?: (line: string) => void;
}

export interface RunOutcome extends RunResult {
  code: number;
}

/** Runs a program (argv array, no shell) and returns its output. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunOutcome> {
  const timeout = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  opts.log?.(`$ ${[cmd, ...args].join(' ')}`);
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      [...args],
      { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const ms = Date.now() - started;
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; code?: unknown }) | null;
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        if (e?.killed) {
          reject(
            new LaneError(
              'LANE_CMD_TIMEOUT',
              `${cmd} ${args.join(' ')} did not finish within ${timeout} ms`,
            ),
          );
          return;
        }
        if (e && typeof e.code === 'string') {
          reject(new LaneError('LANE_CMD_SPAWN', `cannot run ${cmd}: ${e.message}`));
          return;
        }
        if (code !== 0 && !opts.allowFail) {
          opts.log?.(`exit ${code}; stderr:\n${stderr.trim()}`);
          const detail = (stderr || stdout).trim().split('\n').slice(-5).join(' | ');
          reject(
            new LaneError(
              'LANE_CMD_FAILED',
              `${cmd} ${args.join(' ')} exited with ${code} after ${ms} ms: ${detail}`,
            ),
          );
          return;
        }
        resolve({ stdout, stderr, ms, code });
      },
    );
  });
}

export function xl(args: readonly string[], opts: RunOptions = {}): Promise<RunOutcome> {
  return run('xl', args, opts);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new LaneError('LANE_ABORTED', 'scenario aborted'));
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new LaneError('LANE_ABORTED', 'scenario aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `probe` until it returns a value other than undefined. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  opts: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      throw new LaneError(
        'LANE_WAIT_TIMEOUT',
        `timed out after ${opts.timeoutMs} ms waiting for ${what}`,
      );
    }
    await sleep(opts.intervalMs ?? 250, opts.signal);
  }
}

export interface GuestSpec {
  name: string;
  /** In-guest address with prefix, e.g. 10.0.0.2/24; adds a vif on xenbr0. */
  ip?: string;
  /** xl disk specs, e.g. 'format=raw, vdev=xvda, access=rw, target=/x.img'. */
  disks?: string[];
  memoryMb?: number;
  uuid?: string;
  /** Default pv. PVH needs HAP; live saves need it (Debian's Xen has no shadow paging for PV log-dirty). */
  type?: 'pv' | 'pvh';
  /** Seconds between heartbeats (guest default 2). */
  beatSeconds?: number;
  /** MiB of memory the guest keeps rewriting (a fast dirtier). */
  dirtyMiB?: number;
  /** xl vfb specs, e.g. 'vnc=1': a PV framebuffer that QEMU in dom0 serves over VNC. */
  vfbs?: string[];
  /** zc.ask=: the guest asks ZynClone for this operation through zynclone-guest once served. */
  ask?: string;
  /** xl's on_reboot (default restart); preserve keeps a guest that triple-faulted for a look. */
  onReboot?: 'preserve' | 'restart' | 'destroy';
}

export function guestConfig(spec: GuestSpec): string {
  const extra = ['console=hvc0', 'loglevel=4', `zc.name=${spec.name}`];
  if (spec.ip) extra.push(`zc.ip=${spec.ip}`);
  if (spec.disks?.length) extra.push('zc.disk=1');
  if (spec.beatSeconds !== undefined) extra.push(`zc.beat=${spec.beatSeconds}`);
  if (spec.dirtyMiB !== undefined) extra.push(`zc.dirty=${spec.dirtyMiB}`);
  if (spec.ask) extra.push(`zc.ask=${spec.ask}`);
  const lines = [
    `name = "${spec.name}"`,
    `type = "${spec.type ?? 'pv'}"`,
    `kernel = "${GUEST_KERNEL}"`,
    `ramdisk = "${GUEST_RAMDISK}"`,
    `memory = ${spec.memoryMb ?? 128}`,
    'vcpus = 1',
    `extra = "${extra.join(' ')}"`,
    `on_crash = "preserve"`,
  ];
  if (spec.onReboot) lines.push(`on_reboot = "${spec.onReboot}"`);
  if (spec.uuid) lines.push(`uuid = "${spec.uuid}"`);
  if (spec.ip) lines.push(`vif = [ 'bridge=${BRIDGE}' ]`);
  if (spec.disks?.length) lines.push(`disk = [ ${spec.disks.map((d) => `'${d}'`).join(', ')} ]`);
  if (spec.vfbs?.length) lines.push(`vfb = [ ${spec.vfbs.map((v) => `'${v}'`).join(', ')} ]`);
  return `${lines.join('\n')}\n`;
}

export async function writeGuestConfig(dir: string, spec: GuestSpec): Promise<string> {
  const path = join(dir, `${spec.name}.cfg`);
  await writeFile(path, guestConfig(spec));
  return path;
}

export function consoleLogPath(name: string): string {
  return join(CONSOLE_LOG_DIR, `guest-${name}.log`);
}

export async function readConsole(name: string): Promise<string> {
  try {
    return await readFile(consoleLogPath(name), 'utf8');
  } catch {
    return '';
  }
}

/** Waits until the guest's console log (kept by xenconsoled) matches `re`. */
export async function waitConsole(
  name: string,
  re: RegExp,
  opts: { timeoutMs?: number; signal?: AbortSignal; after?: number } = {},
): Promise<RegExpMatchArray> {
  return waitFor(
    `console of ${name} to match ${re}`,
    async () => {
      const text = await readConsole(name);
      const m = text.slice(opts.after ?? 0).match(re);
      return m ?? undefined;
    },
    {
      timeoutMs: opts.timeoutMs ?? 90_000,
      intervalMs: 300,
      ...(opts.signal ? { signal: opts.signal } : {}),
    },
  );
}

/** Highest heartbeat number the guest has printed so far, or 0. */
export async function lastHeartbeat(name: string): Promise<number> {
  const text = await readConsole(name);
  let last = 0;
  for (const m of text.matchAll(/ZC-GUEST-HEARTBEAT (\d+)/g)) last = Number(m[1]);
  return last;
}

export interface DomainInfo {
  name: string;
  domid: number;
  state: string;
}

export async function listDomains(): Promise<DomainInfo[]> {
  const { stdout } = await xl(['list'], { timeoutMs: 30_000 });
  const out: DomainInfo[] = [];
  for (const line of stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 6) continue;
    out.push({ name: cols[0] ?? '', domid: Number(cols[1]), state: cols[4] ?? '' });
  }
  return out;
}

export async function domainByName(name: string): Promise<DomainInfo | undefined> {
  return (await listDomains()).find((d) => d.name === name);
}

export async function destroyQuietly(name: string, log?: (l: string) => void): Promise<void> {
  const d = await domainByName(name).catch(() => undefined);
  if (!d) return;
  await xl(['destroy', name], { timeoutMs: 60_000, allowFail: true, ...(log ? { log } : {}) });
}

/** Creates the test bridge once per boot (xl's vif-bridge hotplug script needs it). */
export async function ensureBridge(log?: (l: string) => void): Promise<void> {
  if (existsSync(`/sys/class/net/${BRIDGE}`)) return;
  const o = log ? { log } : {};
  await run(
    'ip',
    ['link', 'add', 'name', BRIDGE, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'],
    o,
  );
  await run('ip', ['addr', 'add', BRIDGE_ADDR, 'dev', BRIDGE], o);
  await run('ip', ['link', 'set', BRIDGE, 'up'], o);
}

/** Pings once per attempt until a reply arrives (the guest's vif may need a moment). */
export async function pingUntilReply(
  addr: string,
  opts: { timeoutMs: number; signal?: AbortSignal; log?: (l: string) => void },
): Promise<string> {
  return waitFor(
    `a ping reply from ${addr}`,
    async () => {
      const r = await run('ping', ['-c', '1', '-W', '2', addr], {
        allowFail: true,
        timeoutMs: 10_000,
      });
      if (r.code === 0) {
        opts.log?.(r.stdout.trim().split('\n').slice(-2).join(' | '));
        return r.stdout;
      }
      return undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: 500, ...(opts.signal ? { signal: opts.signal } : {}) },
  );
}

export function assertTrue(cond: unknown, code: string, message: string): asserts cond {
  if (!cond) throw new LaneError(code, message);
}
