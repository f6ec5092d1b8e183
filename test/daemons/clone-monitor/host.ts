// A simulated Xen host (the real simulator daemon, its xenstored and its xl)
// with an original VM `web` and a running clone `web-clone` made the way the
// lifecycle leaves them: a state store row, the clone's xl config and its
// metadata next to it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ZynclonePaths, zynclonePaths } from '../../../src/core/paths.js';
import { type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { XlDriver } from '../../../src/xen/index.js';
import { XsClient } from '../../../src/xenstore/index.js';
import { bundleSim } from '../../sim/helpers.js';

export const isRoot = process.getuid?.() === 0;

export interface RunOut {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunOut> {
  return new Promise((r) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        r({ code, stdout, stderr });
      },
    );
  });
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (${String(last)})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const CLONE_UUID = '1234abcd-0000-4000-8000-000000000001';
export const CLONE_VIFS = ['zcv1234abcd.0', 'zcv1234abcd.1'];

export class SimHost {
  readonly root: string;
  readonly paths: ZynclonePaths;
  readonly store: StateStore;
  readonly xl: XlDriver;
  network = false;

  private constructor(
    readonly work: string,
    readonly entry: string,
  ) {
    this.root = join(work, 'root');
    this.paths = zynclonePaths(this.root);
    this.store = openStateStore({ paths: this.paths });
    this.xl = new XlDriver({ xlPath: join(this.root, 'bin/xl'), timeoutMs: 30_000 });
  }

  get socket(): string {
    return join(this.root, 'run/xenstored/socket');
  }

  get env(): NodeJS.ProcessEnv {
    return { ZYNCLONE_SIM_ENTRY: this.entry, XENSTORED_PATH: this.socket };
  }

  get netdd(): string {
    const h = createHash('sha256').update(realpathSync(this.root)).digest('hex').slice(0, 6);
    return `zc${h}-netdd`;
  }

  guestSocket(domid: number): string {
    return join(this.root, 'run/xenstored/domains', `dom${domid}.sock`);
  }

  static async create(prefix: string): Promise<SimHost> {
    const work = mkdtempSync(join(tmpdir(), prefix));
    let host: SimHost | undefined;
    try {
      const entry = await bundleSim(work);
      mkdirSync(join(work, 'root'), { recursive: true });
      host = new SimHost(work, entry);
      const up = await host.sim('up', ...(isRoot ? [] : ['--no-network']));
      if (up.code !== 0) throw new Error(`sim up failed: ${up.stderr}${up.stdout}`);
      host.network = isRoot && !/network disabled/.test(up.stdout + up.stderr);
      return host;
    } catch (err) {
      if (host) await host.dispose();
      else rmSync(work, { recursive: true, force: true });
      throw err;
    }
  }

  sim(...args: string[]): Promise<RunOut> {
    return exec(process.execPath, [this.entry, 'sim', ...args, '--root', this.root], this.env);
  }

  xs(): Promise<XsClient> {
    return XsClient.connect({ path: this.socket, transport: 'socket' });
  }

  async domid(name: string): Promise<number | undefined> {
    const list = await this.xl.list();
    const d = list.find((e) => e.name === name);
    return d === undefined ? undefined : Number(d.domid);
  }

  /** Writes web's config, starts it, and makes the clone as the lifecycle would. */
  async makeCloneOfWeb(): Promise<void> {
    const etc = join(this.root, 'etc/xen');
    mkdirSync(etc, { recursive: true });
    const originalCfg = join(etc, 'web.cfg');
    writeFileSync(
      originalCfg,
      `name = "web"
type = "pv"
kernel = "/boot/vmlinuz"
memory = 32
vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', 'mac=00:16:3e:00:00:02,bridge=xenbr1' ]
sim_ip = [ "10.91.0.10/24", "10.92.0.10/24" ]
`,
    );
    const clones = join(this.paths.stateDir, 'clones');
    mkdirSync(clones, { recursive: true });
    const cloneCfg = join(clones, 'web-clone.cfg');
    writeFileSync(
      cloneCfg,
      `name = "web-clone"
uuid = "${CLONE_UUID}"
type = "pv"
kernel = "/boot/vmlinuz"
memory = 32
vif = [ 'mac=00:16:3e:00:00:01,bridge=zc-isolated,vifname=${CLONE_VIFS[0]},devid=0',
        'mac=00:16:3e:00:00:02,bridge=zc-isolated,vifname=${CLONE_VIFS[1]},devid=1' ]
sim_ip = [ "10.91.0.10/24", "10.92.0.10/24" ]
`,
    );
    writeFileSync(
      join(clones, 'web-clone.json'),
      JSON.stringify({
        version: 2,
        vm: 'web',
        cloneName: 'web-clone',
        cloneUuid: CLONE_UUID,
        kind: 'online',
        originalConfigFile: originalCfg,
        cloneVifs: CLONE_VIFS.map((name, devid) => ({
          devid,
          name,
          productionSpec: `mac=00:16:3e:00:00:0${devid + 1},bridge=xenbr${devid},vifname=${name},devid=${devid}`,
        })),
        originalVifs: [0, 1].map((devid) => ({ devid, vifname: null })),
        consoleType: 'none',
      }),
    );
    for (const cfg of [originalCfg, cloneCfg]) {
      const r = await exec(join(this.root, 'bin/xl'), ['create', cfg]);
      if (r.code !== 0) throw new Error(`xl create ${cfg}: ${r.stderr}`);
    }
    this.store.putClone({
      vm: 'web',
      cloneName: 'web-clone',
      cloneUuid: CLONE_UUID,
      cloneDomid: (await this.domid('web-clone')) ?? null,
      state: 'running',
      kind: 'online',
      sourceUuid: '1234abcd-0000-4000-8000-0000000000aa',
      requestedBy: 'user:test',
    });
  }

  /** The bridge each of the domain's vifs is on, by devid, as `xl list -l` says. */
  async bridges(name: string): Promise<Record<number, string | undefined>> {
    const [d] = await this.xl.listLong(name);
    const out: Record<number, string | undefined> = {};
    (d?.nics ?? []).forEach((n, i) => {
      out[n.devid ?? i] = n.bridge;
    });
    return out;
  }

  /** Members of `bridge` in the simulator's network domain namespace. */
  async bridgeMembers(bridge: string): Promise<string[]> {
    const r = await exec('ip', ['-n', this.netdd, '-j', 'link', 'show', 'master', bridge]);
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout || '[]') as { ifname: string }[]).map((l) => l.ifname).sort();
  }

  async dispose(): Promise<void> {
    this.store.close();
    await this.sim('down').catch(() => {});
    rmSync(this.work, { recursive: true, force: true });
  }
}
