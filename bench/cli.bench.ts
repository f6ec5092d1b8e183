// vmclone's start-up: each read-only command against `node -e 0`, the floor
// any Node.js CLI stands on. Runs are paired (each round runs the baseline
// and every command once, in turn), so a busy machine slows both sides of a
// ratio alike; the figure is the median of the per-round ratios. The built
// entry point is measured, as installed (dist/src/bin/vmclone.js), with no
// Xen host (no xl, no XenStore): what is timed is the CLI, not xl. The five
// commands of the goal run against an empty ZynClone root; list and status
// also run against a root with two clones, where status asks xl and
// XenStore (absent here, so they fail fast) what it shows of the clone.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { zynclonePaths } from '../src/core/paths.js';
import { openStateStore } from '../src/core/state/index.js';
import type { BenchResult } from './types.js';

const ROUNDS = 21;
const WARMUP = 3;
const vmclone = fileURLToPath(new URL('../src/bin/vmclone.js', import.meta.url));

// name, argv, root, the exit status each run must end with (a command that
// failed early would look fast).
const COMMANDS: Array<[string, string[], 'empty' | 'clones', number]> = [
  ['list', ['list'], 'empty', 0],
  ['status web01', ['status', 'web01'], 'empty', 4],
  ['config web01', ['config', 'web01'], 'empty', 0],
  ['--help', ['--help'], 'empty', 0],
  ['--version', ['--version'], 'empty', 0],
  ['list (2 clones)', ['list'], 'clones', 0],
  ['status web01 (its clone)', ['status', 'web01'], 'clones', 0],
];

/** A root where web01 and db01 have an xl config and a clone each (records only). */
function rootWithClones(root: string): void {
  mkdirSync(join(root, 'etc/xen'), { recursive: true });
  const store = openStateStore({ paths: zynclonePaths(root) });
  try {
    for (const vm of ['web01', 'db01']) {
      writeFileSync(
        join(root, `etc/xen/${vm}.cfg`),
        `name = "${vm}"\nmemory = 512\ndisk = [ 'format=raw,vdev=xvda,access=rw,target=/v/${vm}.img' ]\n`,
      );
      store.putClone({
        vm,
        cloneName: `${vm}-clone`,
        state: 'active',
        kind: 'online',
        sourceUuid: '6f1c7d52-3b8e-4f0a-9c1d-2e5f8a9b0c1d',
        requestedBy: 'user:bench',
      });
    }
  } finally {
    store.close();
  }
}

/** CPU seconds of this process's waited-for children (cutime + cstime), in clock ticks. */
function childTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]);
}

function timed(args: string[], env: NodeJS.ProcessEnv, status = 0): { ms: number; ticks: number } {
  const ticks = childTicks();
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t;
  if (r.status !== status) {
    throw new Error(
      `node ${args.join(' ')} ended with ${r.status ?? r.signal}, not ${status}: ${r.stderr}`,
    );
  }
  return { ms, ticks: childTicks() - ticks };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'zc-cli-bench-'));
  const roots = { empty: join(dir, 'empty'), clones: join(dir, 'clones') };
  mkdirSync(roots.empty);
  rootWithClones(roots.clones);
  // No xl and no XenStore: status finds neither, quickly, as the commands' own cost is measured.
  const env = (root: string) => ({
    ...process.env,
    ZYNCLONE_ROOT: root,
    XENSTORED_PATH: join(dir, 'no-xenstored'),
  });
  try {
    const base: number[] = [];
    let baseTicks = 0;
    const ratios = COMMANDS.map(() => [] as number[]);
    const times = COMMANDS.map(() => [] as number[]);
    const ticks = COMMANDS.map(() => 0);
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      const b = timed(['-e', '0'], env(roots.empty));
      COMMANDS.forEach(([, argv, root, status], i) => {
        const c = timed([vmclone, ...argv], env(roots[root]), status);
        if (round < WARMUP) return;
        ratios[i]!.push(c.ms / b.ms);
        times[i]!.push(c.ms);
        ticks[i]! += c.ticks;
      });
      if (round >= WARMUP) {
        base.push(b.ms);
        baseTicks += b.ticks;
      }
    }
    return [
      {
        name: 'node -e 0',
        value: median(base),
        unit: 'ms',
        note: `median of ${ROUNDS}; the baseline of the ratios below`,
      },
      ...COMMANDS.map(([name, , root], i) => ({
        name: `vmclone ${name} / node -e 0`,
        value: median(ratios[i]!),
        unit: 'x',
        note: `median of ${ROUNDS} paired runs${root === 'empty' ? ' (goal <= 1.3)' : ''}; ${median(times[i]!).toFixed(0)} ms; CPU time ${(ticks[i]! / Math.max(1, baseTicks)).toFixed(2)}x`,
      })),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
