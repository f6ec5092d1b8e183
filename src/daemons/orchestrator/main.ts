// `zynclone orchestrator`: clone_guest_orchestrator, in the control domain.
// Serves the clone requests VMs write into their own XenStore area.
import { zynclonePaths } from '../../core/paths.js';
import { openStateStore } from '../../core/state/index.js';
import { XlDriver } from '../../xen/index.js';
import { intOption, runDaemon } from '../common/daemon.js';
import { DEFAULT_HEARTBEAT_MS } from '../common/heartbeat.js';
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

export function runOrchestrator(argv: string[]): Promise<number> {
  return runDaemon(
    {
      name: DAEMON_NAME,
      usage: USAGE,
      options: {
        root: { type: 'string' },
        'scan-ms': { type: 'string', default: String(DEFAULT_LIMITS.scanIntervalMs) },
      },
      parse: (values) => ({
        scanIntervalMs: intOption('scan-ms', values['scan-ms'] as string, 100, 600_000),
        paths: zynclonePaths(values.root as string | undefined),
      }),
      describe: (o) => ({ root: o.paths.root }),
      stopMessage: 'stopping; waiting for running operations',
      prepare: (o) => openStateStore({ paths: o.paths }),
      prepareFailure: 'cannot open the state store',
      release: (store) => store.close(),
      failure: 'orchestrator failed',
      serve: async ({ xs, options: o, prepared: store, log, serving }) => {
        const orchestrator = new GuestOrchestrator({
          xs,
          log,
          policy: configPolicy(o.paths, store),
          execute: lifecycleExecutor({
            paths: o.paths,
            store,
            xl: new XlDriver({ timeoutMs: 120_000 }),
            xs,
            log,
          }),
          limits: { scanIntervalMs: o.scanIntervalMs },
        });
        try {
          await orchestrator.start();
          log.info('watching', { domains: orchestrator.served() });
          await serving();
        } finally {
          await orchestrator.stop();
        }
      },
    },
    argv,
  );
}
