import { isZynCloneError } from '../../errors/index.js';
import { inNetns, run } from '../../process/index.js';
/**
 * Health checks behind `vmclone doctor`: each check returns findings that say
 * what is wrong and how to fix it. Nothing here changes the host; a check
 * that cannot run here (no nft, no ip) says so and counts as ok.
 */
import type { XlDriver } from '../../xen/index.js';
import { XsClient, type XsOps, isXsErrno } from '../../xenstore/index.js';
import { currentLockdown } from '../clones/lockdown.js';
import { readCloneMeta } from '../clones/meta.js';
import type { VmPublication } from '../clones/publish.js';
import {
  ConfigError,
  configuredVms,
  defaultConfig,
  effectiveConfig,
  readBaseConfig,
} from '../config/index.js';
import type { ZyncloneConfig } from '../config/schema.js';
import { type VmInput, planLockdown, planVm } from '../lockdown/nft-plan.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import { type PendingOperation, type StateStore, openStateStore } from '../state/index.js';
import {
  ZC_ROOT,
  ackNode,
  appliedNode,
  daemonLeaf,
  readPublishedVms,
  vmLeaf,
} from '../xenstore/index.js';

export type Severity = 'info' | 'warning' | 'error';

export interface Finding {
  /** Stable check id, e.g. `xl`, `heartbeat:net-monitor`, `isolation-bridge:zc-isolated`. */
  readonly check: string;
  readonly ok: boolean;
  readonly severity: Severity;
  readonly message: string;
  /** What to do about it (failing findings). */
  readonly fix?: string;
  /** Where docs/debugging.md explains it (failing findings): `docs/debugging.md#anchor`. */
  readonly docs?: string;
}

/**
 * The section of docs/debugging.md for a check id: the most specific entry
 * (`heartbeat:console-monitor`) before its family (`heartbeat`).
 * test/core/health/debugging-links.test.ts keeps every anchor real.
 */
export const DEBUGGING_SECTIONS: Readonly<Record<string, string>> = {
  xl: 'xl-does-not-work',
  xenstore: 'xenstore-not-reachable',
  config: 'configuration-refused',
  'state-store': 'state-store-unreadable',
  heartbeat: 'monitors-not-running',
  'heartbeat:console-monitor': 'console-not-reachable',
  'heartbeat:orchestrator': 'guest-request-unanswered',
  'lockdown-ack': 'ack-timeout',
  'nft-table': 'nftables-lockdown-missing',
  'isolation-bridge': 'isolation-bridge-missing',
};
const GENERAL_SECTION = 'checks-first';

export function debuggingLink(check: string): string {
  const family = check.split(':')[0]!;
  const daemon = check.split(':').slice(0, 2).join(':');
  const anchor = DEBUGGING_SECTIONS[daemon] ?? DEBUGGING_SECTIONS[family] ?? GENERAL_SECTION;
  return `docs/debugging.md#${anchor}`;
}

export interface CommandResult {
  /** null: the command could not be started (not installed). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

export interface DaemonExpectation {
  readonly name: string;
  /** A required daemon that is absent is an error; an optional one is only reported. */
  readonly required: boolean;
  /** Where its log says more, added to every finding about it. */
  readonly log?: string;
}

export const DEFAULT_DAEMONS: readonly DaemonExpectation[] = [
  { name: 'clone-monitor', required: true },
  { name: 'net-monitor', required: true },
  { name: 'console-monitor', required: false },
  {
    name: 'orchestrator',
    required: false,
    log: 'journalctl -u zynclone-orchestrator -o cat (one JSON line per guest request accepted, refused or failed, with domid, VM and request id)',
  },
];
/** Assumed when a daemon does not publish `heartbeat-ms` (the daemons' default). */
export const DEFAULT_HEARTBEAT_MS = 5000;
/** A heartbeat older than this many intervals is stale. */
export const MISSED_BEATS = 3;

export interface DoctorContext {
  readonly paths: ZynclonePaths;
  readonly xl: Pick<XlDriver, 'info' | 'list' | 'listLong'>;
  /** A connected client; else one is opened on `xenstorePath`. */
  readonly xs?: XsOps;
  /** Default $XENSTORED_PATH, else /run/xenstored/socket. */
  readonly xenstorePath?: string;
  /** Default: opened (and closed) on `paths`. */
  readonly store?: StateStore;
  /** Network namespace of the network domain's bridges and nftables (the simulator's `<prefix>-netdd`). */
  readonly netns?: string;
  /** The net monitor's table name (default `zynclone`). */
  readonly nftTable?: string;
  readonly daemons?: readonly DaemonExpectation[];
  readonly now?: () => number;
  /** Runs `nft` and `ip` (default: the project's runner, argv only, 10 s each). */
  readonly run?: CommandRunner;
}

const defaultRun: CommandRunner = async (argv) => {
  try {
    const r = await run(argv, { check: false, timeoutMs: 10_000 });
    return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    if (isZynCloneError(err, 'RUN_NOT_FOUND'))
      return { code: null, stdout: '', stderr: err.message };
    if (isZynCloneError(err, 'RUN_TIMEOUT')) return { code: 1, stdout: '', stderr: err.message };
    throw err;
  }
};

const ok = (check: string, message: string): Finding => ({
  check,
  ok: true,
  severity: 'info',
  message,
});
const bad = (check: string, severity: Severity, message: string, fix: string): Finding => ({
  check,
  ok: false,
  severity,
  message,
  fix,
});

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs every check; never throws for what it finds. */
export async function runDoctor(ctx: DoctorContext): Promise<Finding[]> {
  const run = ctx.run ?? defaultRun;
  const findings: Finding[] = [];
  findings.push(await checkXl(ctx));
  findings.push(...checkConfig(ctx));
  findings.push(...(await checkPausedOriginals(ctx)));

  const socket = ctx.xenstorePath ?? process.env.XENSTORED_PATH ?? '/run/xenstored/socket';
  let xs = ctx.xs;
  let opened: XsClient | undefined;
  if (xs === undefined) {
    try {
      opened = await XsClient.connect({
        path: socket,
        transport: 'socket',
        reconnect: false,
        requestTimeoutMs: 5000,
      });
      xs = opened;
    } catch (err) {
      findings.push(
        bad(
          'xenstore',
          'error',
          `XenStore is not reachable at ${socket}: ${errText(err)}; the XenStore checks were skipped`,
          'start xenstored (systemctl start xenstored), or point XENSTORED_PATH at its socket',
        ),
      );
    }
  }
  try {
    if (xs !== undefined) findings.push(...(await checkXenstore(ctx, xs, run)));
  } finally {
    await opened?.close().catch(() => {});
  }
  return findings.map((f) => (f.ok ? f : { ...f, docs: debuggingLink(f.check) }));
}

async function checkXl(ctx: DoctorContext): Promise<Finding> {
  try {
    const info = await ctx.xl.info();
    const version = info.xen_version ?? [info.xen_major, info.xen_minor].filter(Boolean).join('.');
    return ok('xl', `xl info works${version ? ` (Xen ${version})` : ''}`);
  } catch (err) {
    return bad(
      'xl',
      'error',
      `xl info failed: ${errText(err)}`,
      'run on the control domain of a Xen host with the toolstack installed (xen-utils), and xl on PATH',
    );
  }
}

/** The VMs whose configuration matters: configured ones and those with a clone. */
function vmsToCheck(ctx: DoctorContext, store: StateStore | undefined): VmName[] {
  const vms = new Set<VmName>();
  try {
    for (const vm of configuredVms(ctx.paths)) vms.add(vm);
  } catch {
    // an unreadable config directory shows up in the base config check
  }
  for (const c of store?.listClones() ?? []) vms.add(c.vm);
  return [...vms].sort();
}

function configFindings(err: unknown, check: string, what: string, fix: string): Finding {
  const message =
    err instanceof ConfigError ? `${what} is invalid: ${err.message}` : `${what}: ${errText(err)}`;
  return bad(check, 'error', message, fix);
}

function checkConfig(ctx: DoctorContext): Finding[] {
  const out: Finding[] = [];
  try {
    readBaseConfig(ctx.paths);
    out.push(ok('config:base', `${ctx.paths.baseConfigFile} is valid (or absent: defaults)`));
  } catch (err) {
    out.push(
      configFindings(
        err,
        'config:base',
        ctx.paths.baseConfigFile,
        `correct the named keys in ${ctx.paths.baseConfigFile} (the schema is in schema/zynclone-config.schema.json)`,
      ),
    );
  }
  let store: StoreHandle | undefined;
  try {
    store = withStore(ctx);
    for (const vm of vmsToCheck(ctx, store.store)) {
      try {
        effectiveConfig(vm, ctx.paths);
        out.push(ok(`config:${vm}`, `the configuration of ${vm} is valid`));
      } catch (err) {
        out.push(
          configFindings(
            err,
            `config:${vm}`,
            `the configuration of ${vm}`,
            `correct the named key, e.g. \`vmclone config ${vm} --set <key>=<value>\` or \`vmclone config ${vm} --unset <key>\`, or edit ${ctx.paths.overrideFile(vm)}`,
          ),
        );
      }
    }
  } catch (err) {
    out.push(
      bad(
        'state-store',
        'error',
        `cannot read the state store ${ctx.paths.stateDb}: ${errText(err)}`,
        'check that the file exists and is readable by root; see docs/configuration.md "State store"',
      ),
    );
  } finally {
    store?.close();
  }
  return out;
}

/** Whether `op` may hold its original paused: inside pause-snapshot, or saved and not unpaused yet. */
function holdsPause(op: PendingOperation): boolean {
  const step = (name: string) => op.steps.find((s) => s.name === name);
  if (step('pause-snapshot')?.status === 'journaled') return true;
  const saved = step('save-original');
  return (
    saved !== undefined && saved.status !== 'undone' && step('unpause-original')?.status !== 'done'
  );
}

/** An original left paused by an operation that has not finished (its owner may have died). */
async function checkPausedOriginals(ctx: DoctorContext): Promise<Finding[]> {
  let pending: PendingOperation[];
  try {
    const store = withStore(ctx);
    try {
      pending = store.store.pendingOperations().filter(holdsPause);
    } finally {
      store.close();
    }
  } catch {
    return []; // reported by the config check
  }
  if (pending.length === 0) {
    return [ok('paused-originals', 'no unfinished operation holds an original paused')];
  }
  let paused: Set<string>;
  try {
    paused = new Set((await ctx.xl.list()).filter((d) => d.flags.paused).map((d) => d.name));
  } catch {
    return []; // reported by the xl check
  }
  const out: Finding[] = [];
  for (const op of pending) {
    if (!paused.has(op.vm)) continue;
    const dead = op.liveness === 'dead';
    out.push(
      bad(
        `paused-original:${op.vm}`,
        'error',
        `${op.vm} is paused by unfinished operation ${op.id} (${op.kind}); its process (pid ${op.owner.pid}) ${dead ? 'died' : 'still runs'}`,
        dead
          ? 'clone_monitor rolls the operation back and unpauses the VM within seconds: check that it runs (systemctl status zynclone-clone-monitor); any vmclone command (vmclone list) recovers it too'
          : `wait for the operation to finish; if it hangs, kill pid ${op.owner.pid}: clone_monitor then rolls it back and unpauses ${op.vm}`,
      ),
    );
  }
  if (out.length === 0) {
    out.push(ok('paused-originals', 'no original is paused by an unfinished operation'));
  }
  return out;
}

interface StoreHandle {
  readonly store: StateStore;
  close(): void;
}

function withStore(ctx: DoctorContext): StoreHandle {
  if (ctx.store !== undefined) return { store: ctx.store, close: () => {} };
  const s = openStateStore({ paths: ctx.paths });
  return { store: s, close: () => s.close() };
}

async function checkXenstore(
  ctx: DoctorContext,
  xs: XsOps,
  run: CommandRunner,
): Promise<Finding[]> {
  const out: Finding[] = [];
  try {
    await xs.directory(ZC_ROOT);
    out.push(ok('xenstore', `XenStore is reachable and ${ZC_ROOT} exists`));
  } catch (err) {
    if (!isXsErrno(err, 'ENOENT')) {
      return [
        bad(
          'xenstore',
          'error',
          `cannot read ${ZC_ROOT} in XenStore: ${errText(err)}`,
          'run vmclone doctor as root in the control domain',
        ),
      ];
    }
    out.push(
      bad(
        'xenstore',
        'error',
        `XenStore is reachable but ${ZC_ROOT} does not exist: clone_monitor never ran against it`,
        'start the clone monitor: systemctl start zynclone-clone-monitor',
      ),
    );
  }
  const beats = await checkHeartbeats(ctx, xs);
  out.push(...beats);
  const consoleBeat = beats.find((f) => f.check === 'heartbeat:console-monitor');
  if (consoleBeat?.ok && consoleBeat.message.includes('is alive')) {
    out.push(await checkConsoleEndpoint(xs));
  }
  const vms = await readPublishedVms(xs);
  out.push(...(await checkAcks(xs, vms)));
  out.push(...(await checkLockdowns(ctx, xs, vms)));
  const cfg = baseOrDefault(ctx);
  out.push(...(await checkNft(ctx, run, vms, cfg)));
  out.push(...(await checkIsolationBridges(ctx, run, vms)));
  return out;
}

function baseOrDefault(ctx: DoctorContext): ZyncloneConfig {
  try {
    return { ...defaultConfig(), ...readBaseConfig(ctx.paths) } as ZyncloneConfig;
  } catch {
    return defaultConfig();
  }
}

async function checkHeartbeats(ctx: DoctorContext, xs: XsOps): Promise<Finding[]> {
  const now = (ctx.now ?? Date.now)();
  const out: Finding[] = [];
  for (const d of ctx.daemons ?? DEFAULT_DAEMONS) {
    const seeLog = d.log === undefined ? '' : `; its log: ${d.log}`;
    const check = `heartbeat:${d.name}`;
    const unit = `zynclone-${d.name}`;
    const [beat, version, interval] = await Promise.all([
      xs.tryRead(daemonLeaf(d.name, 'heartbeat')),
      xs.tryRead(daemonLeaf(d.name, 'version')),
      xs.tryRead(daemonLeaf(d.name, 'heartbeat-ms')),
    ]);
    const v = version === undefined ? 'version unknown' : `version ${version}`;
    if (beat === undefined || !/^[0-9]+$/.test(beat)) {
      if (!d.required) {
        out.push({
          check,
          ok: true,
          severity: 'info',
          message: `${d.name} has no heartbeat: not installed or not running (optional)${seeLog}`,
        });
        continue;
      }
      out.push(
        bad(
          check,
          'error',
          `${d.name} has never written a heartbeat (${daemonLeaf(d.name, 'heartbeat')} ${beat === undefined ? 'is absent' : `is ${JSON.stringify(beat)}`})${seeLog}`,
          `start it: systemctl start ${unit}; then check journalctl -u ${unit}`,
        ),
      );
      continue;
    }
    const intervalMs =
      interval !== undefined && /^[1-9][0-9]*$/.test(interval)
        ? Number(interval)
        : DEFAULT_HEARTBEAT_MS;
    const age = now - Number(beat);
    if (age > MISSED_BEATS * intervalMs) {
      out.push(
        bad(
          check,
          d.required ? 'error' : 'warning',
          `${d.name} (${v}) is stale: its last heartbeat is ${Math.round(age / 1000)} s old, more than ${MISSED_BEATS} beats of ${intervalMs} ms${seeLog}`,
          `restart it: systemctl restart ${unit}; see journalctl -u ${unit} for why it stopped`,
        ),
      );
    } else {
      out.push(
        ok(check, `${d.name} is alive (${v}, last heartbeat ${Math.max(0, age)} ms ago)${seeLog}`),
      );
    }
  }
  return out;
}

/** The console monitor runs: does the URL it published answer? */
async function checkConsoleEndpoint(xs: XsOps): Promise<Finding> {
  const check = 'console-monitor:url';
  const url = await xs.tryRead(`${ZC_ROOT}/console/url`);
  if (url === undefined || !/^https?:\/\/[\x21-\x7e]+$/.test(url)) {
    return bad(
      check,
      'error',
      `clone_console_monitor beats but published no URL (${ZC_ROOT}/console/url is ${url === undefined ? 'absent' : JSON.stringify(url)}); vmclone console cannot work`,
      'restart it: systemctl restart zynclone-console-monitor; see journalctl -u zynclone-console-monitor',
    );
  }
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    if (res.status === 200) return ok(check, `the web console answers at ${url}`);
    return bad(
      check,
      'error',
      `the web console at ${url} answers ${res.status} to /healthz`,
      'see journalctl -u zynclone-console-monitor',
    );
  } catch (err) {
    return bad(
      check,
      'error',
      `the web console at ${url} does not answer: ${errText((err as Error).cause ?? err)}`,
      'check console_listen and console_port in base.json, a firewall, or a certificate that this host does not trust (console_tls_cert)',
    );
  }
}

async function checkAcks(xs: XsOps, vms: readonly VmInput[]): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const vm of vms) {
    const check = `lockdown-ack:${vm.vm}`;
    const gen = vm.generation;
    const ack = await xs.tryRead(ackNode(vm.vm));
    if (gen === undefined || !/^[0-9]+$/.test(gen)) {
      out.push(
        bad(
          check,
          'error',
          `${vmLeaf(vm.vm, 'generation')} is ${gen === undefined ? 'absent' : JSON.stringify(gen)}: the net monitor cannot acknowledge it`,
          'restart the clone monitor (systemctl restart zynclone-clone-monitor); it republishes the VM from the state store',
        ),
      );
      continue;
    }
    if (ack === undefined || !/^[0-9]+$/.test(ack) || Number(ack) < Number(gen)) {
      out.push(
        bad(
          check,
          'error',
          `the net monitor has not applied lockdown generation ${gen} of ${vm.vm} (its ack is ${ack ?? 'absent'})`,
          'check the network monitor: systemctl status zynclone-net-monitor and journalctl -u zynclone-net-monitor; run vmclone doctor again (a fresh change needs a moment)',
        ),
      );
      continue;
    }
    const appliedText = await xs.tryRead(appliedNode(vm.vm));
    let problems: string[] = [];
    try {
      const applied = JSON.parse(appliedText ?? '{}') as { problems?: unknown };
      if (Array.isArray(applied.problems)) problems = applied.problems.map(String);
    } catch {
      problems = [`${appliedNode(vm.vm)} is not JSON`];
    }
    if (problems.length > 0) {
      out.push(
        bad(
          check,
          'warning',
          `lockdown generation ${gen} of ${vm.vm} is applied with problems: ${problems.join('; ')}`,
          "check the VM's vif names and masks (vmclone config show); the affected clone vifs stay dropped",
        ),
      );
    } else {
      out.push(
        ok(check, `the net monitor applied lockdown generation ${gen} of ${vm.vm} (ack ${ack})`),
      );
    }
  }
  return out;
}

/** A publication as the net monitor reads it back from XenStore. */
function asInput(pub: VmPublication): VmInput {
  const vifs = (list: VmPublication['cloneVifs']) =>
    list.map((v) => ({ devid: v.devid, name: v.name, masked: v.masked ? '1' : '0' }));
  return {
    vm: pub.vm,
    state: pub.state,
    generation: '0',
    originalVifMask: pub.originalVifMask,
    cloneVifs: vifs(pub.cloneVifs),
    originalVifs: vifs(pub.originalVifs),
  };
}

function vifDiffs(what: string, want: VmInput['cloneVifs'], have: VmInput['cloneVifs']): string[] {
  const out: string[] = [];
  const show = (v: VmInput['cloneVifs'][number] | undefined) =>
    v === undefined ? 'absent' : `${v.name ?? '(no name)'} masked=${v.masked ?? '(none)'}`;
  const devids = [...new Set([...want, ...have].map((v) => v.devid))].sort((a, b) => a - b);
  for (const devid of devids) {
    const w = want.find((v) => v.devid === devid);
    const h = have.find((v) => v.devid === devid);
    if (w?.name !== h?.name || w?.masked !== h?.masked) {
      out.push(`${what} ${devid}: the configuration demands ${show(w)}, published is ${show(h)}`);
    }
  }
  return out;
}

function setDiff(what: string, want: readonly string[], have: readonly string[]): string[] {
  const missing = want.filter((n) => !have.includes(n));
  const extra = have.filter((n) => !want.includes(n));
  return [
    ...(missing.length > 0 ? [`${what} lacks ${missing.join(', ')}`] : []),
    ...(extra.length > 0 ? [`${what} also holds ${extra.join(', ')}`] : []),
  ];
}

/**
 * Per clone, per vif: what is published (vm/$VM) and what the net monitor
 * applied (net/applied/$VM) against what the VM's configuration and the live
 * domains demand now (the same function the lifecycle and clone_monitor use).
 */
async function checkLockdowns(
  ctx: DoctorContext,
  xs: XsOps,
  vms: readonly VmInput[],
): Promise<Finding[]> {
  const out: Finding[] = [];
  let store: StoreHandle;
  try {
    store = withStore(ctx);
  } catch {
    return out; // reported by the config check
  }
  try {
    const prefix = baseOrDefault(ctx).clone_vif_prefix;
    for (const clone of store.store.listClones()) {
      const check = `lockdown:${clone.vm}`;
      const running = store.store.runningOperation(clone.vm);
      if (running !== undefined) {
        out.push(
          ok(
            check,
            `operation ${running.id} (${running.kind}) is running on ${clone.vm}; its lockdown was not compared`,
          ),
        );
        continue;
      }
      let want: VmInput;
      try {
        const meta = readCloneMeta(ctx.paths, clone.cloneName);
        want = asInput((await currentLockdown(ctx, meta, clone.state)).publication);
      } catch (err) {
        out.push(
          bad(
            check,
            'error',
            `cannot tell what the lockdown of ${clone.vm} must be: ${errText(err)}`,
            `vmclone remove ${clone.vm}, then create the clone again`,
          ),
        );
        continue;
      }
      const have = vms.find((v) => v.vm === clone.vm);
      const diffs =
        have === undefined
          ? [`${ZC_ROOT}/vm/${clone.vm} is not published`]
          : [
              ...(have.state === want.state
                ? []
                : [`state: the store says ${want.state}, published is ${have.state ?? 'absent'}`]),
              ...vifDiffs('clone vif', want.cloneVifs, have.cloneVifs),
              ...vifDiffs('original vif', want.originalVifs, have.originalVifs),
            ];
      const plan = planVm(want, { cloneVifPrefix: prefix });
      const appliedText = await xs.tryRead(appliedNode(clone.vm));
      let applied: { allowedCloneVifs?: unknown; droppedOriginalVifs?: unknown } = {};
      try {
        applied = JSON.parse(appliedText ?? '{}') as typeof applied;
      } catch {
        // reported by the ack check
      }
      const names = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
      diffs.push(
        ...setDiff(
          'the applied allowed clone vifs',
          plan.allowedCloneVifs,
          names(applied.allowedCloneVifs),
        ),
        ...setDiff(
          'the applied dropped original vifs',
          plan.droppedOriginalVifs,
          names(applied.droppedOriginalVifs),
        ),
      );
      if (diffs.length > 0) {
        out.push(
          bad(
            check,
            'error',
            `the lockdown of ${clone.vm} differs from what its configuration demands now: ${diffs.join('; ')}`,
            'start or restart the clone monitor (systemctl restart zynclone-clone-monitor): it publishes the lockdown of the current configuration, and the net monitor applies it',
          ),
        );
      } else {
        out.push(
          ok(
            check,
            `the lockdown of ${clone.vm} is published and applied as its configuration demands (clone vif mask ${have?.cloneVifs.filter((v) => v.masked === '1').length ?? 0}/${want.cloneVifs.length} masked)`,
          ),
        );
      }
    }
  } finally {
    store.close();
  }
  return out;
}

function setElements(doc: unknown, name: string): string[] | undefined {
  const items = (doc as { nftables?: unknown[] }).nftables ?? [];
  for (const item of items) {
    const set = (item as { set?: { name?: string; elem?: unknown[] } }).set;
    if (set?.name !== name) continue;
    return (set.elem ?? []).map((e) => (typeof e === 'string' ? e : JSON.stringify(e))).sort();
  }
  return undefined;
}

async function checkNft(
  ctx: DoctorContext,
  run: CommandRunner,
  vms: readonly VmInput[],
  cfg: ZyncloneConfig,
): Promise<Finding[]> {
  const table = ctx.nftTable ?? 'zynclone';
  const check = `nft-table:${table}`;
  const where = ctx.netns === undefined ? 'here' : `in network namespace ${ctx.netns}`;
  const r = await run(inNetns(ctx.netns, ['nft', '-j', 'list', 'table', 'bridge', table]));
  if (r.code === null || /exec of "nft" failed/.test(r.stderr)) {
    return [
      {
        check,
        ok: true,
        severity: 'info',
        message: `nft is not available ${where}; the nftables table was not checked`,
      },
    ];
  }
  if (/Cannot open network namespace/.test(r.stderr)) {
    return [
      bad(
        check,
        'error',
        `network namespace ${ctx.netns} does not exist: ${r.stderr.trim()}`,
        'pass the namespace of the network domain (or none on a plain Xen host)',
      ),
    ];
  }
  if (r.code !== 0) {
    return [
      bad(
        check,
        'error',
        `the nftables table bridge ${table} is missing ${where} (${r.stderr.trim().split('\n')[0] ?? 'nft failed'}): clone vifs are not dropped`,
        'start or restart the network monitor (systemctl restart zynclone-net-monitor): it creates the table at start',
      ),
    ];
  }
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout);
  } catch (err) {
    return [
      bad(
        check,
        'error',
        `nft -j printed no JSON: ${errText(err)}`,
        'check the nft installation (nftables package)',
      ),
    ];
  }
  // What the published XenStore implies, planned exactly as the net monitor plans it.
  const expected = planLockdown(vms, { cloneVifPrefix: cfg.clone_vif_prefix }).sets;
  const actual = {
    cloneAllowed: setElements(doc, 'clone_allowed'),
    masked: setElements(doc, 'masked'),
  };
  const diffs: string[] = [];
  for (const [key, set] of [
    ['cloneAllowed', 'clone_allowed'],
    ['masked', 'masked'],
  ] as const) {
    const have = actual[key];
    if (have === undefined) {
      diffs.push(`set ${set} is missing`);
      continue;
    }
    const want = expected[key];
    const missing = want.filter((n) => !have.includes(n));
    const extra = have.filter((n) => !want.includes(n));
    if (missing.length > 0) diffs.push(`${set} lacks ${missing.join(', ')}`);
    if (extra.length > 0) diffs.push(`${set} also holds ${extra.join(', ')}`);
  }
  if (diffs.length > 0) {
    return [
      bad(
        check,
        'error',
        `the nftables table bridge ${table} does not match XenStore: ${diffs.join('; ')}`,
        'restart the network monitor (systemctl restart zynclone-net-monitor): its start reconciles the sets with XenStore',
      ),
    ];
  }
  return [
    ok(
      check,
      `the nftables table bridge ${table} matches XenStore (${expected.cloneAllowed.length} allowed clone vifs, ${expected.masked.length} masked vifs)`,
    ),
  ];
}

interface IpLink {
  ifname: string;
  parentbus?: string;
  linkinfo?: { info_kind?: string };
}

async function checkIsolationBridges(
  ctx: DoctorContext,
  run: CommandRunner,
  vms: readonly VmInput[],
): Promise<Finding[]> {
  const bridges = new Set<string>();
  const prefixes = new Set<string>();
  let store: StoreHandle | undefined;
  try {
    store = withStore(ctx);
    for (const vm of vmsToCheck(ctx, store.store)) {
      try {
        const c = effectiveConfig(vm, ctx.paths).values;
        bridges.add(c.isolation_bridge);
        prefixes.add(c.clone_vif_prefix);
      } catch {
        // reported by the config check
      }
    }
  } catch {
    // reported by the config check
  } finally {
    store?.close();
  }
  const base = baseOrDefault(ctx);
  bridges.add(base.isolation_bridge);
  prefixes.add(base.clone_vif_prefix);

  // Vifs that may sit on an isolation bridge: clone vifs and masked vifs, as published.
  const allowed = new Set<string>();
  let maskedCloneVifs = 0;
  for (const vm of vms) {
    for (const v of vm.cloneVifs) {
      if (v.name !== undefined) allowed.add(v.name);
      if (v.masked !== '0') maskedCloneVifs++;
    }
    for (const v of vm.originalVifs)
      if (v.masked === '1' && v.name !== undefined) allowed.add(v.name);
  }
  const where = ctx.netns === undefined ? '' : ` (network namespace ${ctx.netns})`;
  const ipn = (args: string[]) =>
    ctx.netns === undefined ? ['ip', ...args] : ['ip', '-n', ctx.netns, ...args];
  const out: Finding[] = [];
  for (const bridge of [...bridges].sort()) {
    const check = `isolation-bridge:${bridge}`;
    const link = await run(ipn(['-j', '-d', 'link', 'show', 'dev', bridge]));
    if (link.code === null) {
      out.push({
        check,
        ok: true,
        severity: 'info',
        message: `ip is not available; isolation bridge ${bridge} was not checked`,
      });
      continue;
    }
    if (link.code !== 0) {
      out.push(
        maskedCloneVifs > 0
          ? bad(
              check,
              'warning',
              `isolation bridge ${bridge} does not exist${where}, while clones have masked vifs`,
              `create it without any uplink: ip link add name ${bridge} type bridge && ip link set ${bridge} up (vmclone creates it when it starts a clone)`,
            )
          : ok(
              check,
              `isolation bridge ${bridge} does not exist yet${where}; it is created when a masked clone vif needs it`,
            ),
      );
      continue;
    }
    const [info] = JSON.parse(link.stdout || '[]') as IpLink[];
    if (info?.linkinfo?.info_kind !== 'bridge') {
      out.push(
        bad(
          check,
          'error',
          `${bridge}${where} exists but is not a bridge (kind ${info?.linkinfo?.info_kind ?? 'none'})`,
          'remove that interface or choose another isolation_bridge (vmclone config <vm> --set isolation_bridge=<name>)',
        ),
      );
      continue;
    }
    const members = await run(ipn(['-j', '-d', 'link', 'show', 'master', bridge]));
    const links = members.code === 0 ? (JSON.parse(members.stdout || '[]') as IpLink[]) : [];
    const uplinks = links.filter(
      (l) => !allowed.has(l.ifname) && ![...prefixes].some((p) => l.ifname.startsWith(p)),
    );
    if (uplinks.length > 0) {
      const names = uplinks.map((l) =>
        l.parentbus !== undefined || l.linkinfo?.info_kind === undefined
          ? `${l.ifname} (physical NIC)`
          : l.ifname,
      );
      out.push(
        bad(
          check,
          'error',
          `isolation bridge ${bridge}${where} has members that are neither clone vifs nor masked vifs: ${names.join(', ')}; it would connect clones to a network`,
          `detach them in the network domain: ${uplinks.map((l) => `ip link set ${l.ifname} nomaster`).join('; ')}`,
        ),
      );
      continue;
    }
    out.push(
      ok(
        check,
        `isolation bridge ${bridge}${where} has no uplink (${links.length} clone or masked vifs)`,
      ),
    );
  }
  return out;
}
