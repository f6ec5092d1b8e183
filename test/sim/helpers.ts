// Runs the simulator the way a user does: its processes (daemon, xl) are the
// real entry point, bundled once per test file so no build step is needed.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
    target: 'node20',
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
