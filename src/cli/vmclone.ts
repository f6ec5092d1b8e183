/**
 * `vmclone`: create and manage clones of Xen VMs. A thin shell over
 * src/core/clones: parses the command line, runs crash recovery, calls the
 * lifecycle, prints results (text or --json) and maps errors to exit codes.
 *
 * Start-up time is part of the interface (`npm run bench -- cli`): only what
 * parsing the command line needs is imported up front; each command imports
 * the core modules it uses (and with them node:child_process, node:net,
 * node:crypto) when it runs, and `list` reads the state store without the
 * lifecycle unless a dead process left an operation to recover.
 */
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { cloneJson, statusJson } from '../core/clones/json.js';
import type { CloneLifecycle, CreateResult } from '../core/clones/lifecycle.js';
import type { ConfigKey } from '../core/config/index.js';
import type { Finding } from '../core/health/index.js';
import { validateVmName, zynclonePaths, zyncloneRoot } from '../core/paths.js';
import type { StateStore } from '../core/state/index.js';
import type { UpgradeReport } from '../core/upgrade/index.js';
import type { SwitchResult, VolumeHolding, VolumeSwitcher } from '../core/volumes/index.js';
import type { XsClient } from '../xenstore/index.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';
import { createProgress, formatMs } from './progress.js';
import { packageVersion } from './version.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
  /** For confirmations (switch-volume --force); none: they need --yes. */
  readonly stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

const EXAMPLES = `
Examples:
  vmclone create web01                  clone web01 the configured way (default: online)
  vmclone create web01 --memory         clone with memory: the clone resumes where web01 was
  vmclone create web01 --offline --no-start
  vmclone status web01 --json           the clone's state, domain and lockdown ack
  vmclone stop web01 && vmclone deactivate web01
  vmclone remove web01                  delete the clone, its volumes and lockdowns
  vmclone switch-volume db01 xvdb --to clone
                                        move shared volume xvdb from db01 to its clone
  vmclone config web01 --set clone_vif_mask=0,2 --set mac_policy=regenerate
  vmclone list --json

${EXIT_CODES_HELP}

Environment:
  ZYNCLONE_ROOT    root prefix of every file (default /)
  XENSTORED_PATH   xenstored socket (default /run/xenstored/socket)
  NO_COLOR         no colour in progress output`;

function requester(env: NodeJS.ProcessEnv): string {
  const login =
    env.SUDO_USER ||
    (() => {
      try {
        return userInfo().username;
      } catch {
        return `uid${process.getuid?.() ?? 'unknown'}`;
      }
    })();
  const clean = login.replace(/[^\x21-\x7e]/g, '').slice(0, 64);
  return `user:${clean === '' ? 'unknown' : clean}`;
}

class Session {
  private xsClient: XsClient | undefined;
  private lifecycleInstance: CloneLifecycle | undefined;
  private volumesInstance: VolumeSwitcher | undefined;
  private storeInstance: StateStore | undefined;

  constructor(
    readonly io: CliIo,
    readonly quiet: boolean,
  ) {}

  get paths() {
    return zynclonePaths(zyncloneRoot(this.io.env));
  }

  async store(): Promise<StateStore> {
    if (this.storeInstance) return this.storeInstance;
    const { openStateStore } = await import('../core/state/index.js');
    this.storeInstance = openStateStore({ paths: this.paths });
    return this.storeInstance;
  }

  /** The state store to read, once no operation of a dead process is left to recover. */
  async recoveredStore(): Promise<StateStore> {
    const store = await this.store();
    if (store.staleOperations().length > 0) await this.lifecycle();
    return store;
  }

  /** The lifecycle, after recovering operations left by dead processes. */
  async lifecycle(): Promise<CloneLifecycle> {
    if (this.lifecycleInstance) return this.lifecycleInstance;
    const [{ CloneLifecycle }, { crashPointsFromEnv }, { XlDriver }, { VolumeSwitcher }] =
      await Promise.all([
        import('../core/clones/lifecycle.js'),
        import('../core/clones/journal.js'),
        import('../xen/index.js'),
        import('../core/volumes/index.js'),
      ]);
    const common = {
      paths: this.paths,
      store: await this.store(),
      xl: new XlDriver({ env: this.io.env }),
      xs: () => this.xs(),
      requestedBy: requester(this.io.env),
      progress: createProgress({ stream: this.io.stderr, env: this.io.env, quiet: this.quiet }),
      crash: crashPointsFromEnv(this.io.env),
    };
    const lc = new CloneLifecycle(common);
    const volumes = new VolumeSwitcher(common);
    // Switches first: the lifecycle's recovery leaves them alone.
    for (const r of await volumes.recover()) {
      const msg = `recovered operation ${r.opId} (switch-volume of ${r.vm}): ${r.outcome}${r.error ? `: ${r.error}` : ''}`;
      this.io.stderr.write(`${msg}\n`);
    }
    this.volumesInstance = volumes;
    for (const r of await lc.recover()) {
      const msg = `recovered operation ${r.opId} (${r.kind} of ${r.vm}): ${r.outcome}${r.error ? `: ${r.error}` : ''}`;
      this.io.stderr.write(`${msg}\n`);
    }
    this.lifecycleInstance = lc;
    return lc;
  }

  async xs(): Promise<XsClient> {
    if (this.xsClient) return this.xsClient;
    const { XsClient, defaultSocketPath } = await import('../xenstore/index.js');
    this.xsClient = await XsClient.connect({
      path: defaultSocketPath(this.io.env),
      reconnect: false,
      requestTimeoutMs: 15_000,
    });
    return this.xsClient;
  }

  /** Shared volumes, after the same recovery as lifecycle(). */
  async volumes(): Promise<VolumeSwitcher> {
    await this.lifecycle();
    return this.volumesInstance!;
  }

  async close(): Promise<void> {
    await this.xsClient?.close().catch(() => {});
    this.storeInstance?.close();
  }
}

function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A shared volume's holder and where it is attached, in one line. */
function holdingText(h: VolumeHolding): string {
  const at = h.attachedTo.map((a) => `${a.domain}${a.mode === 'r' ? ' (ro)' : ''}`);
  return `${h.vdev}: held by the ${h.holder}; attached to ${at.length > 0 ? at.join(', ') : 'no domain'}`;
}

function switchText(r: SwitchResult): string {
  if (!r.changed) return `${r.vdev} of ${r.vm} is already held by the ${r.to}\n`;
  const times = [
    r.detachMs === undefined ? undefined : `detach ${formatMs(r.detachMs)}`,
    r.attachMs === undefined ? undefined : `attach ${formatMs(r.attachMs)}`,
  ].filter((t) => t !== undefined);
  const where = r.attached ? 'attached now' : 'attached when it starts';
  return `${r.vdev} of ${r.vm} is now held by the ${r.to} (${where}${times.length > 0 ? `; ${times.join(', ')}` : ''})\n`;
}

/** Asks on a terminal; without one the caller must have said --yes. */
async function confirm(io: CliIo, question: string): Promise<boolean> {
  const stdin = io.stdin;
  if (stdin === undefined || stdin.isTTY !== true) return false;
  io.stderr.write(`${question} [type yes] `);
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: stdin });
  try {
    const answer = await new Promise<string>((r) => rl.once('line', r));
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

function parseAssignment(text: string): { key: string; value: string } {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    throw new CommanderError(
      EXIT.USAGE,
      'vmclone.usage',
      `--set needs key=value, got ${JSON.stringify(text)}`,
    );
  }
  return { key: text.slice(0, eq), value: text.slice(eq + 1) };
}

/**
 * A typo in `vmclone config NAME --set` would otherwise leave an override and
 * a generated cfg for a VM that never existed. A VM is known by its domain,
 * its xl config file, or an override it already has.
 */
async function refuseUnknownVm(vm: string, s: Session): Promise<void> {
  const paths = s.paths;
  const files = [...paths.xlConfigCandidates(vm), paths.overrideFile(vm)];
  if (files.some((f) => existsSync(f))) return;
  const [{ XlDriver }, { CloneError }] = await Promise.all([
    import('../xen/index.js'),
    import('../core/clones/errors.js'),
  ]);
  let domains: string;
  try {
    if ((await new XlDriver({ env: s.io.env }).list()).some((d) => d.name === vm)) return;
    domains = 'no domain of that name';
  } catch (err) {
    domains = `\`xl list\` failed (${(err as Error).message})`;
  }
  throw new CloneError(
    'VM_NOT_FOUND',
    `VM ${vm} is not known here: ${domains}, and none of ${files.join(', ')} exists; ` +
      'check the name, or pass --force to configure it anyway',
  );
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function buildProgram(
  io: CliIo,
  run: (fn: (s: Session) => Promise<number>, quiet?: boolean) => Promise<void>,
): Command {
  const program = new Command()
    .name('vmclone')
    .description('Create and manage clones of Xen virtual machines.')
    .version(packageVersion(), '-V, --version')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride()
    .showHelpAfterError()
    .addHelpText('after', EXAMPLES);

  const vmArg = (vm: string) => {
    validateVmName(vm);
    return vm;
  };

  program
    .command('create')
    .description(
      'clone a VM; the clone is created paused and started once its lockdown is acknowledged',
    )
    .argument('<vm>', 'the original VM (domain name)')
    .addOption(
      new Option(
        '--offline',
        'the original is shut down; its disks are snapshotted or copied',
      ).conflicts(['online', 'memory']),
    )
    .addOption(
      new Option(
        '--online',
        'disk-only: pause the original only while its disks are snapshotted',
      ).conflicts(['memory']),
    )
    .option(
      '--memory',
      'with memory: copy memory while the original runs (live pre-copy; else xl save -p), snapshot disks in its final pause, resume it, restore the clone',
    )
    .option('--no-start', 'stop at state active (configured, not running)')
    .option('--config <file>', "the original's xl config file (default <root>/etc/xen/<vm>.cfg)")
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(
      (
        vm: string,
        o: {
          offline?: boolean;
          online?: boolean;
          memory?: boolean;
          start: boolean;
          config?: string;
          json?: boolean;
          quiet?: boolean;
        },
        cmd: Command,
      ) =>
        run(async (s) => {
          vmArg(vm);
          const kind = o.offline
            ? 'offline'
            : o.memory
              ? 'memory'
              : o.online
                ? 'online'
                : undefined;
          const startGiven = cmd.getOptionValueSource('start') === 'cli';
          const lc = await s.lifecycle();
          const r: CreateResult = await lc.create(vm, {
            ...(kind === undefined ? {} : { kind }),
            ...(startGiven ? { start: o.start } : {}),
            ...(o.config === undefined ? {} : { configFile: o.config }),
          });
          if (o.json) {
            printJson(io, {
              clone: cloneJson(r.clone),
              originalPauseMs: r.originalPauseMs ?? null,
              memoryCopy: r.memoryCopy ?? null,
              totalMs: r.totalMs,
              removedPeripherals: r.plan.removedPeripherals,
              vifs: r.plan.cloneVifs.map((v) => ({
                devid: v.devid,
                name: v.name,
                masked: v.masked,
                bridge: v.bridge,
                mac: v.mac ?? null,
              })),
              warnings: r.warnings,
            });
          } else {
            const pause =
              r.originalPauseMs === undefined
                ? ''
                : `; ${vm} paused ${formatMs(r.originalPauseMs)}${
                    r.memoryCopy === undefined
                      ? ''
                      : r.memoryCopy.method === 'live'
                        ? ' (live pre-copy)'
                        : ` (xl save -p: ${r.memoryCopy.fallback})`
                  }`;
            io.stdout.write(
              `clone ${r.clone.cloneName} of ${vm} is ${r.clone.state} (${r.clone.kind}, ${formatMs(r.totalMs)}${pause})\n`,
            );
          }
          return EXIT.OK;
        }, o.quiet),
    );

  const transition = (name: 'start' | 'activate' | 'deactivate', desc: string) =>
    program
      .command(name)
      .description(desc)
      .argument('<vm>', 'the original VM')
      .option('-q, --quiet', 'no progress output')
      .action((vm: string, o: { quiet?: boolean }) =>
        run(async (s) => {
          const c = await (await s.lifecycle())[name](vmArg(vm));
          io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
          return EXIT.OK;
        }, o.quiet),
      );
  transition('start', 'start the clone (active or inactive -> running)');
  program
    .command('stop')
    .description('shut the clone down (running -> active); lockdowns stay')
    .argument('<vm>', 'the original VM')
    .option('-f, --force', 'destroy the clone domain at once instead of shutting it down')
    .option('-q, --quiet', 'no progress output')
    .action((vm: string, o: { force?: boolean; quiet?: boolean }) =>
      run(async (s) => {
        const c = await (await s.lifecycle()).stop(vmArg(vm), { force: o.force ?? false });
        io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
        return EXIT.OK;
      }, o.quiet),
    );
  transition('activate', 'enforce the lockdowns on the original again (inactive -> active)');
  transition(
    'deactivate',
    'lift the lockdowns on the original, keep the clone (active -> inactive)',
  );

  program
    .command('remove')
    .description(
      'delete the clone from any state: its domain, volumes, config and lockdowns (safe to repeat)',
    )
    .argument('<vm>', 'the original VM')
    .option('-q, --quiet', 'no progress output')
    .action((vm: string, o: { quiet?: boolean }) =>
      run(async (s) => {
        const r = await (await s.lifecycle()).remove(vmArg(vm));
        io.stdout.write(
          r.removed ? `clone of ${vm} removed\n` : `${vm} has no clone; nothing to remove\n`,
        );
        return EXIT.OK;
      }, o.quiet),
    );

  program
    .command('switch-volume')
    .description(
      'move a shared volume between the VM and its clone: detach from the holder (the guest must let go), attach to the other side',
    )
    .argument('<vm>', 'the original VM')
    .argument('<vdev>', 'the shared volume, by virtual device (e.g. xvdb)')
    .addOption(
      new Option('--to <side>', 'the new holder')
        .choices(['clone', 'original'])
        .makeOptionMandatory(),
    )
    .option(
      '--force',
      'detach even if the guest does not let go (xl block-detach -f): the guest may crash or lose unwritten data',
    )
    .option('-y, --yes', 'do not ask to confirm --force')
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(
      (
        vm: string,
        vdev: string,
        o: {
          to: 'clone' | 'original';
          force?: boolean;
          yes?: boolean;
          json?: boolean;
          quiet?: boolean;
        },
      ) =>
        run(async (s) => {
          vmArg(vm);
          if (o.force && !o.yes) {
            const ok = await confirm(
              io,
              `Force ${vdev} away from its holder? Its guest may crash or lose data it has not written.`,
            );
            if (!ok) {
              io.stderr.write(
                'vmclone: --force not confirmed (answer yes on a terminal, or add --yes); nothing changed\n',
              );
              return EXIT.REFUSED;
            }
          }
          const r = await (await s.volumes()).switchVolume(vm, vdev, o.to, {
            force: o.force ?? false,
          });
          if (o.json) printJson(io, r);
          else io.stdout.write(switchText(r));
          return EXIT.OK;
        }, o.quiet),
    );

  program
    .command('list')
    .description('list the clones')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async (s) => {
        const clones = (await s.lifecycle()).list();
        const volumes = await s.volumes();
        const holders = new Map(
          clones.map((c) => {
            try {
              return [c.vm, volumes.holders(c.vm)];
            } catch {
              return [c.vm, []]; // The VM's xl config is gone: nothing to show.
            }
          }),
        );
        if (o.json)
          printJson(
            io,
            clones.map((c) => ({ ...cloneJson(c), sharedVolumes: holders.get(c.vm) ?? [] })),
          );
        else if (clones.length === 0) io.stdout.write('no clones\n');
        else {
          io.stdout.write(
            table([
              ['VM', 'CLONE', 'STATE', 'KIND', 'DOMID', 'SHARED', 'CREATED', 'BY'],
              ...clones.map((c) => [
                c.vm,
                c.cloneName,
                c.state,
                c.kind,
                c.cloneDomid === null ? '-' : String(c.cloneDomid),
                (holders.get(c.vm) ?? []).map((h) => `${h.vdev}:${h.holder}`).join(',') || '-',
                new Date(c.createdAt).toISOString().replace(/\.\d+Z$/, 'Z'),
                c.requestedBy,
              ]),
            ]),
          );
        }
        return EXIT.OK;
      }, true),
    );

  program
    .command('status')
    .description("the clone of a VM: state, domain, lockdown generation and the net monitor's ack")
    .argument('<vm>', 'the original VM')
    .option('--json', 'print JSON')
    .action((vm: string, o: { json?: boolean }) =>
      run(async (s) => {
        const st = await (await s.lifecycle()).status(vmArg(vm));
        const volumes = st.clone ? await (await s.volumes()).holdings(vm).catch(() => []) : [];
        if (o.json) {
          const { holdingsJson } = await import('../core/volumes/index.js');
          printJson(io, statusJson(st, holdingsJson(volumes)));
          return st.clone ? EXIT.OK : EXIT.NOT_FOUND;
        }
        if (!st.clone) {
          io.stdout.write(`${vm} has no clone\n`);
          return EXIT.NOT_FOUND;
        }
        const c = st.clone;
        const lines = [
          ['clone', `${c.cloneName} (${c.kind})`],
          ['state', c.state],
          ['domain', st.domain ? `${st.domain.domid} ${st.domain.state}` : 'none'],
          [
            'original',
            st.originalDomain
              ? `${st.originalDomain.domid} ${st.originalDomain.state}`
              : 'not running',
          ],
          ['lockdown', `generation ${st.generation ?? '-'}, acknowledged ${st.ack ?? '-'}`],
          ['created', `${new Date(c.createdAt).toISOString()} by ${c.requestedBy}`],
          ['volumes', String(c.snapshots.length)],
          ...volumes.map((h) => ['shared', holdingText(h)]),
          ['config', st.configFile ?? '-'],
        ];
        if (st.running)
          lines.push(['operation', `${st.running.kind} (id ${st.running.id}) in progress`]);
        if (st.note) lines.push(['note', st.note]);
        io.stdout.write(table(lines));
        return EXIT.OK;
      }, true),
    );

  program
    .command('console')
    .description(
      "a one-time URL (60 s) for the web console of the VM's running clone; opening it is all you do",
    )
    .argument('<vm>', 'the original VM')
    .option('--json', 'print JSON (its url field is the URL)')
    .option('--open', 'also open the URL in a browser, where one exists')
    .action((vm: string, o: { json?: boolean; open?: boolean }) =>
      run(async (s) => {
        vmArg(vm);
        const [{ issueConsoleTicket }, { XlDriver }] = await Promise.all([
          import('../core/console/index.js'),
          import('../xen/index.js'),
        ]);
        const t = await issueConsoleTicket(
          {
            xs: await s.xs(),
            store: await s.recoveredStore(),
            xl: new XlDriver({ env: io.env }),
            paths: s.paths,
          },
          vm,
          requester(io.env),
        );
        if (o.json) {
          printJson(io, {
            url: t.url,
            vm: t.vm,
            cloneName: t.cloneName,
            cloneUuid: t.cloneUuid,
            domid: t.domid,
            ticket: t.ticketId,
            expiresAt: new Date(t.expiresAt).toISOString(),
          });
        } else io.stdout.write(`${t.url}\n`);
        if (o.open && !(await openBrowser(t.url, io.env))) {
          io.stderr.write(
            'vmclone: no browser found here ($BROWSER, xdg-open); open the URL yourself\n',
          );
        }
        return EXIT.OK;
      }, true),
    );

  program
    .command('config')
    .description(
      'show the effective configuration of a VM and where each value comes from, or change it',
    )
    .argument('<vm>', 'the VM')
    .option('--set <key=value>', 'set a key in the VM override (repeatable)', collect, [])
    .option('--unset <key>', 'remove a key from the VM override (repeatable)', collect, [])
    .option('--force', 'set keys even for a VM this host does not know (no domain, no xl config)')
    .option('--json', 'print JSON')
    .action((vm: string, o: { set: string[]; unset: string[]; force?: boolean; json?: boolean }) =>
      run(async (s) => {
        vmArg(vm);
        const { CONFIG_KEYS, effectiveConfig, setOverride, unsetOverride } = await import(
          '../core/config/index.js'
        );
        const paths = s.paths;
        if (o.set.length > 0 && !o.force) await refuseUnknownVm(vm, s);
        const sets = o.set.map(parseAssignment);
        for (const { key, value } of sets) {
          // Refused before anything is written: masked clone vifs would sit on that network.
          if (key === 'isolation_bridge') {
            const [{ refuseProductionBridge }, { productionBridgesOf }] = await Promise.all([
              import('../core/clones/bridge.js'),
              import('../core/clones/original.js'),
            ]);
            refuseProductionBridge(value, {
              vm,
              clonePrefix: effectiveConfig(vm, paths).values.clone_vif_prefix,
              productionBridges: productionBridgesOf(paths, vmArg(vm)),
            });
          }
        }
        for (const { key, value } of sets) setOverride(vm, key, value, paths);
        for (const key of o.unset) unsetOverride(vm, key, paths);
        const eff = effectiveConfig(vm, paths);
        if (o.json) {
          printJson(io, {
            vm,
            values: eff.values,
            origins: eff.origins,
            files: { base: eff.baseFile, override: eff.overrideFile, generated: eff.guestCfgFile },
          });
        } else {
          const rows = [['KEY', 'VALUE', 'FROM']];
          for (const key of CONFIG_KEYS as ConfigKey[]) {
            rows.push([key, JSON.stringify(eff.values[key]), eff.origins[key]]);
          }
          io.stdout.write(table(rows));
        }
        return EXIT.OK;
      }, true),
    );

  program
    .command('doctor')
    .description(
      'check the host: xl, XenStore, monitor heartbeats, nftables lockdown, isolation bridge, config',
    )
    .option(
      '--netns <name>',
      "network namespace of the network domain's bridges and nftables (default $ZYNCLONE_NETNS, else this one)",
    )
    .option('--json', 'print JSON')
    .action((o: { netns?: string; json?: boolean }) =>
      run(async (s) => {
        const netns = o.netns ?? (io.env.ZYNCLONE_NETNS || undefined);
        const [{ runDoctor }, { XlDriver }, { defaultSocketPath }] = await Promise.all([
          import('../core/health/index.js'),
          import('../xen/index.js'),
          import('../xenstore/index.js'),
        ]);
        const findings = await runDoctor({
          paths: s.paths,
          xl: new XlDriver({ env: io.env }),
          xenstorePath: defaultSocketPath(io.env),
          ...(netns === undefined ? {} : { netns }),
        });
        const healthy = findings.every((f) => f.ok);
        if (o.json) printJson(io, { healthy, findings });
        else io.stdout.write(formatFindings(findings, healthy));
        return healthy ? EXIT.OK : EXIT.FAILURE;
      }, true),
    );

  program
    .command('logs')
    .description(
      "a daemon's log (net-monitor, clone-monitor, ...; none: all): the systemd journal, or a log file",
    )
    .argument('[daemon]', 'the daemon, as in its unit name zynclone-<daemon>.service')
    .option('-n, --lines <n>', 'how many recent lines', (v) => Number(v), 100)
    .option('-f, --follow', 'keep printing new lines')
    .option('--file <path>', 'read this log file instead of the journal')
    .action((daemon: string | undefined, o: { lines: number; follow?: boolean; file?: string }) =>
      run(async (s) => {
        const { logsCommand, relay } = await import('./logs.js');
        const argv = logsCommand(
          daemon,
          {
            lines: o.lines,
            follow: o.follow ?? false,
            ...(o.file === undefined ? {} : { file: o.file }),
          },
          s.paths,
        );
        return (await relay(argv, io)) === 0 ? EXIT.OK : EXIT.FAILURE;
      }, true),
    );

  program
    .command('upgrade')
    .description(
      'migrate the state database, configuration files and XenStore tree to this release, after a backup',
    )
    .option('--dry-run', 'only show what would change')
    .option('--json', 'print JSON')
    .option('-q, --quiet', 'print nothing when there is nothing to do')
    .action((o: { dryRun?: boolean; json?: boolean; quiet?: boolean }) =>
      run(async (s) => {
        const [{ upgrade }, { XsClient, defaultSocketPath }] = await Promise.all([
          import('../core/upgrade/index.js'),
          import('../xenstore/index.js'),
        ]);
        let xs: XsClient | undefined;
        let xsProblem: string | undefined;
        try {
          xs = await XsClient.connect({
            path: defaultSocketPath(io.env),
            reconnect: false,
            requestTimeoutMs: 5000,
          });
        } catch (err) {
          xsProblem = `XenStore not reachable at ${defaultSocketPath(io.env)} (${(err as Error).message})`;
        }
        try {
          const report = await upgrade(
            { paths: s.paths, ...(xs ? { xs } : {}), ...(xsProblem ? { xsProblem } : {}) },
            { dryRun: o.dryRun ?? false },
          );
          if (o.json) printJson(io, report);
          else if (!o.quiet || report.backupDir) io.stdout.write(formatUpgrade(report));
        } finally {
          await xs?.close().catch(() => {});
        }
        return EXIT.OK;
      }, true),
    );

  return program;
}

/** Starts $BROWSER or xdg-open on `url` (argv, never a shell); false when there is none. */
async function openBrowser(url: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const graphical = Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
  const candidates = [env.BROWSER, graphical ? 'xdg-open' : undefined].filter(
    (c): c is string => typeof c === 'string' && c !== '',
  );
  for (const cmd of candidates) {
    const exe = cmd.includes('/')
      ? cmd
      : (env.PATH ?? '')
          .split(':')
          .map((d) => `${d}/${cmd}`)
          .find((p) => existsSync(p));
    if (exe === undefined || !existsSync(exe)) continue;
    const { spawn } = await import('node:child_process');
    spawn(exe, [url], { detached: true, stdio: 'ignore', env })
      .on('error', () => {})
      .unref();
    return true;
  }
  return false;
}

function formatUpgrade(r: UpgradeReport): string {
  const version = (v: number | null) => (v === null ? '-' : String(v));
  const rows = r.parts.map((p) => [
    p.part,
    p.migrate ? `${version(p.from)} -> ${p.to}` : `${version(p.from)} (current: ${p.to})`,
    p.found,
  ]);
  const pending = r.parts.filter((p) => p.migrate).length;
  const verdict =
    pending === 0
      ? 'nothing to upgrade'
      : r.dryRun
        ? `${pending} part(s) would be migrated (dry run: nothing changed)`
        : `${pending} part(s) migrated; backup in ${r.backupDir}`;
  return `${table([['PART', 'VERSION', 'FOUND'], ...rows])}${verdict}\n`;
}

function formatFindings(findings: readonly Finding[], healthy: boolean): string {
  const lines = findings.map((f) => {
    const mark = f.ok ? 'ok  ' : f.severity === 'warning' ? 'WARN' : 'FAIL';
    const fix = !f.ok && f.fix ? `\n        fix: ${f.fix}` : '';
    const docs = !f.ok && f.docs ? `\n        see: ${f.docs}` : '';
    return `[${mark}] ${f.check}: ${f.message}${fix}${docs}`;
  });
  const verdict = healthy ? 'healthy' : `${findings.filter((f) => !f.ok).length} problem(s) found`;
  return `${lines.join('\n')}\n${verdict}\n`;
}

/** Runs vmclone with `argv` (without node and script); resolves to the exit status. */
export async function runVmclone(
  argv: readonly string[],
  io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    stdin: process.stdin,
  },
): Promise<number> {
  let status: number = EXIT.OK;
  const json = argv.includes('--json');
  const run = async (fn: (s: Session) => Promise<number>, quiet = false) => {
    const s = new Session(io, quiet);
    try {
      status = await fn(s);
    } catch (err) {
      if (err instanceof CommanderError) throw err;
      const code = (err as { code?: unknown }).code;
      const message = (err as Error).message ?? String(err);
      io.stderr.write(`vmclone: ${message}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
      status = exitCodeFor(err);
      // Scripts using --json get the failure as JSON too.
      if (json) {
        printJson(io, {
          error: { code: typeof code === 'string' ? code : 'FAILED', message, exitCode: status },
        });
      }
    } finally {
      await s.close();
    }
  };
  const program = buildProgram(io, run);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version')
        return EXIT.OK;
      if (err.code === 'vmclone.usage') io.stderr.write(`vmclone: ${err.message}\n`);
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    throw err;
  }
  return status;
}
