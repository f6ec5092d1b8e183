// Runs the xl driver contract against the simulator: its daemon in this process
// (no network namespaces), its `xl` as a real executable on a temp PATH.
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { XlDriver } from '../../src/xen/xl-driver.js';
import { XsClient } from '../../src/xenstore/client.js';
import { xlDriverContract } from './xl-driver.contract.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const simAvailable =
  existsSync(join(repo, 'src/sim/xl/bin.ts')) && existsSync(join(repo, 'src/sim/host/daemon.ts'));

interface Sim {
  stop(): Promise<void>;
}

describe.skipIf(!simAvailable)('xl driver contract against the simulator', () => {
  let dir: string;
  let sim: Sim | undefined;
  let xs: XsClient | undefined;
  const env = {
    xl: undefined as unknown as XlDriver,
    workDir: '',
    xs: undefined as XsClient | undefined,
    makeGuestConfig: async (name: string) => {
      const disk = join(dir, 'disks', `${name}.img`);
      await writeFile(disk, Buffer.alloc(0));
      await mkdir(join(dir, 'cfg'), { recursive: true });
      const cfg = join(dir, 'cfg', `${name}.cfg`);
      await writeFile(
        cfg,
        [
          `name = "${name}"`,
          'type = "pv"',
          'memory = 64',
          'vcpus = 1',
          `disk = [ 'format=raw, vdev=xvda, access=rw, target=${disk}' ]`,
          "vif = [ 'bridge=xenbr0' ]",
          '',
        ].join('\n'),
      );
      return cfg;
    },
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zc-xl-contract-'));
    await mkdir(join(dir, 'disks'));
    const { simPaths } = await import('../../src/sim/paths.js');
    const { SimDaemon } = await import('../../src/sim/host/daemon.js');
    const paths = simPaths(join(dir, 'sim'));
    await mkdir(paths.root, { recursive: true });
    sim = await SimDaemon.start(paths, { network: false });
    // The simulator's xl client, bundled so a plain `node` runs it as xl does in dom0.
    const bundle = join(dir, 'xl.mjs');
    await build({
      entryPoints: [join(repo, 'src/sim/xl/bin.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      outfile: bundle,
      logLevel: 'silent',
    });
    const xlPath = join(dir, 'xl');
    await writeFile(
      xlPath,
      `#!/bin/sh\nZYNCLONE_SIM_ROOT='${paths.root}'\nexport ZYNCLONE_SIM_ROOT\nexec '${process.execPath}' '${bundle}' "$@"\n`,
    );
    await chmod(xlPath, 0o755);
    xs = await XsClient.connect({ path: paths.xsSocket, reconnect: false });
    env.xl = new XlDriver({ xlPath, timeoutMs: 20_000 });
    env.workDir = dir;
    env.xs = xs;
  });

  afterAll(async () => {
    await xs?.close();
    await sim?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Cases are listed before beforeAll runs; each reads env lazily.
  for (const c of xlDriverContract(env as Parameters<typeof xlDriverContract>[0])) {
    it(c.name, () => c.run());
  }
});
