// `zynclone orchestrator`: clone_guest_orchestrator, in the control domain.
// Serves the clone requests VMs write into their own XenStore area.
import { packageVersion } from '../../cli/version.js';
import { zynclonePaths } from '../../core/paths.js';
import { type StateStore, openStateStore } from '../../core/state/index.js';
import { daemonLeaf } from '../../core/xenstore/index.js';
import { XlDriver } from '../../xen/index.js';
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from '../common/heartbeat.js';
import { createLogger } from '../common/log.js';
import {
  connectUntilStopped,
  parseDaemonArgs,
  stopOnSignal,
  xenstoreSocket,
} from '../common/process.js';
import { configPolicy, lifecycleExecutor } from './host.js';
import { DEFAULT_LIMITS, GuestOrchestrator } from './orchestrator.js';

export const DAEMON_NAME = 'orchestrator';

const USAGE = `usage: zynclone orchestrator [options]

  --xenstore PATH       XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --root DIR            root prefix of every ZynClone path (default $ZYNCLONE_ROOT or /)
  --heartbeat-ms N      heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
  --scan-ms N           how often domains and their configuration are re-checked (default ${DEFAULT_LIMITS.scanIntervalMs})

Logs: one JSON object per line on stdout (journalctl -u zynclone-orchestrator);
$ZYNCLONE_LOG_LEVEL=debug for more.
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

export async function runOrchestrator(argv: string[]): Promise<number> {
  const values = parseDaemonArgs(DAEMON_NAME, USAGE, argv, {
    xenstore: { type: 'string' },
    root: { type: 'string' },
    'heartbeat-ms': { type: 'string', default: String(DEFAULT_HEARTBEAT_MS) },
    'scan-ms': { type: 'string', default: String(DEFAULT_LIMITS.scanIntervalMs) },
  });
  if (typeof values === 'number') return values;
  let heartbeatMs: number;
  let scanIntervalMs: number;
  let paths: ReturnType<typeof zynclonePaths>;
  try {
    heartbeatMs = intOption('heartbeat-ms', values['heartbeat-ms'] as string, 100, 3_600_000);
    scanIntervalMs = intOption('scan-ms', values['scan-ms'] as string, 100, 600_000);
    paths = values.root === undefined ? zynclonePaths() : zynclonePaths(values.root as string);
  } catch (err) {
    process.stderr.write(`zynclone orchestrator: ${(err as Error).message}\n`);
    return 2;
  }
  const socket = xenstoreSocket(values);
  const version = packageVersion();
  const log = createLogger(DAEMON_NAME);
  const stop = stopOnSignal(log, 'stopping; waiting for running operations');

  log.info('starting', { version, socket, root: paths.root });
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
  const orchestrator = new GuestOrchestrator({
    xs,
    log,
    policy: configPolicy(paths, store),
    execute: lifecycleExecutor({
      paths,
      store,
      xl: new XlDriver({ timeoutMs: 120_000 }),
      xs,
      log,
    }),
    limits: { scanIntervalMs },
  });
  let heartbeat: ReturnType<typeof startHeartbeat> | undefined;
  try {
    await xs.write(daemonLeaf(DAEMON_NAME, 'heartbeat-ms'), String(heartbeatMs));
    await orchestrator.start();
    heartbeat = startHeartbeat(xs, DAEMON_NAME, version, heartbeatMs, log);
    log.info('watching', { domains: orchestrator.served() });
    await stop.stopped;
  } catch (err) {
    log.error('orchestrator failed', { error: err });
    return 1;
  } finally {
    heartbeat?.stop();
    await orchestrator.stop();
    await xs.close().catch(() => {});
    store.close();
  }
  return 0;
}
