/**
 * Host side of the real-Xen lane: boots Xen + dom0 under QEMU, follows the
 * @@ZC- markers on the serial port, enforces per-step deadlines, and prints a
 * pass/fail table. QEMU is always stopped by its PID, also on errors and
 * signals. One boot per XenStore daemon (C xenstored, then oxenstored for the
 * scenarios that ask for it); a boot that never reaches dom0 is retried once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseMarker } from '../runner/markers.js';
import {
  ALL_XENSTOREDS,
  type Scenario,
  type ScenarioResult,
  type XenstoredKind,
  isSelected,
  scenarioXenstoreds,
} from '../runner/types.js';

type Accel = 'kvm' | 'tcg';

interface Options {
  xen: string;
  kernel: string;
  initrd: string;
  logDir: string;
  accel: 'auto' | Accel;
  smp: number;
  memMb: number;
  only?: string[];
  bootTimeoutMs: number;
}

interface BootPlan {
  xenstored: XenstoredKind;
  scenarios: Scenario[];
}

type BootOutcome =
  | { kind: 'done'; results: ScenarioResult[] }
  | { kind: 'kvm-unusable'; reason: string }
  | { kind: 'no-dom0'; reason: string; results: ScenarioResult[] }
  | { kind: 'hung'; reason: string; results: ScenarioResult[] };

const GRACE_MS = 45_000;
const BETWEEN_SCENARIOS_MS = 90_000;
const AFTER_END_MS = 20_000;

const live = new Set<ChildProcess>();

function killQemu(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function killAll(): void {
  for (const c of live) killQemu(c);
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

function parseArgs(argv: string[]): Options {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const need = (flag: string): string => {
    const v = get(flag);
    if (!v) throw new Error(`missing ${flag}`);
    return v;
  };
  const accel = (get('--accel') ?? 'auto') as Options['accel'];
  const only = get('--only');
  return {
    xen: need('--xen'),
    kernel: need('--kernel'),
    initrd: need('--initrd'),
    logDir: need('--log-dir'),
    accel,
    smp: Number(get('--smp') ?? 2),
    memMb: Number(get('--mem') ?? 4096),
    bootTimeoutMs: Number(get('--boot-timeout') ?? 180_000),
    ...(only ? { only: only.split(/[,+ ]/).filter(Boolean) } : {}),
  };
}

function kvmUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return true;
  } catch {
    return false;
  }
}

/** dom0's memory unless a scenario needs more, and what the guests get beside it. */
const DOM0_MEM_MIB = 1792;
const GUESTS_MEM_MIB = 2304;

function qemuArgv(o: Options, accel: Accel, plan: BootPlan, pidFile: string): string[] {
  const { xenstored } = plan;
  const only = plan.scenarios.map((s) => s.name);
  const accelArgs =
    accel === 'kvm'
      ? ['-accel', 'kvm', '-cpu', 'qemu64']
      : ['-accel', 'tcg,thread=multi', '-cpu', 'qemu64,+svm,+npt'];
  // dom0's root is its initramfs in RAM (half of dom0's memory): Node 24, the
  // images and every scenario's save images and disks must fit there.
  const dom0Mem = Math.max(DOM0_MEM_MIB, ...plan.scenarios.map((s) => s.dom0MemMiB ?? 0));
  const memMb = Math.max(o.memMb, dom0Mem + GUESTS_MEM_MIB);
  const xenCmd = [
    'console=com1',
    'com1=115200,8n1',
    `dom0_mem=${dom0Mem}M,max:${dom0Mem}M`,
    `dom0_max_vcpus=${o.smp}`,
    'noreboot',
  ].join(' ');
  const dom0Cmd = [
    'console=hvc0',
    'earlyprintk=xen',
    'loglevel=4',
    `zc.xenstored=${xenstored}`,
    `zc.only=${only.join('+')}`,
  ].join(' ');
  // QEMU's multiboot loader splits -initrd on commas: module 1 is the dom0
  // kernel with its command line, module 2 the initramfs.
  for (const p of [o.kernel, o.initrd]) {
    if (p.includes(',')) throw new Error(`path must not contain a comma: ${p}`);
  }
  return [
    ...accelArgs,
    '-smp',
    String(o.smp),
    '-m',
    String(memMb),
    '-kernel',
    o.xen,
    '-append',
    xenCmd,
    '-initrd',
    `${o.kernel} ${dom0Cmd},${o.initrd}`,
    '-display',
    'none',
    '-serial',
    'stdio',
    '-monitor',
    'none',
    '-no-reboot',
    '-net',
    'none',
    '-pidfile',
    pidFile,
  ];
}

function fmtSecs(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

async function boot(
  o: Options,
  accel: Accel,
  plan: BootPlan,
  attempt: number,
): Promise<BootOutcome> {
  const tag = `${plan.xenstored}-${accel}-${attempt}`;
  const logPath = join(o.logDir, `serial-${tag}.log`);
  const pidFile = join(o.logDir, 'qemu.pid');
  const argv = qemuArgv(o, accel, plan, pidFile);
  writeFileSync(join(o.logDir, `qemu-${tag}.argv`), `qemu-system-x86_64\n${argv.join('\n')}\n`);
  const logFd = openSync(logPath, 'w');
  const started = Date.now();
  const child = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  console.log(
    `[lane] boot ${tag}: QEMU pid ${child.pid} (${accel}), scenarios: ${plan.scenarios.map((s) => s.name).join(', ')}; serial log ${logPath}`,
  );

  const tail: string[] = [];
  const results = new Map<string, ScenarioResult>();
  let lastMarker = 'none (QEMU started)';
  let ready = false;
  let kvmError = false;
  let current: { name: string; timeoutMs: number } | undefined;
  let deadline = Date.now() + (accel === 'kvm' ? 60_000 : o.bootTimeoutMs);
  let deadlineWhat = 'dom0 to reach @@ZC-READY';
  let ended = false;

  const setDeadline = (ms: number, what: string): void => {
    deadline = Date.now() + ms;
    deadlineWhat = what;
  };

  const onLine = (raw: string): void => {
    const line = raw.replace(/\r/g, '');
    const stamp = `[${((Date.now() - started) / 1000).toFixed(2).padStart(7)}] `;
    writeSync(logFd, `${stamp}${line}\n`);
    tail.push(line);
    if (tail.length > 60) tail.shift();
    if (line.includes('KVM internal error') || line.includes('failed to set MSR')) kvmError = true;
    if (!line.includes('@@ZC-')) return;
    const m = parseMarker(line);
    if (!m) return;
    const data = m.data as Record<string, unknown>;
    const up = ((Date.now() - started) / 1000).toFixed(1);
    switch (m.kind) {
      case 'MARK':
        lastMarker = `MARK ${String(data.step)} at ${up}s`;
        break;
      case 'FATAL':
        lastMarker = `FATAL ${String(data.step)} at ${up}s`;
        setDeadline(5_000, 'QEMU to exit after a fatal dom0 error');
        break;
      case 'READY':
        ready = true;
        lastMarker = `READY at ${up}s`;
        console.log(`[lane]   dom0 ready with ${String(data.xenstored)} at ${up}s`);
        setDeadline(BETWEEN_SCENARIOS_MS, 'the runner to start the first scenario');
        break;
      case 'PLAN':
        lastMarker = `PLAN at ${up}s`;
        break;
      case 'START': {
        const name = String(data.scenario);
        const timeoutMs = Number(data.timeoutMs);
        current = { name, timeoutMs };
        lastMarker = `START ${name} at ${up}s`;
        setDeadline(timeoutMs + GRACE_MS, `scenario ${name} to report a result`);
        break;
      }
      case 'RESULT': {
        const r = data as unknown as ScenarioResult;
        results.set(r.scenario, r);
        current = undefined;
        lastMarker = `RESULT ${r.scenario} at ${up}s`;
        console.log(
          `[lane]   ${r.ok ? 'PASS' : 'FAIL'} ${r.scenario} (${plan.xenstored}) ${fmtSecs(r.ms)}${r.error ? `: ${r.error}` : ''}`,
        );
        setDeadline(BETWEEN_SCENARIOS_MS, 'the next scenario or the end of the run');
        break;
      }
      case 'SUMMARY':
        for (const r of data as unknown as ScenarioResult[]) {
          if (!results.has(r.scenario)) results.set(r.scenario, r);
        }
        lastMarker = `SUMMARY at ${up}s`;
        break;
      case 'END':
        ended = true;
        lastMarker = `END at ${up}s`;
        setDeadline(AFTER_END_MS, 'QEMU to power off');
        break;
    }
  };

  const feed = (stream: NodeJS.ReadableStream): void => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i = buf.indexOf('\n');
      while (i >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    });
    stream.on('end', () => {
      if (buf) onLine(buf);
    });
  };
  if (child.stdout) feed(child.stdout);
  if (child.stderr) feed(child.stderr);

  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let exitedFlag = false;
  void exited.then(() => {
    exitedFlag = true;
  });

  let timedOut = false;
  while (!exitedFlag) {
    await Promise.race([exited, new Promise((r) => setTimeout(r, 250))]);
    if (exitedFlag) break;
    if (kvmError && accel === 'kvm') break;
    if (Date.now() > deadline) {
      timedOut = !ended;
      break;
    }
  }
  killQemu(child);
  await exited;
  live.delete(child);
  closeSync(logFd);

  const wall = Date.now() - started;
  console.log(`[lane] boot ${tag} finished after ${fmtSecs(wall)}`);
  const collected = [...results.values()];
  const hangReport = (why: string): string =>
    [
      why,
      `last marker: ${lastMarker}`,
      `tail of the serial log (${logPath}):`,
      ...tail.slice(-40).map((l) => `  | ${l}`),
    ].join('\n');

  if (accel === 'kvm' && !ready && (kvmError || exitedFlag || timedOut)) {
    return {
      kind: 'kvm-unusable',
      reason: kvmError
        ? 'KVM could not run Xen (KVM internal error / MSR failure)'
        : 'Xen did not reach dom0 under KVM',
    };
  }
  if (!ready) {
    return {
      kind: 'no-dom0',
      reason: hangReport(
        timedOut ? `timed out waiting for ${deadlineWhat}` : 'QEMU exited before dom0 was ready',
      ),
      results: collected,
    };
  }
  if (timedOut || !ended) {
    const why = timedOut
      ? `timed out waiting for ${deadlineWhat}${current ? ` (scenario ${current.name}, limit ${fmtSecs(current.timeoutMs)} + grace)` : ''}`
      : 'QEMU exited before the runner finished';
    return { kind: 'hung', reason: hangReport(why), results: collected };
  }
  return { kind: 'done', results: collected };
}

export async function runHost(all: readonly Scenario[], argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  for (const f of [o.xen, o.kernel, o.initrd]) {
    if (!existsSync(f)) throw new Error(`boot artefact missing: ${f}`);
  }
  const unknown = (o.only ?? []).filter((n) => !all.some((s) => s.name === n));
  if (unknown.length) {
    throw new Error(
      `unknown scenario(s): ${unknown.join(', ')}; known: ${all.map((s) => s.name).join(', ')}`,
    );
  }
  const selected = all.filter((s) => isSelected(s, o.only));
  const plans: BootPlan[] = ALL_XENSTOREDS.map((xenstored) => ({
    xenstored,
    scenarios: selected.filter((s) => scenarioXenstoreds(s).includes(xenstored)),
  })).filter((p) => p.scenarios.length > 0);

  let accel: Accel = o.accel === 'auto' ? (kvmUsable() ? 'kvm' : 'tcg') : o.accel;
  const accelNotes: string[] = [];
  const rows: ScenarioResult[] = [];
  const problems: string[] = [];
  let retried = false;
  const laneStart = Date.now();

  for (const plan of plans) {
    let attempt = 1;
    for (;;) {
      const out = await boot(o, accel, plan, attempt);
      if (out.kind === 'kvm-unusable') {
        accelNotes.push(`KVM tried first: ${out.reason}; fell back to TCG`);
        console.log(`[lane] ${out.reason}; falling back to TCG`);
        accel = 'tcg';
        continue;
      }
      if (out.kind === 'no-dom0' && !retried) {
        retried = true;
        attempt += 1;
        console.log(`[lane] boot failed before dom0 was ready; retrying once.\n${out.reason}`);
        continue;
      }
      for (const s of plan.scenarios) {
        const r = out.results.find((x) => x.scenario === s.name);
        rows.push(
          r ?? {
            scenario: s.name,
            xenstored: plan.xenstored,
            ok: false,
            ms: 0,
            error: out.kind === 'done' ? 'no result reported' : `not finished (${out.kind})`,
          },
        );
      }
      if (out.kind !== 'done') problems.push(`boot with ${plan.xenstored}: ${out.reason}`);
      break;
    }
  }

  const wall = Date.now() - laneStart;
  printTable(rows);
  console.log(
    `[lane] accelerator: ${accel}${accelNotes.length ? ` (${accelNotes.join('; ')})` : ''}`,
  );
  console.log(`[lane] boots+scenarios wall time: ${fmtSecs(wall)}`);
  for (const p of problems) console.log(`[lane] PROBLEM ${p}`);
  writeFileSync(
    join(o.logDir, 'results.json'),
    `${JSON.stringify({ accel, accelNotes, wallMs: wall, results: rows, problems }, null, 2)}\n`,
  );
  const ok = rows.length > 0 && rows.every((r) => r.ok) && problems.length === 0;
  console.log(`[lane] ${ok ? 'ALL PASSED' : 'FAILED'}`);
  return ok ? 0 : 1;
}

function printTable(rows: ScenarioResult[]): void {
  const data = rows.map((r) => [
    r.scenario,
    r.xenstored,
    r.ok ? 'PASS' : 'FAIL',
    fmtSecs(r.ms),
    r.ok
      ? Object.entries(r.notes ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')
      : (r.error ?? ''),
  ]);
  const head = ['scenario', 'xenstored', 'result', 'time', 'notes / error'];
  const widths = head.map((h, i) =>
    Math.max(h.length, ...data.map((row) => Math.min((row[i] ?? '').length, i === 4 ? 200 : 40))),
  );
  const fmt = (row: string[]): string => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ');
  console.log('');
  console.log(fmt(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('-+-'));
  for (const row of data) console.log(fmt(row));
  console.log('');
}
