/**
 * Health checks behind `vmclone doctor`: each check returns findings that say
 * what is wrong and how to fix it. Nothing here changes the host; a check
 * that cannot run here (no nft, no ip) says so and counts as ok.
 */
import { execFile } from 'node:child_process';
import type { XlDriver } from '../../xen/index.js';
import { XsClient, type XsOps, isXsErrno } from '../../xenstore/index.js';
import {
  ConfigError,
  configuredVms,
  defaultConfig,
  effectiveConfig,
  readBaseConfig,
} from '../config/index.js';
import type { ZyncloneConfig } from '../config/schema.js';
import { type VmInput, planLockdown } from '../lockdown/nft-plan.js';
import type { ZynclonePaths } from '../paths.js';
import { type StateStore, openStateStore } from '../state/index.js';
import { readVmInputs } from './xenstore-read.js';

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
}

export const ZC_ROOT = '/tool/zynclone';
export const DEFAULT_DAEMONS: readonly DaemonExpectation[] = [
  { name: 'clone-monitor', required: true },
  { name: 'net-monitor', required: true },
  { name: 'console-monitor', required: false },
];
/** Assumed when a daemon does not publish `heartbeat-ms` (the daemons' default). */
export const DEFAULT_HEARTBEAT_MS = 5000;
/** A heartbeat older than this many intervals is stale. */
export const MISSED_BEATS = 3;

export interface DoctorContext {
  readonly paths: ZynclonePaths;
  readonly xl: Pick<XlDriver, 'info'>;
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
  /** Runs `nft` and `ip` (default: execFile, argv only). */
  readonly run?: CommandRunner;
}

const defaultRun: CommandRunner = (argv) =>
  new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { timeout: 10_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
        if (e && (e.code === 'ENOENT' || e.code === 'EACCES')) {
          resolve({ code: null, stdout: '', stderr: e.message });
          return;
        }
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
      },
    );
  });

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
function vmsToCheck(ctx: DoctorContext, store: StateStore | undefined): string[] {
  const vms = new Set<string>();
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
            `correct the named key, e.g. \`vmclone config set ${vm} <key> <value>\` or \`vmclone config unset ${vm} <key>\`, or edit ${ctx.paths.overrideFile(vm)}`,
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
  out.push(...(await checkHeartbeats(ctx, xs)));
  const vms = await readVmInputs(xs);
  out.push(...(await checkAcks(xs, vms)));
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
    const base = `${ZC_ROOT}/daemons/${d.name}`;
    const check = `heartbeat:${d.name}`;
    const unit = `zynclone-${d.name}`;
    const [beat, version, interval] = await Promise.all([
      xs.tryRead(`${base}/heartbeat`),
      xs.tryRead(`${base}/version`),
      xs.tryRead(`${base}/heartbeat-ms`),
    ]);
    const v = version === undefined ? 'version unknown' : `version ${version}`;
    if (beat === undefined || !/^[0-9]+$/.test(beat)) {
      if (!d.required) {
        out.push({
          check,
          ok: true,
          severity: 'info',
          message: `${d.name} has no heartbeat: not installed or not running (optional)`,
        });
        continue;
      }
      out.push(
        bad(
          check,
          'error',
          `${d.name} has never written a heartbeat (${base}/heartbeat ${beat === undefined ? 'is absent' : `is ${JSON.stringify(beat)}`})`,
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
          `${d.name} (${v}) is stale: its last heartbeat is ${Math.round(age / 1000)} s old, more than ${MISSED_BEATS} beats of ${intervalMs} ms`,
          `restart it: systemctl restart ${unit}; see journalctl -u ${unit} for why it stopped`,
        ),
      );
    } else {
      out.push(ok(check, `${d.name} is alive (${v}, last heartbeat ${Math.max(0, age)} ms ago)`));
    }
  }
  return out;
}

async function checkAcks(xs: XsOps, vms: readonly VmInput[]): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const vm of vms) {
    const check = `lockdown-ack:${vm.vm}`;
    const gen = vm.generation;
    const ack = await xs.tryRead(`${ZC_ROOT}/net/ack/${vm.vm}`);
    if (gen === undefined || !/^[0-9]+$/.test(gen)) {
      out.push(
        bad(
          check,
          'error',
          `${ZC_ROOT}/vm/${vm.vm}/generation is ${gen === undefined ? 'absent' : JSON.stringify(gen)}: the net monitor cannot acknowledge it`,
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
    const appliedText = await xs.tryRead(`${ZC_ROOT}/net/applied/${vm.vm}`);
    let problems: string[] = [];
    try {
      const applied = JSON.parse(appliedText ?? '{}') as { problems?: unknown };
      if (Array.isArray(applied.problems)) problems = applied.problems.map(String);
    } catch {
      problems = [`${ZC_ROOT}/net/applied/${vm.vm} is not JSON`];
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

function inNetns(ctx: DoctorContext, argv: string[]): string[] {
  return ctx.netns === undefined ? argv : ['ip', 'netns', 'exec', ctx.netns, ...argv];
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
  const r = await run(inNetns(ctx, ['nft', '-j', 'list', 'table', 'bridge', table]));
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
          'remove that interface or choose another isolation_bridge (vmclone config set <vm> isolation_bridge <name>)',
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
