/**
 * Prometheus metrics (text format, via prom-client): clones by state and
 * kind, operation durations and the lockdown ack latency (from the state
 * store's journal, so operations run by vmclone count too), how old each
 * monitor's last heartbeat is, and the open console sessions (the records
 * clone_console_monitor keeps in XenStore).
 */
import { Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { readSessionRecords } from '../core/console/index.js';
import { CLONE_STATES, type OperationRecord } from '../core/state/types.js';
import type { XsOps } from '../xenstore/index.js';
import type { LiveFeed } from './live.js';

const SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
const ACK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class WebMetrics {
  readonly registry = new Registry();
  private readonly operationSeconds: Histogram<'kind' | 'outcome'>;
  private readonly ackSeconds: Histogram;

  constructor(feed: LiveFeed, xs: () => Promise<XsOps>) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry, prefix: 'zynclone_web_' });
    new Gauge({
      name: 'zynclone_clones',
      help: 'Clones by state and kind',
      labelNames: ['state', 'kind'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const state of CLONE_STATES) {
          for (const kind of ['offline', 'online', 'memory']) this.set({ state, kind }, 0);
        }
        for (const v of feed.snapshot().clones) {
          if (v.clone) this.inc({ state: v.clone.state, kind: v.clone.kind });
        }
      },
    });
    new Gauge({
      name: 'zynclone_operations_running',
      help: 'Clone operations running now, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const v of feed.snapshot().clones) {
          if (v.operation) this.inc({ kind: v.operation.kind });
        }
      },
    });
    new Gauge({
      name: 'zynclone_daemon_heartbeat_age_seconds',
      help: "Seconds since each daemon's last heartbeat in XenStore",
      labelNames: ['daemon'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const d of feed.snapshot().daemons) {
          if (d.heartbeat !== null)
            this.set({ daemon: d.name }, Math.max(0, now - d.heartbeat) / 1000);
        }
      },
    });
    new Gauge({
      name: 'zynclone_web_event_subscribers',
      help: 'Pages following the live view now',
      registers: [registry],
      collect() {
        this.set(feed.subscriberCount);
      },
    });
    new Gauge({
      name: 'zynclone_console_sessions',
      help: 'Open web console sessions (clone_console_monitor)',
      registers: [registry],
      async collect() {
        this.reset();
        // XenStore away: no sample rather than a wrong zero, and the rest of /metrics still answers.
        const open = await xs()
          .then(openConsoleSessions)
          .catch(() => undefined);
        if (open !== undefined) this.set(open);
      },
    });
    this.operationSeconds = new Histogram({
      name: 'zynclone_operation_duration_seconds',
      help: 'Duration of finished clone operations (any client), by kind and outcome',
      labelNames: ['kind', 'outcome'] as const,
      buckets: SECONDS_BUCKETS,
      registers: [registry],
    });
    this.ackSeconds = new Histogram({
      name: 'zynclone_lockdown_ack_latency_seconds',
      help: "From a lockdown's publication until the net monitor acknowledged it",
      buckets: ACK_BUCKETS,
      registers: [registry],
    });
  }

  /** Records a finished operation and its wait for the lockdown ack. */
  observeOperation(op: OperationRecord): void {
    if (op.finishedAt === null) return;
    this.operationSeconds.observe(
      { kind: op.kind, outcome: op.status },
      Math.max(0, op.finishedAt - op.startedAt) / 1000,
    );
    for (const step of op.steps) {
      if (step.name === 'wait-ack' && step.status === 'done' && step.finishedAt !== null) {
        this.ackSeconds.observe(Math.max(0, step.finishedAt - step.journaledAt) / 1000);
      }
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Open session records; closed ones only wait for clone_monitor to audit them. */
async function openConsoleSessions(xs: XsOps): Promise<number> {
  const records = await readSessionRecords(xs);
  return records.filter((r) => r.record !== undefined && r.record.closedAt === undefined).length;
}
