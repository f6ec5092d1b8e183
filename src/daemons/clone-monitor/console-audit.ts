// Copies the console monitor's closed session records (console/sessions/ in
// XenStore) into the state store's audit, so every console open and close is
// audited in dom0 even when the console monitor runs in another domain.
import { SESSIONS_ROOT, importConsoleSessions } from '../../core/console/index.js';
import type { StateStore } from '../../core/state/index.js';
import type { XsClient } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import { PassScheduler } from '../common/pass-scheduler.js';

export interface ConsoleAudit {
  stop(): Promise<void>;
}

export async function startConsoleAudit(
  xs: XsClient,
  store: Pick<StateStore, 'recordAudit'>,
  log: DaemonLogger,
): Promise<ConsoleAudit> {
  const passes = new PassScheduler({
    pass: async () => {
      const n = await importConsoleSessions(xs, store);
      if (n > 0) log.info('console sessions audited', { sessions: n });
    },
    onError: (err, retryMs) =>
      log.warn('console sessions not audited yet', { error: err, retryMs }),
    retryMinMs: 200,
    retryMaxMs: 10_000,
  });
  const watch = await xs.watch(SESSIONS_ROOT);
  const loop = (async () => {
    for await (const _ of watch) passes.markFull();
  })().catch(() => {});
  return {
    async stop() {
      await watch.close().catch(() => {});
      await loop;
      await passes.stop();
    },
  };
}
