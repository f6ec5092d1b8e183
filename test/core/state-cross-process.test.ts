// Two real processes against one database file: the child is the store bundled
// by esbuild and run under plain node, so it shares no memory with this one.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type StateStore, openStateStore } from '../../src/core/state/index.js';

let dir: string;
let childJs: string;
const children: ChildProcess[] = [];
const stores: StateStore[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'zc-xproc-'));
  childJs = join(dir, 'state-child.cjs');
  await build({
    entryPoints: [join(__dirname, 'fixtures/state-child.ts')],
    outfile: childJs,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    logLevel: 'silent',
  });
});
afterEach(() => {
  for (const c of children.splice(0))
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of stores.splice(0)) s.close();
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Child {
  proc: ChildProcess;
  next(): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function startChild(db: string, vm: string, kind: string): Child {
  const proc = spawn(process.execPath, [childJs, db, vm, kind], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(proc);
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  return {
    proc,
    exited,
    async next() {
      const r = await lines.next();
      if (r.done) throw new Error(`child ${proc.pid} ended without answering`);
      return JSON.parse(r.value) as Record<string, unknown>;
    },
  };
}

describe('state store across processes', () => {
  it('one of two concurrent processes gets the VM, the other VM_BUSY; killing the winner leaves a stale, journaled operation', async () => {
    const db = join(dir, 'race.db');
    const a = startChild(db, 'web1', 'create');
    const b = startChild(db, 'web1', 'start');
    await Promise.all([a.next(), b.next()]);
    a.proc.stdin!.write('go\n');
    b.proc.stdin!.write('go\n');
    const [ra, rb] = await Promise.all([a.next(), b.next()]);

    const results = [ra, rb];
    const winners = results.filter((r) => r.ok === true);
    const losers = results.filter((r) => r.ok === false);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(1);
    const [winner, loser] = ra.ok ? [a, b] : [b, a];
    expect(losers[0]).toMatchObject({ code: 'VM_BUSY', busy: true, ownerPid: winner.proc.pid });
    expect(String(losers[0]!.message)).toContain(`pid ${winner.proc.pid}`);
    await loser.exited;

    const store = openStateStore({ file: db });
    stores.push(store);
    const opId = Number(winners[0]!.opId);
    expect(store.pendingOperations()).toEqual([
      expect.objectContaining({ id: opId, liveness: 'alive' }),
    ]);
    expect(store.staleOperations()).toEqual([]);

    winner.proc.kill('SIGKILL');
    await winner.exited;

    const stale = store.staleOperations();
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({
      id: opId,
      vm: 'web1',
      status: 'running',
      liveness: 'dead',
      owner: { pid: winner.proc.pid },
    });
    expect(stale[0]!.steps).toEqual([
      expect.objectContaining({
        seq: 1,
        name: 'snapshot-disks',
        status: 'journaled',
        intent: { disks: ['xvda'] },
        undo: { remove: ['snap-1'] },
      }),
    ]);
    expect(() => store.beginOperation('web1', 'remove')).toThrow(
      expect.objectContaining({ code: 'VM_BUSY', stale: true }),
    );
    store.adoptOperation(opId);
    store.undoStep(opId, 1);
    store.finishOperation(opId, 'rolled-back');
    expect(store.beginOperation('web1', 'remove').status).toBe('running');
  });
});
