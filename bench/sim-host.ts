// What the benches that run on a simulated host share: running a program,
// the environment under which vmclone and xl reach the simulator, the demo
// host, and a stand-in for the net monitor's ack where a bench runs without
// network (the lockdown wait is not what these benches measure).
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VM_ROOT, ackNode, vmLeaf } from '../src/core/xenstore/index.js';
import { XsClient } from '../src/xenstore/index.js';

const zynclone = resolve(dirname(fileURLToPath(import.meta.url)), '../src/bin/zynclone.js');

/** Runs a program to its end; its stdout, or an error with its stderr. */
export function sh(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  return new Promise((res, rej) =>
    execFile(cmd, args, { env, maxBuffer: 64 << 20 }, (err, out, errOut) =>
      err ? rej(new Error(`${cmd} ${args.join(' ')}: ${errOut || err.message}`)) : res(out),
    ),
  );
}

/** The environment in which vmclone, zynclone and xl work on the simulator at `root`. */
export function simEnv(root: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${join(root, 'bin')}:${process.env.PATH ?? ''}`,
    XENSTORED_PATH: join(root, 'run/xenstored/socket'),
    ZYNCLONE_ROOT: root,
  };
}

/** The demo host (its VMs running, plain storage) without network or monitors. */
export async function simDemo(root: string, env: NodeJS.ProcessEnv): Promise<void> {
  await sh(
    process.execPath,
    [
      zynclone,
      'sim',
      'demo',
      '--no-network',
      '--no-monitors',
      '--storage',
      'plain',
      '--root',
      root,
    ],
    env,
  );
}

/** Acks every VM's lockdown generation as soon as it is written; returns how to stop. */
export async function ackEveryGeneration(socket: string): Promise<() => Promise<void>> {
  const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
  const watch = await xs.watch(VM_ROOT);
  const acking = (async () => {
    for await (const _ of watch) {
      for (const vm of await xs.directory(VM_ROOT).catch(() => [] as string[])) {
        const g = await xs.tryRead(vmLeaf(vm, 'generation'));
        if (g !== undefined) await xs.write(ackNode(vm), g);
      }
    }
  })().catch(() => {});
  return async () => {
    await watch.close();
    await xs.close();
    await acking;
  };
}
