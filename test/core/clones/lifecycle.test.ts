// The lifecycle in-process and fast: a fake xl driver (domains in a map; the
// real driver is held to the simulator's xl by test/contract), the
// simulator's XenStore server on a socket with a stand-in that acknowledges
// every published generation, a temporary state store and root. A table
// fails every journal step of every clone kind and checks the rollback
// leaves nothing: no domain, no paused original, no file, no XenStore node,
// no record, no running operation.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CloneLifecycle } from '../../../src/core/clones/lifecycle.js';
import { LiveSaveFailed, type LiveSaver } from '../../../src/core/clones/live-save.js';
import {
  ACTIVATE_STEPS,
  CREATE_STEPS,
  DEACTIVATE_STEPS,
  REMOVE_STEPS,
  START_STEPS,
  STOP_STEPS,
} from '../../../src/core/clones/steps.js';
import { type ZynclonePaths, validateVmName, zynclonePaths } from '../../../src/core/paths.js';
import { type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XlConfig, type XlDriver, parseVif } from '../../../src/xen/index.js';
import { XsClient } from '../../../src/xenstore/index.js';

interface FakeDomain {
  domid: number;
  uuid: string;
  paused: boolean;
  /** False for a domain whose `xl create` was killed half-way: `xl list -l` leaves it out. */
  complete?: boolean;
  /** Held suspended by a live save (xl list's `s`). */
  suspended?: boolean;
  /** Shut down and kept (on_reboot "preserve"): xl list's `s` with this reason letter. */
  shutDown?: 'r' | 'c';
  nics: { devid: number; mac?: string; bridge?: string; vifname?: string }[];
}

/** The part of xl the lifecycle uses, over a map of domains. */
class FakeXl {
  readonly domains = new Map<string, FakeDomain>();
  private nextDomid = 1;
  /** `xl create` makes the domain, then runs out of time and is killed (XL_TIMEOUT). */
  createTimesOut = false;
  /** How many `xl destroy` calls fail (XL_FAILED) before they work again. */
  destroyFailures = 0;

  boot(cfgPath: string, paused: boolean): number {
    const cfg = XlConfig.parse(readFileSync(cfgPath, 'utf8'), cfgPath);
    const name = cfg.getString('name')!;
    if (this.domains.has(name))
      throw Object.assign(new Error(`domain ${name} exists`), { code: 'XL_FAILED' });
    const domid = this.nextDomid++;
    const nics = (cfg.getStrings('vif') ?? []).map((t, i) => {
      const v = parseVif(t);
      return { devid: v.devid ?? i, mac: v.mac, bridge: v.bridge, vifname: v.vifname };
    });
    const uuid = cfg.getString('uuid') ?? `0000-${domid}`;
    this.domains.set(name, { domid, uuid, paused, nics, complete: !this.createTimesOut });
    if (this.createTimesOut) {
      throw Object.assign(new Error(`xl create -p ${cfgPath} did not finish and was killed`), {
        code: 'XL_TIMEOUT',
      });
    }
    return domid;
  }

  private entry(ref: string | number): [string, FakeDomain] {
    const e = [...this.domains].find(([n, d]) => n === ref || d.domid === ref);
    if (!e) throw Object.assign(new Error(`no domain ${ref}`), { code: 'XL_NO_SUCH_DOMAIN' });
    return e;
  }

  private get(ref: string | number): FakeDomain {
    return this.entry(ref)[1];
  }

  async list() {
    return [...this.domains].map(([name, d]) => ({
      name,
      domid: d.domid,
      memMiB: 64,
      vcpus: 1,
      state: d.paused
        ? '--p---'
        : d.suspended
          ? '---ss-'
          : d.shutDown
            ? `---s${d.shutDown}-`
            : '-b----',
      flags: {
        running: false,
        blocked: !d.paused && !d.suspended && !d.shutDown,
        paused: d.paused,
        shutdown: (d.suspended ?? false) || d.shutDown !== undefined,
        dying: false,
        ...(d.suspended
          ? { shutdownReason: 's' }
          : d.shutDown
            ? { shutdownReason: d.shutDown }
            : {}),
      },
      cpuSeconds: 0,
    }));
  }
  async listVerbose() {
    const uuids = new Map([...this.domains].map(([name, d]) => [name, d.uuid]));
    return (await this.list()).map((d) => ({ ...d, uuid: uuids.get(d.name)! }));
  }
  async listLong(name: string) {
    const d = this.get(name);
    if (d.complete === false) return [];
    return [
      {
        domid: d.domid,
        name,
        uuid: d.uuid,
        type: 'pv',
        disks: [],
        nics: d.nics,
        pcidevs: [],
        usbdevs: [],
        vtpms: [],
        config: {},
      },
    ];
  }
  async create(cfgPath: string, opts: { paused?: boolean } = {}) {
    return this.boot(cfgPath, opts.paused ?? false);
  }
  async restore(file: string, opts: { paused?: boolean; cfgPath?: string } = {}) {
    if (!existsSync(file)) throw new Error(`no save file ${file}`);
    return this.boot(opts.cfgPath!, opts.paused ?? false);
  }
  async save(name: string, file: string, opts: { paused?: boolean } = {}) {
    const d = this.get(name);
    writeFileSync(file, 'memory image');
    if (opts.paused) d.paused = true;
    else this.domains.delete(name);
  }
  async pause(ref: string | number) {
    this.get(ref).paused = true;
  }
  async unpause(ref: string | number) {
    this.get(ref).paused = false;
  }
  async destroy(ref: string | number) {
    const [name] = this.entry(ref);
    if (this.destroyFailures > 0) {
      this.destroyFailures--;
      throw Object.assign(new Error(`xl destroy ${ref} failed`), { code: 'XL_FAILED' });
    }
    this.domains.delete(name);
  }
  async shutdown(name: string) {
    await this.destroy(name);
  }
}

/**
 * The live save helper's part, over the fake xl's domains: the image is
 * written and the domain held suspended until release. `failBefore` fails
 * before the suspension (as a PV guest without shadow paging does),
 * `failRelease` after it.
 */
class FakeLiveSaver implements LiveSaver {
  constructor(
    private readonly xl: FakeXl,
    private readonly fail: { before?: boolean; release?: boolean } = {},
  ) {}

  async save(vm: string, file: string) {
    const d = this.xl.domains.get(vm);
    if (!d) throw new LiveSaveFailed('NO_DOMAIN', `no domain ${vm}`, false);
    if (this.fail.before) {
      writeFileSync(file, 'partial image');
      throw new LiveSaveFailed('NO_LOG_DIRTY', `${vm} cannot be saved live`, false);
    }
    writeFileSync(file, 'memory image');
    d.suspended = true;
    return {
      release: async () => {
        if (this.fail.release) throw new LiveSaveFailed('RESUME', 'resume failed', true);
        d.suspended = false;
        return { pauseMs: 7, copyMs: 40, totalMs: 47, rounds: 3, finalRoundPages: 20 };
      },
    };
  }

  async resume(vm: string) {
    const d = this.xl.domains.get(vm);
    if (d) d.suspended = false;
  }
}

const web = validateVmName('web');
const ORIGINAL_UUID = '5a5a5a5a-0000-4000-8000-000000000001';

describe('CloneLifecycle with a fake xl', () => {
  let dir: string;
  let paths: ZynclonePaths;
  let server: XenstoreServer;
  let xs: XsClient;
  let store: StateStore;
  let xl: FakeXl;
  let ackLoop: Promise<void>;
  let closeAck: () => Promise<void>;

  let liveSaver: ((helper: string) => LiveSaver) | undefined;
  const lifecycle = (fail?: string) =>
    new CloneLifecycle({
      ...(liveSaver === undefined ? {} : { liveSaver }),
      paths,
      store,
      xl: xl as unknown as XlDriver,
      xs: async () => xs,
      requestedBy: 'user:test',
      crash: { fail },
      manageBridge: false,
      replicationProbe: () => undefined,
      undoRetryDelaysMs: [1, 1],
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zc-lifecycle-'));
    paths = zynclonePaths(join(dir, 'root'));
    const etc = paths.resolve('/etc/xen');
    mkdirSync(join(etc, 'clone'), { recursive: true });
    const disk = join(dir, 'web.img');
    writeFileSync(disk, Buffer.alloc(1024 * 1024, 7));
    writeFileSync(
      join(etc, 'web.cfg'),
      `name = "web"\nuuid = "${ORIGINAL_UUID}"\ntype = "pv"\nkernel = "/boot/vmlinuz"\nmemory = 64\n` +
        `disk = [ 'format=raw,vdev=xvda,access=rw,target=${disk}' ]\n` +
        `vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]\n`,
    );
    writeFileSync(
      paths.baseConfigFile,
      JSON.stringify({ storage_backend: 'copy', lockdown_ack_timeout_ms: 3000 }),
    );
    server = await XenstoreServer.start({ socketPath: join(dir, 'xs.sock') });
    xs = await XsClient.connect({ path: join(dir, 'xs.sock'), transport: 'socket' });
    // Stand-in for the net monitor: acknowledges every generation it sees.
    const acker = await XsClient.connect({ path: join(dir, 'xs.sock'), transport: 'socket' });
    const watch = await acker.watch('/tool/zynclone/vm');
    ackLoop = (async () => {
      for await (const _ of watch) {
        for (const vm of await acker.directory('/tool/zynclone/vm').catch(() => [] as string[])) {
          const g = await acker.tryRead(`/tool/zynclone/vm/${vm}/generation`);
          if (g !== undefined) await acker.write(`/tool/zynclone/net/ack/${vm}`, g);
        }
      }
    })().catch(() => {});
    closeAck = async () => {
      await watch.close();
      await acker.close();
    };
    store = openStateStore({ paths });
  });

  afterEach(() => {
    xl.domains.clear();
    liveSaver = undefined;
    rmSync(helperPath(), { force: true });
  });

  /** Where the default live_save_helper is under the test's root. */
  const helperPath = () => paths.resolve('/usr/lib/zynclone/zynclone-livesave');

  /** Installs a helper file (never run: `liveSaver` stands in for it). */
  function installLiveSaver(fail: { before?: boolean; release?: boolean } = {}): void {
    mkdirSync(join(helperPath(), '..'), { recursive: true });
    writeFileSync(helperPath(), '#!/bin/sh\nexit 99\n', { mode: 0o755 });
    liveSaver = () => new FakeLiveSaver(xl, fail);
  }

  afterAll(async () => {
    store?.close();
    await closeAck?.();
    await ackLoop;
    await xs?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Everything a clone of web may leave behind; empty when nothing is. */
  async function leftovers(): Promise<string[]> {
    const left: string[] = [];
    for (const [name, d] of xl.domains) {
      if (name !== 'web') left.push(`domain ${name}`);
      else if (d.paused) left.push('web left paused');
      else if (d.suspended) left.push('web left suspended');
    }
    for (const sub of ['clones', 'volumes', 'save']) {
      const d = join(paths.stateDir, sub);
      if (existsSync(d)) for (const f of readdirSync(d)) left.push(`file ${sub}/${f}`);
    }
    if ((await xs.tryRead('/tool/zynclone/vm/web/state')) !== undefined) left.push('vm/web');
    if (store.getClone('web') !== undefined) left.push('clone record');
    if (store.runningOperation('web') !== undefined) left.push('running operation');
    return left;
  }

  function bootOriginal(): void {
    xl.domains.set('web', {
      domid: 100,
      uuid: ORIGINAL_UUID,
      paused: false,
      nics: [{ devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }],
    });
  }

  it.each(['offline', 'memory'] as const)('journals exactly the %s create steps', async (kind) => {
    xl = new FakeXl();
    if (kind === 'memory') bootOriginal();
    const r = await lifecycle().create(web, { kind });
    expect(r.clone.state).toBe('running');
    const [op] = store.listOperations({ vm: 'web', limit: 1 });
    expect(op!.steps.map((s) => s.name)).toEqual([...CREATE_STEPS[kind]]);
    expect(xl.domains.get('web-clone')?.paused).toBe(false);
    expect(xl.domains.get('web')?.paused ?? false).toBe(false);
    expect(await xs.read('/tool/zynclone/vm/web/clone-vif/0/masked')).toBe('1');
    await lifecycle().remove(web);
    expect(await leftovers()).toEqual([]);
  });

  it('journals exactly the stop, deactivate, activate and remove steps', async () => {
    xl = new FakeXl();
    await lifecycle().create(web, { kind: 'offline' });
    /** The steps of the last operation, `remove-snapshot:<vdev>` by its name alone. */
    const journaled = () =>
      store.listOperations({ vm: 'web', limit: 1 })[0]!.steps.map((s) => s.name.split(':')[0]);
    await lifecycle().stop(web);
    expect(journaled()).toEqual([...STOP_STEPS]);
    await lifecycle().deactivate(web);
    expect(journaled()).toEqual([...DEACTIVATE_STEPS]);
    await lifecycle().activate(web);
    expect(journaled()).toEqual([...ACTIVATE_STEPS]);
    expect(store.getClone('web')?.state).toBe('active');
    await lifecycle().remove(web);
    expect(journaled()).toEqual([...REMOVE_STEPS]);
    expect(await leftovers()).toEqual([]);
  });

  it('a memory clone copies memory live when the helper is installed', async () => {
    xl = new FakeXl();
    bootOriginal();
    installLiveSaver();
    const r = await lifecycle().create(web, { kind: 'memory' });
    expect(r.memoryCopy).toEqual({
      method: 'live',
      fallback: null,
      copyMs: 40,
      rounds: 3,
      finalRoundPages: 20,
    });
    expect(r.originalPauseMs).toBe(7);
    const [op] = store.listOperations({ vm: 'web', limit: 1 });
    expect(op!.steps.map((s) => s.name)).toEqual([...CREATE_STEPS['memory-live']]);
    expect(xl.domains.get('web-clone')?.paused).toBe(false);
    expect(xl.domains.get('web')).toMatchObject({ paused: false, suspended: false });
    await lifecycle().remove(web);
    expect(await leftovers()).toEqual([]);
  });

  it.each([
    ['the helper is not installed', () => {}, 'zynclone-livesave is not installed'],
    [
      'the helper cannot save this VM live',
      () => installLiveSaver({ before: true }),
      'cannot be saved live [NO_LOG_DIRTY]',
    ],
    [
      'memory_clone_live is false',
      () => {
        installLiveSaver();
        mkdirSync(paths.overrideDir, { recursive: true });
        writeFileSync(paths.overrideFile(web), JSON.stringify({ memory_clone_live: false }));
      },
      'memory_clone_live is false',
    ],
  ])('falls back to xl save -p and says why when %s', async (_why, setUp, reason) => {
    xl = new FakeXl();
    bootOriginal();
    setUp();
    const events: string[] = [];
    const r = await new CloneLifecycle({
      paths,
      store,
      xl: xl as unknown as XlDriver,
      xs: async () => xs,
      requestedBy: 'user:test',
      manageBridge: false,
      replicationProbe: () => undefined,
      ...(liveSaver === undefined ? {} : { liveSaver }),
      progress: (e) => events.push(e.message),
    }).create(web, { kind: 'memory' });
    rmSync(paths.overrideFile(web), { force: true });
    expect(r.memoryCopy?.method).toBe('save-pause');
    expect(r.memoryCopy?.fallback).toContain(reason);
    expect(events.some((m) => m.includes('using xl save -p') && m.includes(reason))).toBe(true);
    const [op] = store.listOperations({ vm: 'web', limit: 1 });
    const steps = op!.steps.filter((s) => s.status !== 'undone').map((s) => s.name);
    expect(steps).toEqual([...CREATE_STEPS.memory]);
    await lifecycle().remove(web);
    expect(await leftovers()).toEqual([]);
  });

  it('refuses a memory clone of an original that shut down and was kept (a triple fault, on_reboot preserve)', async () => {
    xl = new FakeXl();
    bootOriginal();
    installLiveSaver();
    xl.domains.get('web')!.shutDown = 'r';
    await expect(lifecycle().create(web, { kind: 'memory' })).rejects.toMatchObject({
      code: 'CLONE_REFUSED',
      message:
        'a memory clone needs web running, but its domain 100 is shut down (for reboot) and not destroyed; destroy or restart it first',
    });
    expect([...xl.domains.keys()]).toEqual(['web']);
    expect(await leftovers()).toEqual([]);
  });

  it('a helper that fails after suspending the original is rolled back, the original resumed', async () => {
    xl = new FakeXl();
    bootOriginal();
    installLiveSaver({ release: true });
    await expect(lifecycle().create(web, { kind: 'memory' })).rejects.toThrow('resume failed');
    expect(xl.domains.get('web')?.suspended).toBe(false);
    expect(await leftovers()).toEqual([]);
  });

  const table = (['offline', 'memory', 'memory-live'] as const).flatMap((kind) =>
    CREATE_STEPS[kind].map((step) => [kind, step] as const),
  );
  it.each(table)(
    'a %s create failing at %s is rolled back, leaving nothing',
    async (kind, step) => {
      xl = new FakeXl();
      if (kind !== 'offline') bootOriginal();
      if (kind === 'memory-live') installLiveSaver();
      const cloneKind = kind === 'memory-live' ? 'memory' : kind;
      await expect(lifecycle(step).create(web, { kind: cloneKind })).rejects.toThrow(
        `injected failure at step ${step}`,
      );
      const [op] = store.listOperations({ vm: 'web', limit: 1 });
      expect(op).toMatchObject({ kind: 'create', status: 'rolled-back' });
      expect(await leftovers()).toEqual([]);
    },
  );

  it.each(START_STEPS.map((s) => [s]))(
    'a start failing at %s is rolled back to active',
    async (step) => {
      xl = new FakeXl();
      await lifecycle().create(web, { kind: 'offline', start: false });
      await expect(lifecycle(step).start(web)).rejects.toThrow(`injected failure at step ${step}`);
      expect(store.getClone('web')?.state).toBe('active');
      expect(xl.domains.has('web-clone')).toBe(false);
      expect(await xs.read('/tool/zynclone/vm/web/state')).toBe('active');
      expect(store.listOperations({ vm: 'web', limit: 1 })[0]?.steps.map((s) => s.name)).toEqual(
        START_STEPS.slice(0, START_STEPS.indexOf(step) + 1),
      );
      await lifecycle().remove(web);
      expect(await leftovers()).toEqual([]);
    },
  );

  describe('a create whose xl create made the domain and then timed out', () => {
    it.each(['offline', 'memory'] as const)(
      '%s: is rolled back, the half-made domain (absent from xl list -l) destroyed',
      async (kind) => {
        xl = new FakeXl();
        if (kind === 'memory') bootOriginal();
        xl.createTimesOut = true;
        await expect(lifecycle().create(web, { kind })).rejects.toMatchObject({
          code: 'XL_TIMEOUT',
        });
        expect(store.listOperations({ vm: 'web', limit: 1 })[0]?.status).toBe('rolled-back');
        expect(await leftovers()).toEqual([]);
      },
    );

    it('an undo that fails once is tried again and the rollback completes', async () => {
      xl = new FakeXl();
      xl.createTimesOut = true;
      xl.destroyFailures = 1;
      await expect(lifecycle().create(web, { kind: 'offline' })).rejects.toMatchObject({
        code: 'XL_TIMEOUT',
      });
      expect(await leftovers()).toEqual([]);
    });

    it('an undo that keeps failing leaves the operation to recovery, which completes it', async () => {
      xl = new FakeXl();
      xl.createTimesOut = true;
      xl.destroyFailures = 3; // every attempt of this rollback
      const err = await lifecycle()
        .create(web, { kind: 'offline' })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'CLONE_ROLLBACK_PENDING' });
      expect((err as Error).message).toMatch(
        /xl create .* did not finish.*undoing it failed too: xl destroy .* failed.*finishes the rollback/,
      );
      // Pending, the VM busy, no longer held by this process: any recovery adopts it.
      const [pending] = store.staleOperations();
      expect(pending).toMatchObject({ vm: 'web', kind: 'create', status: 'running' });
      expect(pending!.owner.pid).toBe(0);
      expect(xl.domains.has('web-clone')).toBe(true);
      await expect(lifecycle().create(web, { kind: 'offline' })).rejects.toMatchObject({
        code: 'VM_BUSY',
      });
      // The same process (a daemon) recovers it on its next request.
      xl.createTimesOut = false;
      const reports = await lifecycle().recover();
      expect(reports).toEqual([
        { opId: pending!.id, vm: 'web', kind: 'create', outcome: 'rolled-back' },
      ]);
      const undoable = store.getOperation(pending!.id)!.steps.filter((s) => s.undo !== null);
      expect(undoable.map((s) => s.status)).toEqual(undoable.map(() => 'undone'));
      expect(await leftovers()).toEqual([]);
    });

    it('a recovery that fails too leaves the operation for the next one', async () => {
      xl = new FakeXl();
      xl.createTimesOut = true;
      xl.destroyFailures = 6; // this rollback's three attempts and the first recovery's
      await expect(lifecycle().create(web, { kind: 'offline' })).rejects.toMatchObject({
        code: 'CLONE_ROLLBACK_PENDING',
      });
      const [first] = await lifecycle().recover();
      expect(first).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/destroy/) });
      expect(store.staleOperations().map((o) => o.id)).toEqual([first!.opId]);
      expect(await lifecycle().recover(new Set([first!.opId]))).toEqual([]);
      const [second] = await lifecycle().recover();
      expect(second).toMatchObject({ opId: first!.opId, outcome: 'rolled-back' });
      expect(await leftovers()).toEqual([]);
    });
  });
});
