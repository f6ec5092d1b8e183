/**
 * An end-to-end check of the LVM backends against real LVM, for hosts that have
 * device-mapper (the real-Xen lane): builds a throwaway volume group on a loop
 * device, snapshots a thin and a linear volume through planSnapshot/execute,
 * checks contents and isolation, removes twice, and tears everything down.
 * Needs root, lvm2 and losetup. Never touches existing volume groups.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommandRunner, firstLines, runCommand } from './command.js';
import { execute, planSnapshot, remove } from './plan.js';
import type { BackendName } from './types.js';

export interface LvmSelfTestOptions {
  /** Where the loop device's backing file goes; default a new temp dir. */
  readonly workDir?: string;
  readonly run?: CommandRunner;
  readonly log?: (line: string) => void;
}

export interface LvmSelfTestStep {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly detail?: string;
}

export interface LvmSelfTestReport {
  readonly ok: boolean;
  readonly steps: LvmSelfTestStep[];
  /** The first failure, if any. */
  readonly error?: string;
}

const MiB = 1024 * 1024;

export async function lvmSnapshotSelfTest(
  options: LvmSelfTestOptions = {},
): Promise<LvmSelfTestReport> {
  const run = options.run ?? runCommand;
  const log = options.log ?? (() => {});
  const steps: LvmSelfTestStep[] = [];
  const vg = `zcselftest${randomBytes(3).toString('hex')}`;
  const dir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'zynclone-lvm-')));
  const ownDir = options.workDir === undefined;
  const img = join(dir, `${vg}.img`);
  let loop: string | undefined;
  let vgMade = false;
  let error: string | undefined;

  const step = async (name: string, fn: () => Promise<string | undefined>) => {
    const t = performance.now();
    try {
      const detail = await fn();
      steps.push({ name, ok: true, ms: performance.now() - t, ...(detail ? { detail } : {}) });
      log(`ok   ${name}${detail ? `: ${detail}` : ''}`);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      steps.push({ name, ok: false, ms: performance.now() - t, detail });
      log(`FAIL ${name}: ${detail}`);
      throw err;
    }
  };
  const must = async (argv: string[]): Promise<string> => {
    const res = await run(argv);
    if (res.code !== 0) {
      throw new Error(`${argv.join(' ')}: exit ${res.code}: ${firstLines(res.stderr)}`);
    }
    return res.stdout.trim();
  };

  try {
    await step('loop device', async () => {
      const fh = await open(img, 'w');
      await fh.truncate(256 * MiB);
      await fh.close();
      loop = await must(['losetup', '--find', '--show', img]);
      return loop;
    });
    await step('volume group', async () => {
      await must(['pvcreate', '--yes', loop!]);
      await must(['vgcreate', '--yes', vg, loop!]);
      vgMade = true;
      await must([
        'lvcreate',
        '--yes',
        '--type',
        'thin-pool',
        '--size',
        '96m',
        '--name',
        'pool',
        vg,
      ]);
      await must([
        'lvcreate',
        '--yes',
        '--type',
        'thin',
        '--virtualsize',
        '32m',
        '--name',
        'thin',
        '--thinpool',
        'pool',
        vg,
      ]);
      await must(['lvcreate', '--yes', '--size', '32m', '--name', 'linear', vg]);
      return vg;
    });
    for (const [lv, expected] of [
      ['thin', 'lvm-thin'],
      ['linear', 'lvm-classic'],
    ] as const) {
      await checkOne(lv, expected);
    }
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  } finally {
    if (vgMade) await run(['vgremove', '--force', '--yes', vg]).catch(() => {});
    if (loop !== undefined) {
      await run(['pvremove', '--force', '--yes', loop]).catch(() => {});
      await run(['losetup', '--detach', loop]).catch(() => {});
    }
    await rm(img, { force: true });
    if (ownDir) await rm(dir, { recursive: true, force: true });
  }
  return { ok: error === undefined, steps, ...(error === undefined ? {} : { error }) };

  async function checkOne(lv: string, expected: BackendName): Promise<void> {
    const device = `/dev/${vg}/${lv}`;
    const data = randomBytes(MiB);
    await step(`${lv}: write original`, async () => {
      await waitFor(device);
      await writeAt(device, data, 4 * MiB);
      return undefined;
    });
    const disk = { target: device, format: 'raw', vdev: 'xvda', kind: 'phy' } as const;
    const plan = await planSnapshot(disk, {
      kind: 'online-disk',
      originalState: 'running',
      cloneName: `st-${lv}`,
      lvmSnapshotSize: '8m',
      run,
    });
    await step(`${lv}: plan picks ${expected}`, async () => {
      if (plan.backend !== expected) throw new Error(`planned ${plan.backend}, wanted ${expected}`);
      return plan.reason;
    });
    const record = await execute(plan, { run });
    await step(`${lv}: snapshot`, async () => `${record.dest} in ${record.tookMs.toFixed(1)} ms`);
    await step(`${lv}: snapshot has the original's data`, async () => {
      await waitFor(record.dest);
      const got = await readAt(record.dest, MiB, 4 * MiB);
      if (!got.equals(data)) throw new Error(`${record.dest} differs from ${device}`);
      return undefined;
    });
    await step(`${lv}: writes to the snapshot leave the original alone`, async () => {
      await writeAt(record.dest, randomBytes(MiB), 4 * MiB);
      const orig = await readAt(device, MiB, 4 * MiB);
      if (!orig.equals(data)) throw new Error(`writing ${record.dest} changed ${device}`);
      return undefined;
    });
    await step(`${lv}: remove, twice`, async () => {
      const first = await remove(record, { run });
      const second = await remove(record, { run });
      if (!first || second) throw new Error(`remove answered ${first} then ${second}`);
      return undefined;
    });
  }
}

async function waitFor(path: string): Promise<void> {
  // Device nodes appear through udev, a moment after lvcreate returns.
  for (let i = 0; i < 100; i++) {
    try {
      await access(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${path} did not appear`);
}

async function writeAt(device: string, data: Buffer, at: number): Promise<void> {
  const fh = await open(device, 'r+');
  try {
    await fh.write(data, 0, data.length, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readAt(device: string, length: number, at: number): Promise<Buffer> {
  const fh = await open(device, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, at);
    return buf;
  } finally {
    await fh.close();
  }
}
