// `zynclone clone-monitor`: the control domain's daemon that keeps
// /tool/zynclone in XenStore in line with the state store (monitor.ts).
import { zynclonePaths } from '../../core/paths.js';
import { openStateStore } from '../../core/state/index.js';
import { XlDriver } from '../../xen/index.js';
import { intOption, runDaemon } from '../common/daemon.js';
import { DEFAULT_HEARTBEAT_MS } from '../common/heartbeat.js';
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

export function runCloneMonitor(argv: string[]): Promise<number> {
  return runDaemon(
    {
      name: DAEMON_NAME,
      usage: USAGE,
      options: {
        root: { type: 'string' },
        'netdd-domid': { type: 'string', default: '0' },
        'console-domid': { type: 'string', default: '0' },
        'poll-ms': { type: 'string', default: String(DEFAULT_POLL_MS) },
        'manage-bridge': { type: 'string' },
      },
      parse: (values) => {
        const mb = values['manage-bridge'] as string | undefined;
        if (mb !== undefined && mb !== 'yes' && mb !== 'no') {
          throw new Error(`--manage-bridge must be yes or no, not ${JSON.stringify(mb)}`);
        }
        return {
          netdd: intOption('netdd-domid', values['netdd-domid'] as string, 0, 32751),
          consoleDomid: intOption('console-domid', values['console-domid'] as string, 0, 32751),
          pollMs: intOption('poll-ms', values['poll-ms'] as string, 10, 60_000),
          paths: zynclonePaths(values.root as string | undefined),
          ...(mb === undefined ? {} : { manageBridge: mb === 'yes' }),
        };
      },
      describe: (o) => ({ root: o.paths.root, netdd: o.netdd, console: o.consoleDomid }),
      stopMessage: 'stopping; XenStore keeps what was published',
      prepare: (o) => openStateStore({ paths: o.paths }),
      prepareFailure: 'cannot open the state store',
      release: (store) => store.close(),
      failure: 'clone monitor failed',
      serve: async ({ xs, options: o, prepared: store, log, version, heartbeatMs, serving }) => {
        const monitor = new CloneMonitor({
          xs,
          store,
          paths: o.paths,
          xl: new XlDriver({ timeoutMs: 60_000 }),
          log,
          ids: { netdd: o.netdd, console: o.consoleDomid },
          pollMs: o.pollMs,
          identity: { version, pid: String(process.pid), 'heartbeat-ms': String(heartbeatMs) },
          ...(o.manageBridge === undefined ? {} : { manageBridge: o.manageBridge }),
        });
        let consoleAudit: ConsoleAudit | undefined;
        try {
          await monitor.start();
          consoleAudit = await startConsoleAudit(xs, store, log);
          log.info('watching', { path: '/tool/zynclone/vm' });
          await serving();
        } finally {
          await consoleAudit?.stop();
          await monitor.stop();
        }
      },
    },
    argv,
  );
}
