// Daemon health in XenStore (docs/xenstore-contract.md, "Daemon health"):
// /tool/zynclone/daemons/$DAEMON/{heartbeat,heartbeat-ms,version,pid}. A beat
// that cannot be written (XenStore away) is logged and skipped; the next one
// tries again.
import { daemonLeaf } from '../../core/xenstore/index.js';
import type { XsOps } from '../../xenstore/index.js';
import type { DaemonLogger } from './log.js';

export const DEFAULT_HEARTBEAT_MS = 5000;

export interface Heartbeat {
  /** Writes one beat now; resolves when written (or failed and logged). */
  beat(): Promise<void>;
  stop(): void;
}

function checkDaemonName(daemonName: string): void {
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(daemonName)) {
    throw new Error(`invalid daemon name ${JSON.stringify(daemonName)}`);
  }
}

export function startHeartbeat(
  xs: XsOps,
  daemonName: string,
  version: string,
  intervalMs = DEFAULT_HEARTBEAT_MS,
  log?: DaemonLogger,
): Heartbeat {
  checkDaemonName(daemonName);
  let identityWritten = false;
  let inFlight: Promise<void> | undefined;
  let stopped = false;

  const beat = (): Promise<void> => {
    if (inFlight) return inFlight;
    inFlight = (async () => {
      try {
        // Identity is rewritten after a failure too: XenStore may have restarted empty.
        if (!identityWritten) {
          await Promise.all([
            xs.write(daemonLeaf(daemonName, 'version'), version),
            xs.write(daemonLeaf(daemonName, 'pid'), String(process.pid)),
            xs.write(daemonLeaf(daemonName, 'heartbeat-ms'), String(intervalMs)),
          ]);
          identityWritten = true;
        }
        await xs.write(daemonLeaf(daemonName, 'heartbeat'), String(Date.now()));
      } catch (err) {
        identityWritten = false;
        log?.warn('heartbeat not written', { error: err });
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  const timer = setInterval(() => {
    if (!stopped) void beat();
  }, intervalMs);
  timer.unref();
  void beat();
  return {
    beat,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
