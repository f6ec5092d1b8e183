/**
 * Runs inside dom0 (started by /init once xenstored and xenconsoled are up).
 * Picks the scenarios for this boot from the kernel command line, runs them
 * one after another with a time limit each, and reports on the console with
 * @@ZC- markers. Leftover guests are destroyed between scenarios so one
 * failure does not cascade.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { listDomains, xl } from './dom0-tools.js';
import { formatMarker } from './markers.js';
import {
  type Scenario,
  type ScenarioResult,
  type XenstoredKind,
  isSelected,
  scenarioXenstoreds,
} from './types.js';

function cmdlineArg(cmdline: string, key: string): string | undefined {
  for (const word of cmdline.trim().split(/\s+/)) {
    if (word.startsWith(`${key}=`)) return word.slice(key.length + 1);
  }
  return undefined;
}

function dumpTail(log: (m: string) => void, path: string, lines: number): void {
  try {
    const text = readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines);
    log(`--- last ${text.length} lines of ${path}:`);
    for (const l of text) log(`  ${l}`);
  } catch {
    // nothing logged there
  }
}

function emit(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function cleanupDomains(log: (m: string) => void): Promise<void> {
  let domains: Awaited<ReturnType<typeof listDomains>> = [];
  try {
    domains = await listDomains();
  } catch (e) {
    log(`cannot list domains for cleanup: ${(e as Error).message}`);
    return;
  }
  for (const d of domains) {
    if (d.domid === 0) continue;
    log(`destroying leftover domain ${d.name} (${d.domid})`);
    await xl(['destroy', String(d.domid)], { allowFail: true, timeoutMs: 60_000 }).catch(() => {});
  }
}

async function runOne(s: Scenario, xenstored: XenstoredKind): Promise<ScenarioResult> {
  const notes: Record<string, string | number | boolean> = {};
  const log = (m: string): void => {
    for (const line of m.split('\n')) emit(`[${s.name}] ${line}`);
  };
  const controller = new AbortController();
  const workDir = await mkdtemp(`/tmp/zc-${s.name}-`);
  const started = Date.now();
  emit(formatMarker('START', { scenario: s.name, xenstored, timeoutMs: s.timeoutMs }));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new Error(`timed out after ${s.timeoutMs} ms`));
    }, s.timeoutMs);
  });
  let result: ScenarioResult;
  try {
    await Promise.race([
      s.run({
        xenstored,
        workDir,
        signal: controller.signal,
        log,
        note: (k, v) => {
          notes[k] = v;
          log(`note ${k}=${v}`);
        },
      }),
      timeout,
    ]);
    result = { scenario: s.name, xenstored, ok: true, ms: Date.now() - started, notes };
  } catch (e) {
    const err = e as Error & { code?: unknown };
    const code = typeof err.code === 'string' ? `${err.code}: ` : '';
    log(`FAILED: ${code}${err.message}`);
    if (err.stack) log(err.stack.split('\n').slice(1, 6).join(' <- '));
    dumpTail(log, '/var/log/xen/xen-hotplug.log', 30);
    result = {
      scenario: s.name,
      xenstored,
      ok: false,
      ms: Date.now() - started,
      error: `${code}${err.message}`.slice(0, 400),
      notes,
    };
  } finally {
    clearTimeout(timer);
  }
  emit(formatMarker('RESULT', result));
  await cleanupDomains(log);
  return result;
}

export async function runDom0(all: readonly Scenario[]): Promise<void> {
  const cmdline = readFileSync('/proc/cmdline', 'utf8');
  const xenstored = (cmdlineArg(cmdline, 'zc.xenstored') ?? 'xenstored') as XenstoredKind;
  const only = cmdlineArg(cmdline, 'zc.only')?.split('+').filter(Boolean);
  const chosen = all.filter(
    (s) => scenarioXenstoreds(s).includes(xenstored) && isSelected(s, only),
  );
  emit(
    formatMarker('PLAN', {
      xenstored,
      scenarios: chosen.map((s) => ({ name: s.name, timeoutMs: s.timeoutMs })),
    }),
  );
  const results: ScenarioResult[] = [];
  for (const s of chosen) results.push(await runOne(s, xenstored));
  emit(formatMarker('SUMMARY', results));
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}

/**
 * Ends the runner without waiting for libuv's thread pool: a blocking read on
 * /dev/xen/xenbus stays in a pool thread even after its fd is closed, and
 * process.exit() would wait for it forever. /init picks the code up from
 * the file.
 */
export function exitHard(code: number): never {
  try {
    writeFileSync('/run/zc-runner.rc', `${code}\n`);
  } catch {
    // /init then reports the signal's status instead
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
