// `zynclone sim up|down|env|demo|daemon --root DIR`.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';
import { controlRequest } from './control.js';
import { SimDaemon } from './host/daemon.js';
import { Journal, undoJournal } from './journal.js';
import { type SimPaths, simPaths } from './paths.js';
import { shq, sleep } from './proc.js';
import { type StorageKind, describeStorage, ensureStorage } from './storage.js';
import { xlLauncher } from './xl/launcher.js';

const USAGE = `usage: zynclone sim <command> --root DIR
  up [--no-network] [--storage plain|xfs]
                      start the simulator in the background; returns when it is ready.
                      --storage xfs makes DIR/var an XFS with reflink on a loop device
                      (as root; default plain: an ordinary directory)
  down                stop it and remove everything it made (also after a crash)
  env                 print shell exports: eval "$(zynclone sim env --root DIR)"
  demo [--no-network] start the simulator if needed (storage xfs) and create the demo VMs:
                      configs in DIR/etc/xen, disks in DIR/var/lib/xen/images
  daemon              run the simulator in the foreground
  guest DOMAIN mount|umount VDEV | write VDEV TEXT | read VDEV BYTES
                      act inside a simulated guest: a mounted disk is in use (its
                      frontend refuses a block-detach); write/read the disk's first bytes
`;

/** The script node runs for the daemon and for DIR/bin/xl. */
export function simEntry(): string {
  return process.env.ZYNCLONE_SIM_ENTRY ?? fileURLToPath(new URL('./bin.js', import.meta.url));
}

interface Args {
  cmd?: string;
  /** Arguments after the command (for `guest`). */
  positional: string[];
  root?: string;
  storage?: string;
  flags: Set<string>;
}

function parseArgs(argv: string[]): Args {
  const flags = new Set<string>();
  let root: string | undefined;
  let storage: string | undefined;
  let cmd: string | undefined;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--root') root = argv[++i];
    else if (a.startsWith('--root=')) root = a.slice(7);
    else if (a === '--storage') storage = argv[++i] ?? '';
    else if (a.startsWith('--storage=')) storage = a.slice(10);
    else if (a.startsWith('--')) flags.add(a.slice(2));
    else if (cmd === undefined) cmd = a;
    else positional.push(a);
  }
  return { cmd, positional, root: root ?? process.env.ZYNCLONE_ROOT, storage, flags };
}

async function storage(paths: SimPaths, kind: StorageKind): Promise<void> {
  const r = await ensureStorage(paths, new Journal(paths.journal), kind);
  process.stdout.write(`${describeStorage(paths, r)}\n`);
}

async function ping(paths: SimPaths) {
  try {
    const r = await controlRequest(paths.control, { op: 'ping' }, undefined, 3000);
    return 'ok' in r ? r : undefined;
  } catch {
    return undefined;
  }
}

function daemonMatch(paths: SimPaths): string {
  return `sim daemon --root ${paths.root} `;
}

async function up(paths: SimPaths, noNetwork: boolean, kind: StorageKind): Promise<number> {
  const running = await ping(paths);
  if (running) {
    process.stdout.write(`simulator already running (pid ${running.pid}) at ${paths.root}\n`);
    if (kind === 'xfs') await storage(paths, kind);
    return 0;
  }
  mkdirSync(paths.root, { recursive: true });
  const journal = new Journal(paths.journal);
  if (kind === 'xfs') await storage(paths, kind);
  journal.made({ kind: 'dir', path: paths.bin });
  mkdirSync(paths.bin, { recursive: true });
  writeFileSync(paths.xl, xlLauncher(paths, process.execPath, simEntry()));
  chmodSync(paths.xl, 0o755);
  journal.made({ kind: 'file', path: paths.log });
  journal.made({ kind: 'proc', match: daemonMatch(paths) });
  const logFd = openSync(paths.log, 'a');
  const args = [simEntry(), 'sim', 'daemon', '--root', paths.root];
  if (noNetwork) args.push('--no-network');
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: process.env,
  });
  closeSync(logFd);
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  child.unref();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = await ping(paths);
    if (r) {
      process.stdout.write(`simulator running (pid ${r.pid}) at ${paths.root}\n`);
      process.stdout.write(
        r.network
          ? `network: namespaces ${paths.prefix}-*\n`
          : `network: ${r.reason ?? 'disabled'}\n`,
      );
      process.stdout.write(`use it: eval "$(zynclone sim env --root ${paths.root})"\n`);
      return 0;
    }
    if (exited !== undefined) break;
    await sleep(50);
  }
  const log = existsSync(paths.log)
    ? readFileSync(paths.log, 'utf8').split('\n').slice(-15).join('\n')
    : '';
  process.stderr.write(`zynclone sim up: the simulator did not start; its log:\n${log}\n`);
  await undoJournal(paths);
  return 1;
}

async function down(paths: SimPaths): Promise<number> {
  if (await ping(paths)) {
    try {
      await controlRequest(paths.control, { op: 'stop' }, undefined, 60_000);
    } catch {
      // A daemon that does not answer is killed below like a crashed one.
    }
  }
  const removed = await undoJournal(paths);
  rmSync(paths.run, { recursive: true, force: true });
  process.stdout.write(
    `simulator at ${paths.root} is down${removed.length > 0 ? `; removed: ${removed.join(', ')}` : ''}\n`,
  );
  return 0;
}

function env(paths: SimPaths): number {
  process.stdout.write(
    `export PATH=${shq(paths.bin)}:"$PATH"\nexport XENSTORED_PATH=${shq(paths.xsSocket)}\nexport ZYNCLONE_ROOT=${shq(paths.root)}\n`,
  );
  return 0;
}

async function daemon(paths: SimPaths, noNetwork: boolean): Promise<number> {
  mkdirSync(paths.root, { recursive: true });
  const d = await SimDaemon.start(paths, { network: !noNetwork });
  const onSignal = () => {
    void d.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The control server keeps the process alive until `stop`.
  return await new Promise<number>(() => {});
}

async function guest(paths: SimPaths, argv: string[]): Promise<number> {
  const r = await controlRequest(paths.control, { op: 'guest', argv }, (chunk) => {
    if ('out' in chunk) process.stdout.write(chunk.out);
    if ('err' in chunk) process.stderr.write(chunk.err);
  });
  return 'exit' in r ? r.exit : 1;
}

export async function runSim(argv: string[]): Promise<number> {
  const { cmd, positional, root, storage: storageArg, flags } = parseArgs(argv);
  if (!cmd || flags.has('help') || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (!root) {
    process.stderr.write(`zynclone sim ${cmd}: --root DIR is required\n`);
    return 2;
  }
  const paths = simPaths(root);
  const kind = storageArg ?? (cmd === 'demo' ? 'xfs' : 'plain');
  if (kind !== 'plain' && kind !== 'xfs') {
    process.stderr.write(`zynclone sim ${cmd}: --storage must be plain or xfs, not '${kind}'\n`);
    return 2;
  }
  switch (cmd) {
    case 'up':
      return up(paths, flags.has('no-network'), kind);
    case 'down':
      return down(paths);
    case 'env':
      return env(paths);
    case 'daemon':
      return daemon(paths, flags.has('no-network'));
    case 'guest':
      return guest(paths, positional);
    case 'demo': {
      const { runDemo } = await import('./demo/demo.js');
      const rc = await up(paths, flags.has('no-network'), kind);
      return rc === 0 ? runDemo(paths) : rc;
    }
    default:
      process.stderr.write(`zynclone sim: unknown command '${cmd}'\n${USAGE}`);
      return 2;
  }
}
