/**
 * Who holds an operation: a process identified by pid plus its start time and
 * the boot it runs in, because a bare pid is reused after the owner dies or
 * the host reboots.
 */
import { readFileSync } from 'node:fs';

// node:os is loaded when an owner is looked up, not with this module: reading
// the state store never needs one (vmclone list, status).
const hostname = (): string => process.getBuiltinModule('node:os').hostname();

export interface OperationOwner {
  readonly pid: number;
  readonly hostname: string;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is missing. */
  readonly startTime: string | null;
  /** /proc/sys/kernel/random/boot_id; null where unavailable. */
  readonly bootId: string | null;
}

export type Liveness = 'alive' | 'dead' | 'unknown';

interface ProcStat {
  state: string;
  startTime: string;
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses. */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // fields[0] is field 3 (state); starttime is field 22.
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^[0-9]+$/.test(startTime)) {
    return undefined;
  }
  return { state, startTime };
}

/** The process's stat; undefined if it is gone; 'no-proc' if /proc cannot tell. */
function readProcStat(pid: number): ProcStat | undefined | 'no-proc' {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) ?? 'no-proc';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') {
      try {
        readFileSync('/proc/self/stat');
        return undefined;
      } catch {
        return 'no-proc';
      }
    }
    return 'no-proc';
  }
}

export function processStartTime(pid: number): string | null {
  const stat = readProcStat(pid);
  return typeof stat === 'object' ? stat.startTime : null;
}

let cachedBootId: string | null | undefined;
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

/** This process, as an operation owner. */
export function currentOwner(): OperationOwner {
  return {
    pid: process.pid,
    hostname: hostname(),
    startTime: processStartTime(process.pid),
    bootId: bootId(),
  };
}

export function sameOwner(a: OperationOwner, b: OperationOwner): boolean {
  return (
    a.pid === b.pid &&
    a.hostname === b.hostname &&
    a.startTime === b.startTime &&
    a.bootId === b.bootId
  );
}

/** Whether `owner` still runs, and why we think so. */
export function ownerLiveness(owner: OperationOwner): { liveness: Liveness; reason: string } {
  if (owner.hostname !== hostname()) {
    return { liveness: 'unknown', reason: `owned by host ${owner.hostname}` };
  }
  // StateStore.releaseOperation's mark: no process holds it any more.
  if (owner.pid === 0) return { liveness: 'dead', reason: 'released to recovery' };
  const boot = bootId();
  if (owner.bootId !== null && boot !== null && owner.bootId !== boot) {
    return { liveness: 'dead', reason: 'the host rebooted since' };
  }
  const stat = readProcStat(owner.pid);
  if (stat === 'no-proc') {
    try {
      process.kill(owner.pid, 0);
      return { liveness: 'alive', reason: `pid ${owner.pid} exists` };
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH'
        ? { liveness: 'dead', reason: `pid ${owner.pid} is gone` }
        : { liveness: 'alive', reason: `pid ${owner.pid} exists` };
    }
  }
  if (stat === undefined) return { liveness: 'dead', reason: `pid ${owner.pid} is gone` };
  if (stat.state === 'Z' || stat.state === 'X') {
    return { liveness: 'dead', reason: `pid ${owner.pid} has exited (zombie)` };
  }
  if (owner.startTime !== null && stat.startTime !== owner.startTime) {
    return { liveness: 'dead', reason: `pid ${owner.pid} now belongs to another process` };
  }
  return { liveness: 'alive', reason: `pid ${owner.pid} is running` };
}
