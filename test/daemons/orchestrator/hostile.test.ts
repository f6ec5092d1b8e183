// A hostile guest floods its request node from its own XenStore socket while
// two other guests keep asking: nothing crashes, nothing acts outside the
// requesting VM, the others are still answered and memory stays bounded.
// Bounded to a few seconds here; bench/orchestrator.bench.ts runs 100k writes.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REQUEST_NODE } from '../../../src/daemons/orchestrator/protocol.js';
import { flood, hostileOps, watchFlood } from '../../../src/sim/host/hostile-guest.js';
import { DEFAULT_QUOTAS } from '../../../src/sim/xenstored/quotas.js';
import { Lab } from './lab.js';

const WRITES = Number(process.env.ZYNCLONE_FUZZ_WRITES ?? 1000);
// xenstored lets a guest write 200 times a second: 100k writes take 500 s.
const TIMEOUT_MS = 60_000 + (WRITES / DEFAULT_QUOTAS.writeRate) * 1000;
const NAMES: Record<number, string> = { 1: 'web01', 2: 'db01', 3: 'web02' };

describe('clone_guest_orchestrator under a hostile guest', () => {
  let lab: Lab;

  beforeEach(async () => {
    lab = await Lab.start();
    for (const [domid, name] of Object.entries(NAMES)) {
      lab.configure(name, {
        guest_orchestration: 'true',
        guest_allowed_operations: 'status,create,remove',
      });
      await lab.addDomain(Number(domid), name);
    }
  });

  afterEach(async () => {
    await lab.close();
  });

  it(
    `${WRITES} hostile writes and a watch flood: 0 crashes, 0 operations outside the requester, others answered`,
    async () => {
      await lab.startOrchestrator({ requestRefillMs: 100 });
      const hostile = await lab.guest(1);
      const watches = await watchFlood(hostile, [REQUEST_NODE, 'zynclone/reply', 'data'], 200);
      expect(watches.length).toBeGreaterThan(50);
      const heapBefore = process.memoryUsage().heapUsed;
      let flooding = true;
      const flooded = flood(hostile, hostileOps(REQUEST_NODE, WRITES, 7), 32).finally(() => {
        flooding = false;
      });
      // Meanwhile two other guests ask, one request after another.
      const answered: string[] = [];
      const asker = async (domid: number) => {
        const g = await lab.guest(domid);
        for (let i = 0; flooding || i < 3; i++) {
          const id = `ok${i}`;
          await g.write(REQUEST_NODE, `${id} status`);
          const r = await lab.waitReply(domid, id, ['ok', 'error'], 15_000);
          answered.push(`${domid}:${r.state}:${r.code ?? ''}`);
          // Within the rate limit (one new request per 100 ms here), as a
          // well-behaved guest: the flood lasts seconds (xenstored holds the
          // hostile guest to its write rate).
          await new Promise((r) => setTimeout(r, 120));
        }
      };
      const [result] = await Promise.all([flooded, asker(2), asker(3)]);
      expect(result.ops).toBe(WRITES);
      // Still alive and serving everyone, the hostile domain included.
      expect(lab.orchestrator.served().sort()).toEqual([1, 2, 3]);
      await hostile.write(REQUEST_NODE, 'after-flood status');
      expect((await lab.waitReply(1, 'after-flood')).state).toMatch(/ok|error/);
      expect(answered.filter((a) => a.startsWith('2:')).every((a) => a === '2:ok:')).toBe(true);
      expect(answered.filter((a) => a.startsWith('3:')).every((a) => a === '3:ok:')).toBe(true);
      // Whatever ran, ran for the domain that asked, on its own VM.
      for (const c of lab.calls) expect(c.vm).toBe(NAMES[c.domid]);
      const { replies, queued, running } = lab.orchestrator.stats;
      expect(replies).toBeLessThanOrEqual(3 * 16);
      expect(queued + running).toBeLessThanOrEqual(3 * 3);
      const reply = await hostile.directory('zynclone/reply');
      expect(reply.length).toBeLessThanOrEqual(16);
      // A loose bound: the flood's garbage must not accumulate in the orchestrator.
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
      expect(lab.logLines.filter((l) => l.level === 'error')).toEqual([]);
    },
    TIMEOUT_MS,
  );
});
