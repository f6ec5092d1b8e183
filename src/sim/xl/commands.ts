// xl's commands, run inside the simulator daemon (which owns the domains);
// the xl front end only forwards argv and prints what comes back. Output
// formats, messages and exit codes follow tools/xl/*.c (see docs/xl-formats.md).
import { readFileSync } from 'node:fs';
import { arch, cpus, hostname, release, totalmem, version } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { XenError } from '../../xen/index.js';
import { type Domain, type DomainManager, LibxlError } from '../host/domains.js';
import {
  type DiskDev,
  type DomainSpec,
  configJson,
  diskDevid,
  diskFromSpec,
  nicFromSpec,
  specFromConfig,
} from '../host/spec.js';
import { SimError } from '../proc.js';
import { XlSyntaxError, readConfig } from './load.js';

export interface XlIo {
  cwd: string;
  out(text: string): void;
  err(text: string): void;
  /** Faults to inject (ZYNCLONE_SIM_XL_FAULT of the xl process; see XL_FAULTS). */
  faults?: ReadonlySet<string>;
  /** Aborted when the xl process is gone (killed, or its connection closed). */
  signal?: AbortSignal;
}

/**
 * Faults a test injects into one xl process through its environment,
 * ZYNCLONE_SIM_XL_FAULT=<fault>[,<fault>...]:
 * - `create-hang`: `xl create` (and `xl restore`) makes the domain, paused,
 *   then never finishes, as a real one stuck in device hotplug under heavy
 *   load; once the process is killed the domain stays, half-made: `xl list -l`
 *   leaves it out, as libxl cannot retrieve its configuration.
 * - `destroy-fail`: `xl destroy` fails as libxl does when it cannot destroy
 *   the domain, which stays.
 */
export const XL_FAULTS = ['create-hang', 'destroy-fail'] as const;

/** Parses ZYNCLONE_SIM_XL_FAULT; an unknown fault is an error naming it. */
export function parseXlFaults(text: string | undefined): Set<string> {
  const faults = new Set((text ?? '').split(',').filter((f) => f !== ''));
  for (const f of faults) {
    if (!(XL_FAULTS as readonly string[]).includes(f)) {
      throw new SimError(
        'SIM_BAD_FAULT',
        `unknown simulator fault '${f}' in ZYNCLONE_SIM_XL_FAULT (known: ${XL_FAULTS.join(', ')})`,
      );
    }
  }
  return faults;
}

class Exit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

interface Parsed {
  opts: Set<string>;
  values: Map<string, string>;
  args: string[];
}

/** getopt with GNU permutation: `flags` are boolean options, `withArg` take a value. */
function getopt(argv: readonly string[], flags: string, withArg = '', io?: XlIo, cmd = ''): Parsed {
  const opts = new Set<string>();
  const values = new Map<string, string>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a.length > 1 && !a.startsWith('--')) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        if (withArg.includes(c)) {
          const v = j + 1 < a.length ? a.slice(j + 1) : argv[++i];
          if (v === undefined) {
            io?.err(`${cmd}: option requires an argument -- '${c}'\n`);
            throw new Exit(2);
          }
          values.set(c, v);
          break;
        }
        if (!flags.includes(c)) {
          io?.err(`xl: invalid option -- '${c}'\n`);
          throw new Exit(2);
        }
        opts.add(c);
      }
    } else if (a.startsWith('--') && a.length > 2) {
      const long = a.slice(2);
      const map: Record<string, string> = {
        long: 'l',
        verbose: 'v',
        wait: 'w',
        quiet: 'q',
        help: 'h',
        all: 'a',
      };
      const c = map[long];
      if (!c || !flags.includes(c)) {
        io?.err(`xl: unrecognized option '${a}'\n`);
        throw new Exit(2);
      }
      opts.add(c);
    } else args.push(a);
  }
  return { opts, values, args };
}

function need(p: Parsed, n: number, io: XlIo, usage: string): void {
  if (p.args.length < n) {
    io.err(`'xl ${usage}' requires at least ${n} argument${n === 1 ? '' : 's'}.\n\n`);
    throw new Exit(2);
  }
}

export class XlCommands {
  constructor(private readonly dm: DomainManager) {}

  async run(argv: readonly string[], io: XlIo): Promise<number> {
    const [cmd, ...rest] = argv;
    try {
      switch (cmd) {
        case 'create':
          return await this.create(rest, io);
        case 'list':
          return this.list(rest, io);
        case 'destroy':
          return await this.simple(rest, io, 'destroy');
        case 'pause':
          return await this.simple(rest, io, 'pause');
        case 'unpause':
          return await this.simple(rest, io, 'unpause');
        case 'shutdown':
          return await this.shutdown(rest, io, 'poweroff');
        case 'reboot':
          return await this.shutdown(rest, io, 'reboot');
        case 'domid':
          return this.domidCmd(rest, io);
        case 'domname':
          return this.domname(rest, io);
        case 'info':
          return this.info(io);
        case 'save':
          return await this.save(rest, io);
        case 'restore':
          return await this.restore(rest, io);
        case 'block-attach':
          return await this.blockAttach(rest, io);
        case 'block-detach':
          return await this.blockDetach(rest, io);
        case 'block-list':
          return this.blockList(rest, io);
        case 'network-attach':
          return await this.networkAttach(rest, io);
        case 'network-detach':
          return await this.networkDetach(rest, io);
        case 'network-list':
          return this.networkList(rest, io);
        case undefined:
          io.err('Usage xl [-vfNtT] <subcommand> [args]\n');
          return 1;
        default:
          io.err('command not implemented\n');
          return 1;
      }
    } catch (err) {
      if (err instanceof Exit) return err.status;
      if (err instanceof LibxlError) {
        io.err(`${err.lines.join('\n')}\n`);
        return 1;
      }
      throw err;
    }
  }

  /** find_domain(): digits are a domid, unchecked; a name must exist. */
  private findDomain(q: string, io: XlIo): number {
    if (/^\d+$/.test(q)) return Number(q);
    const d = this.dm.byName(q);
    if (!d) {
      io.err(`${q} is an invalid domain identifier (rc=-6)\n`);
      throw new Exit(1);
    }
    return d.domid;
  }

  private loadConfig(file: string, io: XlIo, extra: string[], quiet: boolean) {
    const path = isAbsolute(file) ? file : resolve(io.cwd, file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      const msg =
        (e as NodeJS.ErrnoException).code === 'ENOENT'
          ? 'No such file or directory'
          : (e as Error).message;
      io.err(`Failed to read config file: ${file}: ${msg}\n`);
      throw new Exit(1);
    }
    if (!quiet) io.err(`Parsing config from ${file}\n`);
    return this.parseSpec(text, file, extra, io);
  }

  private parseSpec(text: string, source: string, extra: string[], io: XlIo) {
    try {
      return specFromConfig(readConfig(text, source, extra));
    } catch (e) {
      if (e instanceof XenError || e instanceof SimError) {
        io.err(`${e.message}\n`);
        if (e instanceof XlSyntaxError) io.err('Failed to parse config: Invalid argument\n');
        throw new Exit(1);
      }
      throw e;
    }
  }

  private async create(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'pqFecdnhV', 'f', io, 'create');
    let file = p.values.get('f');
    const rest = [...p.args];
    if (file === undefined && rest.length > 0 && !rest[0]!.includes('=')) file = rest.shift();
    if (file === undefined) {
      io.err('Config file not specified\n');
      return 1;
    }
    const spec = this.loadConfig(file, io, rest, p.opts.has('q'));
    if (p.opts.has('n')) return 0;
    try {
      return await this.build(spec, p.opts.has('p'), io);
    } catch (e) {
      if (e instanceof SimError) {
        io.err(`libxl: error: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
  }

  /** libxl_domain_create_new/restore: the domain, built paused and unpaused last unless `paused`. */
  private async build(spec: DomainSpec, paused: boolean, io: XlIo): Promise<number> {
    const hang = io.faults?.has('create-hang') ?? false;
    const d = await this.dm.create(spec, { paused: paused || hang });
    if (hang) {
      d.incomplete = true;
      await new Promise<void>((r) =>
        io.signal?.addEventListener('abort', () => r(), { once: true }),
      );
      return 1;
    }
    return 0;
  }

  private stateLetters(d: Domain): string {
    const reason = d.state === 'shutdown' ? ('-rscwS'[d.shutdownReason ?? 0] ?? '?') : '-';
    return [
      '-',
      d.state === 'running' ? 'b' : '-',
      d.state === 'paused' ? 'p' : '-',
      d.state === 'shutdown' ? 's' : '-',
      reason,
      '-',
    ].join('');
  }

  private list(argv: string[], io: XlIo): number {
    const p = getopt(argv, 'lvhZcn', '', io, 'list');
    let doms: Array<Domain | 'dom0'> = ['dom0', ...this.dm.list()];
    if (p.args.length > 1) {
      io.err("'xl list' requires at most 1 argument\n");
      return 2;
    }
    if (p.args.length === 1) {
      const q = p.args[0]!;
      const domid = this.findDomain(q, io);
      const d = domid === 0 ? 'dom0' : this.dm.get(domid);
      if (!d) {
        io.err(`Error: Domain '${q}' does not exist.\n`);
        return 1;
      }
      doms = [d];
    }
    if (p.opts.has('l')) {
      // Domain 0 appears with the stub config xen-init-dom0 wrote at boot. A
      // half-made domain is left out without an error, as list_domains_details does.
      const arr = doms
        .filter((d) => d === 'dom0' || !d.incomplete)
        .map((d) =>
          d === 'dom0'
            ? {
                domid: 0,
                config: {
                  c_info: {
                    type: 'pv',
                    name: 'Domain-0',
                    uuid: '00000000-0000-0000-0000-000000000000',
                  },
                  b_info: {
                    max_vcpus: this.dm.host.cpus,
                    max_memkb: this.dm.host.dom0MiB * 1024,
                    target_memkb: this.dm.host.dom0MiB * 1024,
                  },
                },
              }
            : {
                domid: d.domid,
                config: configJson(d.spec, d.domid, d.vnc ? { display: d.vnc.display } : undefined),
              },
        );
      io.out(`${JSON.stringify(arr, null, 4)}\n`);
      return 0;
    }
    const verbose = p.opts.has('v');
    let text = 'Name                                        ID   Mem VCPUs\tState\tTime(s)';
    if (verbose) text += '   UUID                            Reason-Code\tSecurity Label';
    text += '\n';
    const up = (Date.now() - this.dm.bootTime) / 1000;
    for (const d of doms) {
      const row =
        d === 'dom0'
          ? {
              name: 'Domain-0',
              domid: 0,
              mem: this.dm.host.dom0MiB,
              vcpus: this.dm.host.cpus,
              state: 'r-----',
              time: up * 0.05,
              uuid: '00000000-0000-0000-0000-000000000000',
              reason: '-',
            }
          : {
              name: d.spec.name,
              domid: d.domid,
              mem: d.spec.memoryMiB,
              vcpus: d.spec.vcpus,
              state: this.stateLetters(d),
              time: this.dm.cpuTime(d),
              uuid: d.spec.uuid,
              reason: d.state === 'shutdown' ? (d.shutdownReason ?? 0).toString(16) : '-',
            };
      text += `${row.name.padEnd(40)} ${String(row.domid).padStart(5)} ${String(row.mem).padStart(5)} ${String(row.vcpus).padStart(5)}     ${row.state}  ${row.time.toFixed(1).padStart(8)}`;
      if (verbose) text += ` ${row.uuid} ${row.reason.padStart(8)} ${'-'.padStart(16)}`;
      text += '\n';
    }
    io.out(text);
    return 0;
  }

  private async simple(argv: string[], io: XlIo, what: 'destroy' | 'pause' | 'unpause') {
    const p = getopt(argv, what === 'destroy' ? 'fh' : 'h', '', io, what);
    need(p, 1, io, `${what}`);
    const domid = this.findDomain(p.args[0]!, io);
    if (domid === 0) {
      if (what === 'destroy' && !p.opts.has('f')) {
        io.err(
          'Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n\n',
        );
        return 1;
      }
      io.err(`libxl: error: the simulator does not ${what} domain 0\n`);
      return what === 'destroy' ? 1 : 0;
    }
    const d = this.dm.get(domid);
    if (!d) {
      if (what === 'destroy') {
        io.err(
          `libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain ${domid}:Non-existant domain\nlibxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain ${domid}:Unable to destroy guest\nlibxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain ${domid}:Destruction of domain failed\ndestroy failed (rc=-21)\n`,
        );
        return 1;
      }
      const verb = what === 'pause' ? 'Pausing' : 'Unpausing';
      io.err(
        `libxl: error: libxl_domain.c:${what === 'pause' ? 583 : 646}:libxl_domain_${what}: Domain ${domid}:${verb} domain: No such process\n`,
      );
      return 0;
    }
    if (what === 'destroy' && io.faults?.has('destroy-fail')) {
      io.err(
        `libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain ${domid}:Unable to destroy guest\nlibxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain ${domid}:Destruction of domain failed\ndestroy failed (rc=-3)\n`,
      );
      return 1;
    }
    if (what === 'destroy') await this.dm.destroy(d);
    else if (what === 'pause') await this.dm.pause(d);
    else await this.dm.unpause(d);
    return 0;
  }

  private async shutdown(argv: string[], io: XlIo, why: 'poweroff' | 'reboot'): Promise<number> {
    const p = getopt(argv, 'awFhH', '', io, why === 'poweroff' ? 'shutdown' : 'reboot');
    let targets: Domain[];
    const verb = why === 'poweroff' ? 'Shutting down' : 'Rebooting';
    const name = why === 'poweroff' ? 'shutdown' : 'reboot';
    if (p.opts.has('a')) targets = this.dm.list();
    else {
      need(p, 1, io, name);
      const domid = this.findDomain(p.args[0]!, io);
      const d = this.dm.get(domid);
      if (!d) {
        io.err(
          `${verb} domain ${domid}\nlibxl: error: libxl_dom.c:37:libxl__domain_type: unable to get domain type for domid=${domid}\n${name} failed (rc=-3)\n`,
        );
        return 1;
      }
      targets = [d];
    }
    const fallback = p.opts.has('F');
    for (const d of targets) {
      io.err(`${verb} domain ${d.domid}\n`);
      // libxl__domain_pvcontrol_available: an HVM guest needs its PV drivers loaded.
      if (this.dm.hasPvControl(d)) await this.dm.requestShutdown(d, why);
      else if (fallback) {
        io.err(
          `PV control interface not available: sending ACPI ${why === 'poweroff' ? 'power' : 'reset'} button event.\n`,
        );
        this.dm.acpiButton(d, why);
      } else {
        io.err(
          `PV control interface not available: external graceful ${name} not possible.\nUse "-F" to fallback to ACPI ${why === 'poweroff' ? 'power' : 'reset'} event.\n${name} failed (rc=-10)\n`,
        );
        return 1;
      }
    }
    if (p.opts.has('w') && targets.length > 0) {
      io.err(`Waiting for ${targets.length} domains\n`);
      await Promise.all(
        targets.map(async (d) => {
          const reason = await this.dm.waitShutdown(d);
          io.err(
            reason === undefined
              ? `Domain ${d.domid} has been destroyed\n`
              : `Domain ${d.domid} has been shut down, reason code ${reason}\n`,
          );
        }),
      );
      io.err('All domains have been shut down\n');
    }
    return 0;
  }

  private domidCmd(argv: string[], io: XlIo): number {
    const p = getopt(argv, 'h', '', io, 'domid');
    need(p, 1, io, 'domid');
    const q = p.args[0]!;
    const d = q === 'Domain-0' ? 0 : this.dm.byName(q)?.domid;
    if (d === undefined) {
      io.err(`Can't get domid of domain name '${q}', maybe this domain does not exist.\n`);
      return 1;
    }
    io.out(`${d}\n`);
    return 0;
  }

  private domname(argv: string[], io: XlIo): number {
    const p = getopt(argv, 'h', '', io, 'domname');
    need(p, 1, io, 'domname');
    const q = p.args[0]!;
    const id = /^\d+$/.test(q) ? Number(q) : -1;
    const name = id === 0 ? 'Domain-0' : this.dm.get(id)?.spec.name;
    if (name === undefined) {
      io.err(`Can't get domain name of domain id '${q}', maybe this domain does not exist.\n`);
      return 1;
    }
    io.out(`${name}\n`);
    return 0;
  }

  private info(io: XlIo): number {
    const used = this.dm.list().reduce((s, d) => s + d.spec.memoryMiB, 0);
    const host = this.dm.host;
    const rows: Array<[string, string | number]> = [
      ['host', hostname()],
      ['release', release()],
      ['version', version()],
      ['machine', arch() === 'x64' ? 'x86_64' : arch()],
      ['nr_cpus', host.cpus],
      ['max_cpu_id', host.cpus - 1],
      ['nr_nodes', 1],
      ['cores_per_socket', host.cpus],
      ['threads_per_core', 1],
      ['cpu_mhz', Math.round(cpus()[0]?.speed ?? 2000)],
      ['hw_caps', '00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000'],
      ['virt_caps', ' hvm hap'],
      ['total_memory', host.totalMiB],
      ['free_memory', Math.max(0, host.totalMiB - host.dom0MiB - used)],
      ['sharing_freed_memory', 0],
      ['sharing_used_memory', 0],
      ['outstanding_claims', 0],
      ['free_cpus', 0],
      ['xen_major', 4],
      ['xen_minor', 17],
      ['xen_extra', '.0-zynclone-sim'],
      ['xen_version', '4.17.0-zynclone-sim'],
      ['xen_caps', 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64'],
      ['xen_scheduler', 'credit2'],
      ['xen_pagesize', 4096],
      ['platform_params', 'virt_start=0xffff800000000000'],
      ['xen_changeset', ''],
      ['xen_commandline', 'placeholder dom0_mem=1024M'],
      ['cc_compiler', 'zynclone simulator'],
      ['cc_compile_by', 'zynclone'],
      ['cc_compile_domain', ''],
      ['cc_compile_date', ''],
      ['build_id', ''],
      ['xend_config_format', 4],
    ];
    io.out(
      rows
        .map(([k, v]) => `${k.padEnd(23)}: ${v}\n`)
        .join('')
        .replace('virt_caps              :  ', 'virt_caps              : '),
    );
    return 0;
  }

  private async save(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'cpDh', '', io, 'save');
    need(p, 2, io, 'save');
    const [q, file, cfg] = p.args as [string, string, string | undefined];
    const domid = this.findDomain(q, io);
    const d = this.dm.get(domid);
    if (!d) {
      io.err('unable to retrieve domain configuration\n');
      return 1;
    }
    let spec = d.spec;
    if (cfg !== undefined) spec = this.loadConfig(cfg, io, [], true);
    const path = isAbsolute(file) ? file : resolve(io.cwd, file);
    const mode = p.opts.has('p') ? 'pause' : p.opts.has('c') ? 'continue' : 'destroy';
    try {
      const { headerBytes } = await this.dm.save(d, path, mode, spec);
      io.err(`Saving to ${file} new xl format (info 0x3/0x0/${headerBytes})\n`);
      io.err(`xc: info: Saving domain ${domid}, type x86 ${spec.type.toUpperCase()}\n`);
    } catch (e) {
      io.err(`Failed to open temp file ${file} for writing\n${(e as Error).message}\n`);
      return 1;
    }
    return 0;
  }

  private async restore(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'FhcpdeVA', '', io, 'restore');
    need(p, 1, io, 'restore');
    const [a, b] = p.args as [string, string | undefined];
    const cfgFile = b === undefined ? undefined : a;
    const file = b === undefined ? a : b;
    const path = isAbsolute(file) ? file : resolve(io.cwd, file);
    let saved: ReturnType<typeof DomainManager.readSave>;
    try {
      saved = (this.dm.constructor as typeof DomainManager).readSave(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        io.err("Can't open restore file: No such file or directory\n");
      } else io.err(`${(e as Error).message}\n`);
      return 1;
    }
    io.err(`Loading new save file ${file} (new xl fmt info 0x3/0x0/${saved.metaLength})\n`);
    io.err(' Savefile contains xl domain config in JSON format\n');
    let spec = saved.spec;
    if (cfgFile !== undefined) spec = this.loadConfig(cfgFile, io, [], false);
    else io.err('Parsing config from <saved>\n');
    // Guest memory and identity (MACs) come from the image even under a new config.
    spec = { ...spec, memoryMiB: saved.spec.memoryMiB };
    return this.build(spec, p.opts.has('p'), io);
  }

  private domain(q: string, io: XlIo): Domain {
    const domid = this.findDomain(q, io);
    const d = this.dm.get(domid);
    if (!d) {
      io.err(`${q} is an invalid domain identifier\n`);
      throw new Exit(1);
    }
    return d;
  }

  private async blockAttach(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'h', '', io, 'block-attach');
    need(p, 2, io, 'block-attach');
    const d = this.domain(p.args[0]!, io);
    let disk: DiskDev;
    try {
      disk = diskFromSpec(p.args.slice(1).join(','));
    } catch (e) {
      io.err(`${(e as Error).message}\n`);
      return 1;
    }
    try {
      await this.dm.attachDisk(d, disk);
    } catch (e) {
      if (e instanceof LibxlError) {
        io.err(`${e.lines.join('\n')}\nlibxl_device_disk_add failed.\n`);
        return 1;
      }
      throw e;
    }
    return 0;
  }

  private async blockDetach(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'fh', '', io, 'block-detach');
    need(p, 2, io, 'block-detach');
    const d = this.domain(p.args[0]!, io);
    const vdev = p.args[1]!;
    let devid = -1;
    try {
      devid = diskDevid(vdev);
    } catch {
      // An unparsable vdev is simply not connected.
    }
    const disk = d.spec.disks.find((x) => x.devid === devid);
    if (!disk) {
      io.err(`Error: Device ${vdev} not connected.\n`);
      return 1;
    }
    try {
      await this.dm.detachDisk(d, disk, { force: p.opts.has('f') });
    } catch (e) {
      if (e instanceof LibxlError) {
        io.err(`${e.lines.join('\n')}\nlibxl_device_disk_safe_remove failed.\n`);
        return 1;
      }
      throw e;
    }
    return 0;
  }

  private blockList(argv: string[], io: XlIo): number {
    const p = getopt(argv, 'h', '', io, 'block-list');
    need(p, 1, io, 'block-list');
    let text = `${'Vdev'.padEnd(5)} ${'BE'.padEnd(3)} ${'handle'.padEnd(6)} ${'state'.padEnd(5)} ${'evt-ch'.padEnd(6)} ${'ring-ref'.padEnd(8)} ${'BE-path'.padEnd(30)}\n`;
    for (const q of p.args) {
      const d = /^\d+$/.test(q) ? this.dm.get(Number(q)) : this.dm.byName(q);
      if (!d) {
        if (!/^\d+$/.test(q)) io.err(`${q} is an invalid domain identifier\n`);
        continue;
      }
      for (const disk of d.spec.disks) {
        const kind = disk.backendtype === 'phy' ? 'vbd' : 'qdisk';
        const be = `/local/domain/0/backend/${kind}/${d.domid}/${disk.devid}`;
        const state = d.connected ? 4 : 1;
        const evt = d.connected ? 18 + (disk.devid & 0xff) : -1;
        const rref = d.connected ? 8 + (disk.devid & 0xff) : -1;
        text += `${String(disk.devid).padEnd(5)} ${'0'.padEnd(3)} ${String(d.domid).padEnd(6)} ${String(state).padEnd(5)} ${String(evt).padEnd(6)} ${String(rref).padEnd(8)} ${be.padEnd(30)}\n`;
      }
    }
    io.out(text);
    return 0;
  }

  private async networkAttach(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'h', '', io, 'network-attach');
    need(p, 1, io, 'network-attach');
    const d = this.domain(p.args[0]!, io);
    const rest = p.args.slice(1);
    const simIp = rest.filter((x) => x.startsWith('sim_ip=')).map((x) => x.slice(7));
    let nic: ReturnType<typeof nicFromSpec>;
    try {
      nic = nicFromSpec(
        rest.filter((x) => !x.startsWith('sim_ip=')).join(','),
        simIp.join(' '),
        simIp.length > 0 ? 'sim_ip' : 'vif ip',
      );
    } catch (e) {
      io.err(`${(e as Error).message}\n`);
      return 1;
    }
    try {
      await this.dm.attachNic(d, nic);
    } catch (e) {
      if (e instanceof LibxlError || e instanceof SimError) {
        io.err(`libxl: error: ${e.message}\nlibxl_device_nic_add failed.\n`);
        return 1;
      }
      throw e;
    }
    return 0;
  }

  private async networkDetach(argv: string[], io: XlIo): Promise<number> {
    const p = getopt(argv, 'h', '', io, 'network-detach');
    need(p, 2, io, 'network-detach');
    const d = this.domain(p.args[0]!, io);
    const key = p.args[1]!;
    const nic = /^\d+$/.test(key)
      ? d.spec.nics.find((n) => n.devid === Number(key))
      : d.spec.nics.find((n) => n.mac === key.toLowerCase());
    if (!nic) {
      io.err(`Unknown device ${key}.\n`);
      return 1;
    }
    await this.dm.detachNic(d, nic);
    return 0;
  }

  private networkList(argv: string[], io: XlIo): number {
    const p = getopt(argv, 'h', '', io, 'network-list');
    need(p, 1, io, 'network-list');
    let text = `${'Idx'.padEnd(3)} ${'BE'.padEnd(2)} ${'Mac Addr.'.padEnd(17)} ${'handle'.padEnd(6)} ${'state'.padEnd(5)} ${'evt-ch'.padEnd(6)} ${'tx-'.padStart(5)}/${'rx-ring-ref'.padEnd(5)} ${'BE-path'.padEnd(30)}\n`;
    for (const q of p.args) {
      const domid = this.findDomain(q, io);
      const d = this.dm.get(domid);
      if (!d) continue;
      for (const nic of [...d.spec.nics].sort((a, b) => a.devid - b.devid)) {
        const be = `/local/domain/0/backend/vif/${d.domid}/${nic.devid}`;
        const state = d.connected ? 4 : 1;
        const evt = d.connected ? 19 + nic.devid : -1;
        const tx = d.connected ? 1280 + nic.devid * 2 : -1;
        const rx = d.connected ? 1281 + nic.devid * 2 : -1;
        text += `${String(nic.devid).padEnd(3)} ${'0'.padEnd(2)} ${nic.mac}${String(nic.devid).padStart(6)} ${String(state).padStart(5)} ${String(evt).padStart(6)} ${String(tx).padStart(5)}/${String(rx).padEnd(11)} ${be.padEnd(30)}\n`;
      }
    }
    io.out(text);
    return 0;
  }
}

export function hostInfo(): {
  totalMiB: number;
  dom0MiB: number;
  cpus: number;
  shadowPaging: boolean;
} {
  // No shadow paging, as in Debian's Xen 4.17: PV guests cannot be saved live.
  return {
    totalMiB: Math.round(totalmem() / 1048576),
    dom0MiB: 1024,
    cpus: cpus().length,
    shadowPaging: false,
  };
}
