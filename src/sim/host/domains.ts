// The simulated hypervisor and toolstack: domain ids, names, states, the
// XenStore layout libxl writes, and the host objects behind each domain
// (a network namespace with its NICs, disk files, a QEMU VNC console).
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { XsClient } from '../../xenstore/index.js';
import { type VncConsole, startVnc, stopVnc } from '../console/vnc.js';
import type { Journal } from '../journal.js';
import type { SimNetwork } from '../network/netns.js';
import { SimError, sleep } from '../proc.js';
import { GuestXenbus, type ShutdownRequest } from './guest.js';
import {
  connectDevice,
  removeDevice,
  removeDomain,
  vbdBackendPath,
  vbdFrontendPath,
  vifBackendPath,
  vifFrontendPath,
  writeDomain,
  writeVbd,
  writeVif,
  writeVnc,
} from './layout.js';
import type { DiskDev, DomainSpec, NicSpec } from './spec.js';

export type DomainState = 'running' | 'paused' | 'shutdown';

export interface Domain {
  domid: number;
  spec: DomainSpec;
  state: DomainState;
  /** libxl shutdown reason code once shut down (0 poweroff, 1 reboot, 2 suspend). */
  shutdownReason?: number;
  /** Seconds of simulated CPU time accumulated while running. */
  cpuSeconds: number;
  runningSince?: number;
  /** Devices have gone through the xenbus handshake (the guest has booted). */
  connected: boolean;
  /** The guest kernel's xenbus connection, from its first boot on. */
  guest?: GuestXenbus;
  /** The guest has taken a shutdown request and is going down. */
  shuttingDown?: boolean;
  /** A shutdown sequence the guest was in when it was paused; it goes on at unpause. */
  pausedShutdown?: ShutdownRequest;
  vnc?: VncConsole;
  dir: string;
  waiters: Array<() => void>;
  /** Disks (devids) the guest has mounted: its frontend refuses to close them. */
  busy: Set<number>;
  /**
   * Its `xl create` was killed half-way (fault `create-hang`): libxl cannot
   * retrieve its configuration, so `xl list -l` leaves it out.
   */
  incomplete?: boolean;
}

/** Highest domid for guests (DOMID_FIRST_RESERVED - 1); allocation then wraps to 1. */
const DOMID_MAX = 0x7fef;
/** An idle simulated guest uses about this share of a CPU (for xl list's Time(s)). */
const IDLE_CPU_SHARE = 0.01;

export interface HostInfo {
  totalMiB: number;
  dom0MiB: number;
  cpus: number;
  /** Log-dirty for PV guests (live save); HVM and PVH ones use HAP. */
  shadowPaging: boolean;
}

export class DomainManager {
  private readonly domains = new Map<number, Domain>();
  private lastDomid = 0;
  private lock: Promise<unknown> = Promise.resolve();
  readonly bootTime = Date.now();

  constructor(
    private readonly xs: XsClient,
    private readonly net: SimNetwork,
    private readonly journal: Journal,
    private readonly domainsDir: string,
    readonly host: HostInfo,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void,
    /** The XenStore socket whose connections act as the given domain. */
    private readonly guestSocket: (domid: number) => string,
    /** How long a non-forced block-detach waits for the guest (libxl: 10 s). */
    private readonly detachTimeoutMs = 10_000,
  ) {}

  /** Serialises mutations, so ids, names and host objects stay consistent. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => {});
    return next;
  }

  list(): Domain[] {
    return [...this.domains.values()].sort((a, b) => a.domid - b.domid);
  }

  get(domid: number): Domain | undefined {
    return this.domains.get(domid);
  }

  byName(name: string): Domain | undefined {
    for (const d of this.domains.values()) if (d.spec.name === name) return d;
    return undefined;
  }

  cpuTime(d: Domain): number {
    const live = d.runningSince === undefined ? 0 : (Date.now() - d.runningSince) / 1000;
    return d.cpuSeconds + live * IDLE_CPU_SHARE;
  }

  private allocDomid(): number {
    for (let i = 0; i < DOMID_MAX; i++) {
      this.lastDomid = this.lastDomid >= DOMID_MAX ? 1 : this.lastDomid + 1;
      if (!this.domains.has(this.lastDomid)) return this.lastDomid;
    }
    throw new SimError('SIM_NO_DOMID', 'no free domain id');
  }

  /**
   * Builds a domain (libxl_domain_create_new). Errors carry xl's wording in
   * `libxl` lines so the xl front end can print them.
   */
  async create(spec: DomainSpec, opts: { paused: boolean }): Promise<Domain> {
    return this.exclusive(async () => {
      const domid = this.allocDomid();
      if (this.byName(spec.name) || spec.name === 'Domain-0') {
        throw new LibxlError(
          [
            `libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain ${domid}:Domain with name "${spec.name}" already exists.`,
            `libxl: error: libxl_create.c:742:libxl__domain_make: Domain ${domid}:cannot make domain: -6`,
          ],
          'XL_DUPLICATE_NAME',
        );
      }
      for (const [i, disk] of spec.disks.entries()) {
        if (disk.format !== 'empty' && !existsSync(disk.target)) {
          throw new LibxlError(
            [
              `libxl: error: libxl_device.c:468:libxl__device_disk_set_backend: Disk vdev=${disk.vdev} failed to stat: ${disk.target}: No such file or directory`,
              `libxl: error: libxl_create.c:1302:initiate_domain_create: Domain ${domid}:Unable to set disk defaults for disk ${i}`,
            ],
            'XL_DISK_MISSING',
          );
        }
      }
      for (const disk of spec.disks) this.refuseSharing(domid, disk, spec.disks);
      const dir = join(this.domainsDir, String(domid));
      const d: Domain = {
        domid,
        spec,
        state: 'paused',
        cpuSeconds: 0,
        connected: false,
        dir,
        waiters: [],
        busy: new Set(),
      };
      this.domains.set(domid, d);
      try {
        this.journal.made({ kind: 'dir', path: dir });
        mkdirSync(dir, { recursive: true });
        await this.xs.transaction(async (tx) => {
          await writeDomain(tx, {
            domid,
            name: spec.name,
            uuid: spec.uuid,
            type: spec.type,
            memoryMiB: spec.memoryMiB,
            maxMemMiB: spec.maxMemMiB,
            vcpus: spec.vcpus,
            startTime: Date.now() / 1000,
          });
          for (const nic of spec.nics) await writeVif(tx, domid, vifLayout(domid, nic));
          for (const disk of spec.disks) await writeVbd(tx, domid, vbdLayout(disk));
        });
        // xenstored learns of the domain: @introduceDomain fires, its socket appears.
        await this.xs.introduce(domid, 0x10000 + domid, 1);
        if (this.net.enabled) {
          await this.net.addGuest(domid);
          for (const nic of spec.nics) {
            await this.net.addVif(
              domid,
              {
                devid: nic.devid,
                name: nic.vifname ?? `vif${domid}.${nic.devid}`,
                mac: nic.mac,
                bridge: nic.bridge,
                ips: nic.simIps,
              },
              false,
            );
          }
        }
        if (spec.vnc) {
          d.vnc = await startVnc({
            name: spec.name,
            domid,
            dir,
            journal: this.journal,
            listen: spec.vnc.listen,
            firstDisplay: spec.vnc.display ?? domid,
            log: (m) => this.log(m),
          });
          await writeVnc(this.xs, domid, d.vnc.port, d.vnc.listen);
        }
        if (!opts.paused) await this.run(d);
        this.log('domain created', { domid, name: spec.name, paused: opts.paused });
        return d;
      } catch (err) {
        await this.teardown(d).catch(() => {});
        throw err;
      }
    });
  }

  /** Unpauses: the guest boots (first time) or resumes; its NICs come up. */
  private async run(d: Domain): Promise<void> {
    if (this.net.enabled) {
      await this.net.setGuestLinks(
        d.domid,
        d.spec.nics.map((n) => n.devid),
        true,
      );
    }
    d.state = 'running';
    d.runningSince = Date.now();
    const firstBoot = !d.connected;
    if (firstBoot) {
      d.connected = true;
      await this.xs.transaction(async (tx) => {
        for (const nic of d.spec.nics) {
          await connectDevice(
            tx,
            vifFrontendPath(d.domid, nic.devid),
            vifBackendPath(d.domid, nic.devid),
            'vif',
            nic.devid,
          );
        }
        for (const disk of d.spec.disks) {
          await connectDevice(
            tx,
            vbdFrontendPath(d.domid, disk.devid),
            vbdBackendPath(d.domid, vbdLayout(disk)),
            'vbd',
            disk.devid & 0xff,
          );
        }
      });
      // The guest's PV drivers come up: its control/shutdown watch fires once
      // right away, so a request written before the first boot is seen now.
      d.guest = await GuestXenbus.boot(this.guestSocket(d.domid), d.domid, (g) =>
        this.onShutdownWatch(d, g),
      );
    }
    if (d.pausedShutdown) {
      const why = d.pausedShutdown;
      d.pausedShutdown = undefined;
      d.shuttingDown = true;
      this.guestShutdown(d, why);
    } else if (!firstBoot) {
      // Watch events that came while the vCPUs were stopped are handled now.
      this.onShutdownWatch(d);
    }
  }

  private freeze(d: Domain): void {
    if (d.runningSince !== undefined) {
      d.cpuSeconds += ((Date.now() - d.runningSince) / 1000) * IDLE_CPU_SHARE;
      d.runningSince = undefined;
    }
  }

  async pause(d: Domain): Promise<void> {
    await this.exclusive(async () => {
      if (d.state !== 'running') return;
      if (this.net.enabled) {
        await this.net.setGuestLinks(
          d.domid,
          d.spec.nics.map((n) => n.devid),
          false,
        );
      }
      this.freeze(d);
      d.state = 'paused';
    });
  }

  async unpause(d: Domain): Promise<void> {
    await this.exclusive(async () => {
      if (d.state !== 'paused' || !this.domains.has(d.domid)) return;
      await this.run(d);
    });
  }

  async destroy(d: Domain): Promise<void> {
    await this.exclusive(() => this.teardown(d));
  }

  private async teardown(d: Domain): Promise<void> {
    if (!this.domains.has(d.domid)) return;
    this.freeze(d);
    await d.guest?.close();
    if (d.vnc) await stopVnc(d.vnc, this.journal);
    if (this.net.enabled) await this.net.removeGuest(d.domid).catch(() => {});
    await this.xs.transaction((tx) => removeDomain(tx, d.domid, d.spec.uuid));
    await this.xs.release(d.domid).catch(() => {});
    rmSync(d.dir, { recursive: true, force: true });
    this.journal.gone({ kind: 'dir', path: d.dir });
    this.domains.delete(d.domid);
    for (const w of d.waiters.splice(0)) w();
    this.log('domain destroyed', { domid: d.domid, name: d.spec.name });
  }

  /** Resolves once the domain has shut down (or is gone), with the shutdown reason code. */
  waitShutdown(d: Domain): Promise<number | undefined> {
    if (!this.domains.has(d.domid) || d.state === 'shutdown') {
      return Promise.resolve(d.shutdownReason);
    }
    return new Promise((r) => d.waiters.push(() => r(d.shutdownReason)));
  }

  /**
   * What libxl_domain_shutdown / libxl_domain_reboot do: write the request to
   * the guest's control/shutdown. The guest's kernel acts on it through its
   * watch (a paused one once unpaused); anyone with XenStore access can do
   * the same with xenstore-write.
   */
  async requestShutdown(d: Domain, why: 'poweroff' | 'reboot'): Promise<void> {
    const path = `/local/domain/${d.domid}/control/shutdown`;
    await this.xs.transaction((tx) => tx.write(path, why));
  }

  /** libxl__domain_pvcontrol_available: PV guests always, HVM ones once their PV drivers run. */
  hasPvControl(d: Domain): boolean {
    return d.spec.type !== 'hvm' || d.guest !== undefined;
  }

  /** An ACPI power (or reset) button press: the guest's OS acts on it once it runs. */
  acpiButton(d: Domain, why: 'poweroff' | 'reboot'): void {
    if (d.state === 'running') {
      d.shuttingDown = true;
      this.guestShutdown(d, why);
    } else if (d.state === 'paused') d.pausedShutdown = why;
  }

  /** `guest` is given while it boots: its watch fires before boot() returns. */
  private onShutdownWatch(d: Domain, guest = d.guest): void {
    if (d.state !== 'running' || d.shuttingDown || !guest) return;
    guest
      .takeShutdownRequest()
      .then((why) => {
        if (why === undefined || d.shuttingDown || !this.domains.has(d.domid)) return;
        d.shuttingDown = true;
        this.guestShutdown(d, why);
      })
      .catch((err: Error) => this.log('guest shutdown watch failed', { error: err.message }));
  }

  private guestShutdown(d: Domain, why: ShutdownRequest): void {
    // A short delay stands for the guest's own shutdown sequence.
    void sleep(50).then(() =>
      this.exclusive(async () => {
        if (!this.domains.has(d.domid) || d.state === 'shutdown') return;
        if (d.state === 'paused') {
          d.pausedShutdown = why;
          return;
        }
        if (this.net.enabled) {
          await this.net
            .setGuestLinks(
              d.domid,
              d.spec.nics.map((n) => n.devid),
              false,
            )
            .catch(() => {});
        }
        this.freeze(d);
        d.state = 'shutdown';
        d.shutdownReason = why === 'poweroff' ? 0 : why === 'reboot' ? 1 : 2;
        this.log('domain shut down', { domid: d.domid, reason: why });
        for (const w of d.waiters.splice(0)) w();
        // A suspended domain waits for the toolstack (save, then destroy) as under libxl.
        if (why === 'suspend') return;
        const act = why === 'poweroff' ? d.spec.onPoweroff : d.spec.onReboot;
        if (act === 'preserve') return;
        await this.teardown(d);
        if (act === 'restart' || act === 'rename-restart' || act === 'coredump-restart') {
          setImmediate(() => {
            this.create(d.spec, { paused: false }).catch((err: Error) =>
              this.log('reboot failed', { name: d.spec.name, error: err.message }),
            );
          });
        }
      }).catch((err: Error) => this.log('guest shutdown failed', { error: err.message })),
    );
  }

  // ---- hotplug -------------------------------------------------------------

  async attachNic(d: Domain, nic: Omit<NicSpec, 'devid'> & { devid?: number }): Promise<NicSpec> {
    return this.exclusive(async () => {
      const used = new Set(d.spec.nics.map((n) => n.devid));
      let devid = nic.devid ?? 0;
      if (nic.devid === undefined) while (used.has(devid)) devid++;
      else if (used.has(devid)) throw new LibxlError([`libxl: error: vif ${devid} exists`]);
      const full: NicSpec = { ...nic, devid };
      await this.xs.transaction((tx) => writeVif(tx, d.domid, vifLayout(d.domid, full)));
      if (this.net.enabled) {
        await this.net.addVif(
          d.domid,
          {
            devid,
            name: full.vifname ?? `vif${d.domid}.${devid}`,
            mac: full.mac,
            bridge: full.bridge,
            ips: full.simIps,
          },
          d.state === 'running',
        );
      }
      d.spec.nics.push(full);
      if (d.connected) {
        await this.xs.transaction((tx) =>
          connectDevice(
            tx,
            vifFrontendPath(d.domid, devid),
            vifBackendPath(d.domid, devid),
            'vif',
            devid,
          ),
        );
      }
      return full;
    });
  }

  async detachNic(d: Domain, nic: NicSpec): Promise<void> {
    await this.exclusive(async () => {
      if (this.net.enabled) await this.net.removeVif(nic.vifname ?? `vif${d.domid}.${nic.devid}`);
      await this.xs.transaction((tx) =>
        removeDevice(
          tx,
          d.domid,
          vifFrontendPath(d.domid, nic.devid),
          vifBackendPath(d.domid, nic.devid),
        ),
      );
      d.spec.nics = d.spec.nics.filter((n) => n.devid !== nic.devid);
    });
  }

  async attachDisk(d: Domain, disk: DiskDev): Promise<void> {
    await this.exclusive(async () => {
      if (d.spec.disks.some((x) => x.devid === disk.devid)) {
        throw new LibxlError([
          `libxl: error: libxl_device.c:1424:device_addrm_aocomplete: unable to add device with path /local/domain/0/backend/${vbdLayout(disk).kind}/${d.domid}/${disk.devid}`,
        ]);
      }
      if (disk.format !== 'empty' && !existsSync(disk.target)) {
        throw new LibxlError([
          `libxl: error: libxl_device.c:468:libxl__device_disk_set_backend: Disk vdev=${disk.vdev} failed to stat: ${disk.target}: No such file or directory`,
        ]);
      }
      this.refuseSharing(d.domid, disk, [disk]);
      await this.xs.transaction((tx) => writeVbd(tx, d.domid, vbdLayout(disk)));
      d.spec.disks.push(disk);
      if (d.connected) {
        await this.xs.transaction((tx) =>
          connectDevice(
            tx,
            vbdFrontendPath(d.domid, disk.devid),
            vbdBackendPath(d.domid, vbdLayout(disk)),
            'vbd',
            disk.devid & 0xff,
          ),
        );
      }
    });
  }

  /**
   * The block hotplug script's check_sharing, for every backend type and with
   * no exemption for domains of the same VM: a writable disk may be attached
   * nowhere else, a read-only one nowhere writable. `own` are the disks the
   * new domain (or attach) brings, checked against each other too.
   */
  private refuseSharing(domid: number, disk: DiskDev, own: readonly DiskDev[]): void {
    if (disk.target === '' || disk.format === 'empty' || disk.devtype === 'cdrom') return;
    const path = realTarget(disk.target);
    const others = [
      ...this.list().flatMap((o) => o.spec.disks.map((x) => ({ domid: o.domid, x }))),
      ...own.filter((x) => x !== disk).map((x) => ({ domid, x })),
    ];
    const clash = others.find(
      ({ x }) =>
        x.target !== '' &&
        realTarget(x.target) === path &&
        (disk.access === 'w' || x.access === 'w'),
    );
    if (clash === undefined) return;
    const what = disk.backendtype === 'phy' ? `Device ${disk.target}` : `File ${disk.target}`;
    throw new LibxlError(
      [
        `libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/block add [${process.pid}] exited with error status 1`,
        `libxl: error: libxl_device.c:1286:device_hotplug_child_death_cb: script: ${what} is mounted in a guest domain (domain ${clash.domid}, ${clash.x.vdev}), and so cannot be mounted ${disk.access === 'w' ? 'read-write' : 'read-only'} now.`,
        `libxl: error: libxl_create.c:1862:domcreate_attach_devices: Domain ${domid}:unable to add disk devices`,
      ],
      'XL_DISK_SHARED',
    );
  }

  /**
   * libxl_device_disk_remove: without force, the backend is told to close
   * (online 0, state Closing) and the guest's frontend must close too; a
   * guest with the disk mounted refuses and writes its error node (Linux's
   * xenbus_dev_error, or Windows xenvbd's frontend `error`), a paused one
   * cannot answer. After `detachTimeoutMs` xl gives up (Xen 4.15+) and the
   * device stays. With force, or for a guest that never connected, the
   * device is removed at once.
   */
  async detachDisk(d: Domain, disk: DiskDev, opts: { force?: boolean } = {}): Promise<void> {
    const fe = vbdFrontendPath(d.domid, disk.devid);
    const be = vbdBackendPath(d.domid, vbdLayout(disk));
    if (!opts.force && d.connected) {
      await this.xs.transaction(async (tx) => {
        await tx.write(`${be}/online`, '0');
        await tx.write(`${be}/state`, '5');
      });
      const guest = d.guest;
      const canClose = d.state === 'running' && guest !== undefined && !d.busy.has(disk.devid);
      if (!canClose) {
        if (d.state === 'running' && guest !== undefined) {
          await guest.refuseClose(fe, disk.devid, d.spec.type === 'hvm');
        }
        await sleep(this.detachTimeoutMs);
        throw new LibxlError([
          `libxl: error: libxl_device.c:1101:device_backend_callback: Domain ${d.domid}:unable to remove device with path ${be}`,
          `libxl: error: libxl_device.c:1309:device_addrm_aocomplete: unable to remove vbd with id ${disk.devid}`,
        ]);
      }
      await guest.closeFrontend(fe);
      await this.xs.write(`${be}/state`, '6');
    }
    await this.exclusive(async () => {
      await this.xs.transaction((tx) => removeDevice(tx, d.domid, fe, be));
      d.spec.disks = d.spec.disks.filter((x) => x.devid !== disk.devid);
      d.busy.delete(disk.devid);
    });
  }

  // ---- save / restore ------------------------------------------------------

  /**
   * Writes the config and a memory image of `memory` MiB of real bytes, with
   * the domain paused for the whole write as xl save does; then destroys it,
   * or leaves it paused (-p) or running (-c).
   */
  async save(d: Domain, file: string, mode: 'destroy' | 'pause' | 'continue', spec = d.spec) {
    const wasRunning = d.state === 'running';
    await this.pause(d);
    const meta = Buffer.from(JSON.stringify({ version: 1, spec, memoryMiB: spec.memoryMiB }));
    const fd = openSync(file, 'w', 0o644);
    try {
      const head = Buffer.alloc(SAVE_MAGIC.length + 4);
      SAVE_MAGIC.copy(head, 0);
      head.writeUInt32LE(meta.length, SAVE_MAGIC.length);
      writeSync(fd, head);
      writeSync(fd, meta);
      const chunk = memoryChunk();
      for (let i = 0; i < d.spec.memoryMiB; i++) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
    if (mode === 'destroy') await this.destroy(d);
    else if (mode === 'continue' && wasRunning) await this.unpause(d);
    return { headerBytes: SAVE_MAGIC.length + 4 + meta.length };
  }

  /**
   * zynclone-livesave's live save: the image is written while the domain
   * runs, then the domain is suspended (xl list's `s`, shutdown reason
   * suspend) for a final round of "dirty" memory, a 1/32 of it, and held so
   * until `hold` resolves; then resumed in place. `signal` (the helper's
   * death) stops the copy with the domain running, or ends the hold.
   * A PV domain needs shadow paging for log-dirty, which this host lacks, as
   * Debian's Xen 4.17: it fails before anything is written.
   */
  async liveSave(
    d: Domain,
    file: string,
    opts: { hold: () => Promise<void>; onSuspended: () => void; signal: AbortSignal },
  ): Promise<{
    pauseMs: number;
    copyMs: number;
    resumeMs: number;
    totalMs: number;
    rounds: number;
    finalRoundPages: number;
  }> {
    if (d.spec.type === 'pv' && !this.host.shadowPaging) {
      throw new LibxlError(
        [
          `domain ${d.domid} is a PV guest and this hypervisor has no shadow paging: it cannot track the pages the guest dirties, so it cannot be saved live`,
        ],
        'NO_LOG_DIRTY',
      );
    }
    const t0 = performance.now();
    const fd = openSync(file, 'wx', 0o600);
    let suspendedAt = 0;
    let copied = 0;
    const dirty = Math.max(1, Math.ceil(d.spec.memoryMiB / 32));
    try {
      const meta = Buffer.from(
        JSON.stringify({ version: 1, spec: d.spec, memoryMiB: d.spec.memoryMiB }),
      );
      const head = Buffer.alloc(SAVE_MAGIC.length + 4);
      SAVE_MAGIC.copy(head, 0);
      head.writeUInt32LE(meta.length, SAVE_MAGIC.length);
      writeSync(fd, head);
      writeSync(fd, meta);
      const memoryAt = head.length + meta.length;
      const chunk = memoryChunk();
      // The first round, while the guest runs; it yields so the guest (and the daemon) go on.
      for (let i = 0; i < d.spec.memoryMiB; i++) {
        if (opts.signal.aborted) throw new LibxlError(['live save interrupted'], 'INTERRUPTED');
        writeSync(fd, chunk);
        if (i % 8 === 7) await new Promise((r) => setImmediate(r));
      }
      if (!this.domains.has(d.domid) || d.state !== 'running') {
        throw new LibxlError([`domain ${d.domid} stopped running during the live save`], 'SUSPEND');
      }
      suspendedAt = performance.now();
      await this.exclusive(async () => {
        if (this.net.enabled) {
          await this.net.setGuestLinks(
            d.domid,
            d.spec.nics.map((n) => n.devid),
            false,
          );
        }
        this.freeze(d);
        d.state = 'shutdown';
        d.shutdownReason = 2;
      });
      // The final round: the pages dirtied during the first, rewritten in place.
      for (let i = 0; i < dirty; i++) {
        writeSync(fd, chunk, 0, chunk.length, memoryAt + i * chunk.length);
      }
      copied = performance.now();
    } catch (err) {
      closeSync(fd);
      if (suspendedAt > 0) await this.resumeSuspended(d);
      throw err;
    }
    closeSync(fd);
    opts.onSuspended();
    await opts.hold();
    const beforeResume = performance.now();
    await this.resumeSuspended(d);
    const resumed = performance.now();
    return {
      pauseMs: resumed - suspendedAt,
      copyMs: copied - t0,
      resumeMs: resumed - beforeResume,
      totalMs: resumed - t0,
      rounds: 2,
      finalRoundPages: dirty * 256,
    };
  }

  /** Resumes a domain suspended by a live save (libxl_domain_resume, suspend_cancel). */
  async resumeSuspended(d: Domain): Promise<boolean> {
    return this.exclusive(async () => {
      if (!this.domains.has(d.domid) || d.state !== 'shutdown' || d.shutdownReason !== 2) {
        return false;
      }
      await this.run(d);
      return true;
    });
  }

  /** Reads a save file: its saved spec, after reading the whole memory image. */
  static readSave(file: string): { spec: DomainSpec; metaLength: number } {
    const fd = openSync(file, 'r');
    try {
      const head = Buffer.alloc(SAVE_MAGIC.length + 4);
      if (
        readSync(fd, head, 0, head.length, 0) !== head.length ||
        !head.subarray(0, SAVE_MAGIC.length).equals(SAVE_MAGIC)
      ) {
        throw new SimError(
          'XL_BAD_SAVEFILE',
          'File has wrong magic number - corrupt or for a different tool?',
        );
      }
      const len = head.readUInt32LE(SAVE_MAGIC.length);
      const meta = Buffer.alloc(len);
      readSync(fd, meta, 0, len, head.length);
      const parsed = JSON.parse(meta.toString('utf8')) as { spec: DomainSpec; memoryMiB: number };
      const expect = head.length + len + parsed.memoryMiB * 1024 * 1024;
      if (statSync(file).size < expect)
        throw new SimError('XL_BAD_SAVEFILE', 'Savefile truncated.');
      // The memory image is read in full, so restore time follows memory size.
      const buf = Buffer.allocUnsafe(1024 * 1024);
      let pos = head.length + len;
      for (let i = 0; i < parsed.memoryMiB; i++) pos += readSync(fd, buf, 0, buf.length, pos);
      return { spec: parsed.spec, metaLength: len };
    } finally {
      closeSync(fd);
    }
  }

  async shutdownAll(): Promise<void> {
    for (const d of this.list()) await this.destroy(d).catch(() => {});
  }
}

/** The first bytes of an xl save file (xl_saverestore.c savefileheader_magic). */
export const SAVE_MAGIC = Buffer.from('Xen saved domain, xl format\n \0 \r', 'latin1');

let chunkCache: Buffer | undefined;
function memoryChunk(): Buffer {
  chunkCache ??= randomBytes(1024 * 1024);
  return chunkCache;
}

export class LibxlError extends Error {
  constructor(
    readonly lines: string[],
    readonly code = 'XL_FAILED',
  ) {
    super(lines.join('\n'));
    this.name = 'LibxlError';
  }
}

function realTarget(target: string): string {
  try {
    return realpathSync(target);
  } catch {
    return target;
  }
}

function vifLayout(_domid: number, nic: NicSpec) {
  const v: Parameters<typeof writeVif>[2] = {
    devid: nic.devid,
    mac: nic.mac,
    bridge: nic.bridge,
    script: nic.script.startsWith('/') ? nic.script : `/etc/xen/scripts/${nic.script}`,
  };
  if (nic.vifname !== undefined) v.vifname = nic.vifname;
  if (nic.ip !== undefined) v.ip = nic.ip;
  return v;
}

export function vbdLayout(disk: DiskDev) {
  return {
    devid: disk.devid,
    vdev: disk.vdev,
    target: disk.target,
    format: disk.format,
    access: disk.access,
    devtype: disk.devtype,
    kind: disk.backendtype === 'phy' ? ('vbd' as const) : ('qdisk' as const),
  };
}
