// Our XenStore client against Debian's C client (xenstore-utils), both talking
// to the simulator's xenstored on a temp socket. Figures only; never fails on time.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenstoreServer } from '../src/sim/xenstored/server.js';
import { XsClient } from '../src/xenstore/client.js';
import type { BenchResult } from './types.js';

const N_SEQ = 2000;
const N_PIPE = 20000;
const WINDOW = 64;
const N_C = 2000;
const N_WATCH = 500;

function execDone(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, maxBuffer: 64 * 1024 * 1024 }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

function opsPerSec(n: number, startNs: bigint): number {
  const s = Number(process.hrtime.bigint() - startNs) / 1e9;
  return Math.round(n / s);
}

async function pipelined(
  n: number,
  window: number,
  op: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await op(next++);
  };
  await Promise.all(Array.from({ length: window }, worker));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(socketPath: string): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const client = await XsClient.connect({ path: socketPath, transport: 'socket' });
  try {
    const key = (i: number) => `/bench/k${i % 1000}`;
    // Warm up the JIT on both sides (the server runs in this process) before timing.
    await pipelined(4000, WINDOW, (i) => client.write(key(i), 'warm'));
    for (let i = 0; i < 1000; i++) await client.read(key(i));
    let t = process.hrtime.bigint();
    for (let i = 0; i < N_SEQ; i++) await client.write(key(i), `value-${i}`);
    const oursSeqWrite = opsPerSec(N_SEQ, t);
    t = process.hrtime.bigint();
    for (let i = 0; i < N_SEQ; i++) await client.read(key(i));
    const oursSeqRead = opsPerSec(N_SEQ, t);
    t = process.hrtime.bigint();
    await pipelined(N_PIPE, WINDOW, (i) => client.write(key(i), `value-${i}`));
    const oursPipeWrite = opsPerSec(N_PIPE, t);
    t = process.hrtime.bigint();
    await pipelined(N_PIPE, WINDOW, (i) => client.read(key(i)));
    const oursPipeRead = opsPerSec(N_PIPE, t);

    // Debian's client: one process doing N operations, one request at a time.
    const env = { ...process.env, XENSTORED_PATH: socketPath };
    const paths = Array.from({ length: N_C }, (_, i) => `/bench/c${i}`);
    t = process.hrtime.bigint();
    await execDone(
      'xenstore-write',
      paths.flatMap((p, i) => [p, `value-${i}`]),
      env,
    );
    const cWrite = opsPerSec(N_C, t);
    t = process.hrtime.bigint();
    await execDone('xenstore-read', paths, env);
    const cRead = opsPerSec(N_C, t);

    const cNote = `one process, ${N_C} keys in argv; includes process start`;
    out.push(
      {
        name: 'ours: write, sequential',
        value: oursSeqWrite,
        unit: 'ops/s',
        note: `${N_SEQ} ops; server shares our process`,
      },
      { name: 'ours: read, sequential', value: oursSeqRead, unit: 'ops/s', note: `${N_SEQ} ops` },
      {
        name: `ours: write, ${WINDOW} in flight`,
        value: oursPipeWrite,
        unit: 'ops/s',
        note: `${N_PIPE} ops`,
      },
      {
        name: `ours: read, ${WINDOW} in flight`,
        value: oursPipeRead,
        unit: 'ops/s',
        note: `${N_PIPE} ops`,
      },
      { name: 'C xenstore-write', value: cWrite, unit: 'ops/s', note: cNote },
      { name: 'C xenstore-read', value: cRead, unit: 'ops/s', note: cNote },
      {
        name: 'ratio ours/C, write sequential',
        value: Number((oursSeqWrite / cWrite).toFixed(2)),
        unit: 'x',
      },
      {
        name: 'ratio ours/C, read sequential',
        value: Number((oursSeqRead / cRead).toFixed(2)),
        unit: 'x',
      },
      {
        name: `ratio ours/C, write ${WINDOW} in flight`,
        value: Number((oursPipeWrite / cWrite).toFixed(2)),
        unit: 'x',
      },
      {
        name: `ratio ours/C, read ${WINDOW} in flight`,
        value: Number((oursPipeRead / cRead).toFixed(2)),
        unit: 'x',
      },
    );

    // Write-to-watch-event latency, one write at a time.
    const watch = await client.watch('/bench/w');
    await watch.next(); // xenstored's initial event
    const lat: number[] = [];
    for (let i = 0; i < N_WATCH; i++) {
      const path = `/bench/w/${i}`;
      const t0 = process.hrtime.bigint();
      const written = client.write(path, 'x');
      for (;;) {
        const r = await watch.next();
        if (r.done) throw new Error('watch ended during the benchmark');
        if (r.value.kind === 'event' && r.value.path === path) break;
      }
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
      await written;
    }
    await watch.close();
    lat.sort((a, b) => a - b);
    const note = `${N_WATCH} writes`;
    out.push(
      {
        name: 'write -> watch event p50',
        value: Math.round(percentile(lat, 50)),
        unit: 'us',
        note,
      },
      {
        name: 'write -> watch event p99',
        value: Math.round(percentile(lat, 99)),
        unit: 'us',
        note,
      },
    );
  } finally {
    await client.close();
  }
  return out;
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'xs-bench-'));
  const socketPath = join(dir, 'xenstored.sock');
  const server = await XenstoreServer.start({ socketPath });
  try {
    return await measure(socketPath);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
