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
import { parseArgs as parseNodeArgs } from 'node:util';
import { controlRequest } from './control.js';
import { SimDaemon } from './host/daemon.js';
import { Journal, undoJournal } from './journal.js';
import { startMonitors, stopMonitors, writeProductLaunchers } from './monitors.js';
import { type SimPaths, simPaths } from './paths.js';
import { shq, sleep } from './proc.js';
import { type StorageKind, describeStorage, ensureStorage } from './storage.js';
import { writeLiveSaveLauncher, xlLauncher } from './xl/launcher.js';

const USAGE = `usage: zynclone sim <command> --root DIR
  up [--no-network] [--storage plain|xfs] [--monitors]
                      start the simulator in the background; returns when it is ready.
                      --storage xfs makes DIR/var an XFS with reflink on a loop device
                      (as root; default plain: an ordinary directory).
                      --monitors also starts ZynClone's daemons (net monitor, clone
                      monitor, web dashboard) as systemd would on a Xen host; logs in DIR/log
  down                stop the monitors and the simulator, and remove everything it
                      made (also after a crash)
  env                 print shell exports: eval "$(zynclone sim env --root DIR)"; then
                      xl, vmclone and zynclone on PATH act on this simulator
  demo [--no-network] [--no-monitors]
                      start the simulator if needed (storage xfs) with the monitors, and
                      create the demo VMs: configs in DIR/etc/xen, disks in
                      DIR/var/lib/xen/images
  daemon [--no-network]
                      run the simulator in the foreground
  guest DOMAIN mount|umount VDEV | write VDEV TEXT | read VDEV BYTES
                      act inside a simulated guest: a mounted disk is in use (its
                      frontend refuses a block-detach); write/read the disk's first bytes
DIR defaults to $ZYNCLONE_ROOT.
`;

/** The script node runs for the daemon and for DIR/bin/xl. */
export function simEntry(): string {
  return process.env.ZYNCLONE_SIM_ENTRY ?? fileURLToPath(new URL('./bin.js', import.meta.url));
}

/** The options each command accepts, besides --root and --help. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  guest: [],
  up: ['no-network', 'storage', 'monitors'],
  down: [],
  env: [],
  demo: ['no-network', 'storage', 'no-monitors'],
  daemon: ['no-network'],
};

interface Args {
  cmd: string;
  /** Arguments after the command (for `guest`). */
  positional: string[];
  root?: string;
  storage?: string;
  noNetwork: boolean;
  monitors: boolean;
}

/** Parses argv strictly: an unknown command or option is a usage error. */
function parseArgs(argv: string[]): Args | 'help' {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') return 'help';
  const allowed = COMMAND_OPTIONS[cmd];
  if (allowed === undefined) throw new Error(`unknown command '${cmd}'`);
  const { values, positionals } = parseNodeArgs({
    args: rest,
    options: {
      root: { type: 'string' },
      storage: { type: 'string' },
      'no-network': { type: 'boolean' },
      monitors: { type: 'boolean' },
      'no-monitors': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) return 'help';
  if (cmd !== 'guest' && positionals.length > 0) {
    throw new Error(`unexpected argument '${positionals[0]}'`);
  }
  for (const name of Object.keys(values)) {
    if (name !== 'root' && !allowed.includes(name)) {
      throw new Error(`${cmd} takes no option --${name}`);
    }
  }
  return {
    cmd,
    positional: positionals,
    root: values.root ?? process.env.ZYNCLONE_ROOT,
    storage: values.storage,
    noNetwork: values['no-network'] === true,
    monitors: cmd === 'demo' ? values['no-monitors'] !== true : values.monitors === true,
  };
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

async function up(
  paths: SimPaths,
  opts: { noNetwork: boolean; storage: StorageKind; monitors: boolean },
): Promise<number> {
  const rc = await startSimulator(paths, opts.noNetwork, opts.storage);
  if (rc !== 0 || !opts.monitors) return rc;
  const running = await ping(paths);
  if (!running?.network) {
    process.stderr.write(
      `zynclone sim: ZynClone's monitors cannot start: the simulator has no network (${running?.reason ?? 'it does not answer'}), and the net monitor runs in its network domain. The simulator keeps running; stop it with: zynclone sim down --root ${paths.root}\n`,
    );
    return 1;
  }
  try {
    await startMonitors(paths, (line) => process.stdout.write(`${line}\n`));
  } catch (err) {
    process.stderr.write(`zynclone sim: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}

async function startSimulator(
  paths: SimPaths,
  noNetwork: boolean,
  kind: StorageKind,
): Promise<number> {
  const running = await ping(paths);
  if (running) {
    process.stdout.write(`simulator already running (pid ${running.pid}) at ${paths.root}\n`);
    if (kind === 'xfs') await storage(paths, kind);
    writeProductLaunchers(paths, new Journal(paths.journal));
    return 0;
  }
  mkdirSync(paths.root, { recursive: true });
  const journal = new Journal(paths.journal);
  if (kind === 'xfs') await storage(paths, kind);
  journal.made({ kind: 'dir', path: paths.bin });
  mkdirSync(paths.bin, { recursive: true });
  writeFileSync(paths.xl, xlLauncher(paths, process.execPath, simEntry()));
  chmodSync(paths.xl, 0o755);
  writeLiveSaveLauncher(paths, journal);
  writeProductLaunchers(paths, journal);
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
  // The monitors first, as systemd stops them before xenstored on a Xen host.
  const monitors = await stopMonitors(paths);
  if (monitors.length > 0) process.stdout.write(`stopped ${monitors.join(', ')}\n`);
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
  let args: Args | 'help';
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`zynclone sim: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const { cmd, root } = args;
  if (!root) {
    process.stderr.write(`zynclone sim ${cmd}: --root DIR is required\n${USAGE}`);
    return 2;
  }
  const paths = simPaths(root);
  const kind = args.storage ?? (cmd === 'demo' ? 'xfs' : 'plain');
  if (kind !== 'plain' && kind !== 'xfs') {
    process.stderr.write(
      `zynclone sim ${cmd}: --storage must be plain or xfs, not '${kind}'\n${USAGE}`,
    );
    return 2;
  }
  if (args.monitors && args.noNetwork) {
    const drop = cmd === 'demo' ? 'add --no-monitors' : 'leave out --monitors';
    process.stderr.write(
      `zynclone sim ${cmd}: ZynClone's monitors need the simulator's network (the net monitor runs in its network domain); with --no-network, ${drop}\n${USAGE}`,
    );
    return 2;
  }
  switch (cmd) {
    case 'up':
      return up(paths, { ...args, storage: kind });
    case 'down':
      return down(paths);
    case 'env':
      return env(paths);
    case 'daemon':
      return daemon(paths, args.noNetwork);
    case 'guest':
      return guest(paths, args.positional);
    default: {
      // demo
      const { runDemo } = await import('./demo/demo.js');
      const rc = await up(paths, { ...args, storage: kind });
      return rc === 0 ? runDemo(paths) : rc;
    }
  }
}
