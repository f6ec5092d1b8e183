// The simulator at scale: create, list and destroy 100 domains, without and
// with network namespaces, and the daemon's memory with 100 domains.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '../src/sim/control.js';
import { simEntry } from '../src/sim/main.js';
import { simPaths } from '../src/sim/paths.js';
import type { BenchResult } from './types.js';

const N = 100;

function sim(args: string[]): Promise<void> {
  return new Promise((r, j) =>
    execFile(process.execPath, [simEntry(), 'sim', ...args], (err) => (err ? j(err) : r())),
  );
}

async function xl(root: string, argv: string[]): Promise<void> {
  const r = await controlRequest(simPaths(root).control, { op: 'xl', argv, cwd: root });
  if (!('exit' in r) || r.exit !== 0) throw new Error(`xl ${argv.join(' ')} failed`);
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function round(network: boolean): Promise<BenchResult[]> {
  const root = mkdtempSync(join(tmpdir(), 'zc-sim-bench-'));
  const tag = network ? 'with network' : 'no network';
  const out: BenchResult[] = [];
  try {
    await sim(['up', '--root', root, ...(network ? [] : ['--no-network'])]);
    const pid = Number(readFileSync(simPaths(root).pidfile, 'utf8'));
    const idle = rssMiB(pid);
    for (let i = 0; i < N; i++) {
      writeFileSync(
        join(root, `d${i}.cfg`),
        `name = "d${i}"\nmemory = 16\nvif = [ 'bridge=xenbr0' ]\nsim_ip = [ "10.${100 + (i >> 8)}.${i & 255}.2/16" ]\n`,
      );
    }
    let t = performance.now();
    for (let i = 0; i < N; i++) await xl(root, ['create', '-q', join(root, `d${i}.cfg`)]);
    out.push({ name: `create (${tag})`, value: (performance.now() - t) / N, unit: 'ms/domain' });
    out.push({
      name: `daemon RSS, ${N} domains (${tag})`,
      value: rssMiB(pid),
      unit: 'MiB',
      note: `idle ${idle.toFixed(1)} MiB`,
    });
    t = performance.now();
    for (let i = 0; i < 10; i++) await xl(root, ['list']);
    out.push({
      name: `list ${N} domains (${tag})`,
      value: (performance.now() - t) / 10,
      unit: 'ms',
    });
    t = performance.now();
    for (let i = 0; i < N; i++) await xl(root, ['destroy', `d${i}`]);
    out.push({ name: `destroy (${tag})`, value: (performance.now() - t) / N, unit: 'ms/domain' });
  } finally {
    await sim(['down', '--root', root]).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
  return out;
}

export async function run(): Promise<BenchResult[]> {
  const results = await round(false);
  if (process.getuid?.() === 0) results.push(...(await round(true)));
  return results;
}
