// `zynclone clone-monitor`: the control domain's daemon that keeps
// /tool/zynclone in XenStore in line with the state store (monitor.ts).
import { packageVersion } from '../../cli/version.js';
import { zynclonePaths } from '../../core/paths.js';
import { type StateStore, openStateStore } from '../../core/state/index.js';
import { XlDriver } from '../../xen/index.js';
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from '../common/heartbeat.js';
import { createLogger } from '../common/log.js';
import {
  connectUntilStopped,
  parseDaemonArgs,
  stopOnSignal,
  xenstoreSocket,
} from '../common/process.js';
import { type ConsoleAudit, startConsoleAudit } from './console-audit.js';
import { CloneMonitor, DEFAULT_POLL_MS } from './monitor.js';

export const DAEMON_NAME = 'clone-monitor';

const USAGE = `usage: zynclone clone-monitor [options]

  --xenstore PATH       XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --root DIR            root prefix of every ZynClone path (default $ZYNCLONE_ROOT or /)
  --netdd-domid N       domain id of the network driver domain (default 0: dom0)
  --console-domid N     domain id of the console domain (default 0: dom0)
  --heartbeat-ms N      heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
  --poll-ms N           how often the state store and config are checked (default ${DEFAULT_POLL_MS})
  --manage-bridge yes|no  create the isolation bridge in this domain when missing
                        (default yes with root /, no under another root)
`;

function intOption(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) {
    throw new Error(
      `--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`,
    );
  }
  return n;
}

export async function runCloneMonitor(argv: string[]): Promise<number> {
  const values = parseDaemonArgs(DAEMON_NAME, USAGE, argv, {
    xenstore: { type: 'string' },
    root: { type: 'string' },
    'netdd-domid': { type: 'string', default: '0' },
    'console-domid': { type: 'string', default: '0' },
    'heartbeat-ms': { type: 'string', default: String(DEFAULT_HEARTBEAT_MS) },
    'poll-ms': { type: 'string', default: String(DEFAULT_POLL_MS) },
    'manage-bridge': { type: 'string' },
  });
  if (typeof values === 'number') return values;
  let netdd: number;
  let consoleDomid: number;
  let heartbeatMs: number;
  let pollMs: number;
  let paths: ReturnType<typeof zynclonePaths>;
  let manageBridge: boolean | undefined;
  try {
    netdd = intOption('netdd-domid', values['netdd-domid'] as string, 0, 32751);
    consoleDomid = intOption('console-domid', values['console-domid'] as string, 0, 32751);
    heartbeatMs = intOption('heartbeat-ms', values['heartbeat-ms'] as string, 100, 3_600_000);
    pollMs = intOption('poll-ms', values['poll-ms'] as string, 10, 60_000);
    paths = values.root === undefined ? zynclonePaths() : zynclonePaths(values.root as string);
    const mb = values['manage-bridge'] as string | undefined;
    if (mb !== undefined && mb !== 'yes' && mb !== 'no') {
      throw new Error(`--manage-bridge must be yes or no, not ${JSON.stringify(mb)}`);
    }
    manageBridge = mb === undefined ? undefined : mb === 'yes';
  } catch (err) {
    process.stderr.write(`zynclone clone-monitor: ${(err as Error).message}\n`);
    return 2;
  }
  const socket = xenstoreSocket(values);
  const version = packageVersion();
  const log = createLogger(DAEMON_NAME);

  const stop = stopOnSignal(log, 'stopping; XenStore keeps what was published');

  log.info('starting', { version, socket, root: paths.root, netdd, console: consoleDomid });
  let store: StateStore;
  try {
    store = openStateStore({ paths });
  } catch (err) {
    log.error('cannot open the state store', { error: err });
    return 1;
  }

  const xs = await connectUntilStopped(socket, log, stop, 'xenstore unreachable; retrying');
  if (!xs) {
    store.close();
    return 0;
  }

  const monitor = new CloneMonitor({
    xs,
    store,
    paths,
    xl: new XlDriver({ timeoutMs: 60_000 }),
    log,
    ids: { netdd, console: consoleDomid },
    pollMs,
    identity: { version, pid: String(process.pid), 'heartbeat-ms': String(heartbeatMs) },
    ...(manageBridge === undefined ? {} : { manageBridge }),
  });
  let heartbeat: ReturnType<typeof startHeartbeat> | undefined;
  let consoleAudit: ConsoleAudit | undefined;
  try {
    await monitor.start();
    consoleAudit = await startConsoleAudit(xs, store, log);
    heartbeat = startHeartbeat(xs, DAEMON_NAME, version, heartbeatMs, log);
    log.info('watching', { path: '/tool/zynclone/vm' });
    await stop.stopped;
  } catch (err) {
    log.error('clone monitor failed', { error: err });
    return 1;
  } finally {
    heartbeat?.stop();
    await consoleAudit?.stop();
    await monitor.stop();
    await xs.close().catch(() => {});
    store.close();
  }
  return 0;
}
