// Runs the simulator the way a user does: its processes (daemon, xl) are the
// real entry point, bundled once per test file so no build step is needed.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

export interface RunOut {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<RunOut> {
  return new Promise((r) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, ...env }, cwd, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        r({ code, stdout, stderr });
      },
    );
  });
}

export async function bundleSim(dir: string): Promise<string> {
  const outfile = join(dir, 'sim.mjs');
  await build({
    entryPoints: [resolve(__dirname, '../../src/sim/bin.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

export class SimFixture {
  readonly root: string;
  constructor(
    readonly work: string,
    readonly entry: string,
  ) {
    this.root = join(work, 'root');
  }

  static async create(prefix: string): Promise<SimFixture> {
    const work = mkdtempSync(join(tmpdir(), prefix));
    try {
      return new SimFixture(work, await bundleSim(work));
    } catch (err) {
      rmSync(work, { recursive: true, force: true });
      throw err;
    }
  }

  get env(): NodeJS.ProcessEnv {
    return { ZYNCLONE_SIM_ENTRY: this.entry };
  }

  sim(...args: string[]): Promise<RunOut> {
    return exec(process.execPath, [this.entry, 'sim', ...args, '--root', this.root], this.env);
  }

  xl(...args: string[]): Promise<RunOut> {
    return exec(join(this.root, 'bin', 'xl'), args, {}, this.root);
  }

  async dispose(): Promise<void> {
    await this.sim('down');
    rmSync(this.work, { recursive: true, force: true });
  }
}

export const isRoot = process.getuid?.() === 0;

/** Loop-mounted filesystems need root, a loop driver and xfsprogs. */
export const canMountLoop =
  isRoot &&
  existsSync('/dev/loop-control') &&
  ['/usr/sbin', '/sbin', '/usr/bin'].some((d) => existsSync(join(d, 'mkfs.xfs')));

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) =>
    String.fromCharCode(Number.parseInt(o, 8)),
  );
}

/** Mount points at or below `dir`, from /proc/self/mountinfo. */
export function mountsBelow(dir: string): string[] {
  const real = realpathSync(dir);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((f): f is string => f !== undefined)
    .map(unescapeMountinfo)
    .filter((m) => m === real || m.startsWith(`${real}/`));
}

/** Loop devices whose backing file lies below `dir` (also a deleted one), from sysfs. */
export function loopsBackedUnder(dir: string): string[] {
  const real = realpathSync(dir);
  const found: string[] = [];
  for (const dev of readdirSync('/sys/block')) {
    if (!dev.startsWith('loop')) continue;
    let backing: string;
    try {
      backing = readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not attached
    }
    if (backing.startsWith(`${real}/`)) found.push(`/dev/${dev}: ${backing}`);
  }
  return found;
}
