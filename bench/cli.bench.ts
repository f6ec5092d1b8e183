// vmclone's start-up: each read-only command against `node -e 0`, the floor
// any Node.js CLI stands on. Runs are paired (each round runs the baseline
// and every command once, in turn), so a busy machine slows both sides of a
// ratio alike; the figure is the median of the per-round ratios. The built
// entry point is measured, as installed (dist/src/bin/vmclone.js), against an
// empty ZynClone root with no Xen host: what is timed is the CLI, not xl.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from './types.js';

const ROUNDS = 21;
const WARMUP = 3;
const vmclone = fileURLToPath(new URL('../src/bin/vmclone.js', import.meta.url));

const COMMANDS: Array<[string, string[]]> = [
  ['list', ['list']],
  ['status web01', ['status', 'web01']],
  ['config web01', ['config', 'web01']],
  ['--help', ['--help']],
  ['--version', ['--version']],
];

/** CPU seconds of this process's waited-for children (cutime + cstime), in clock ticks. */
function childTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]);
}

function timed(args: string[], env: NodeJS.ProcessEnv): { ms: number; ticks: number } {
  const ticks = childTicks();
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t;
  if (r.status === null) throw new Error(`node ${args.join(' ')} died of ${r.signal}`);
  return { ms, ticks: childTicks() - ticks };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

export async function run(): Promise<BenchResult[]> {
  const root = mkdtempSync(join(tmpdir(), 'zc-cli-bench-'));
  // No xl and no XenStore: status finds neither, quickly, as the commands' own cost is measured.
  const env = { ...process.env, ZYNCLONE_ROOT: root, XENSTORED_PATH: join(root, 'no-xenstored') };
  try {
    const base: number[] = [];
    let baseTicks = 0;
    const ratios = COMMANDS.map(() => [] as number[]);
    const times = COMMANDS.map(() => [] as number[]);
    const ticks = COMMANDS.map(() => 0);
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      const b = timed(['-e', '0'], env);
      COMMANDS.forEach(([, argv], i) => {
        const c = timed([vmclone, ...argv], env);
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
      ...COMMANDS.map(([name], i) => ({
        name: `vmclone ${name} / node -e 0`,
        value: median(ratios[i]!),
        unit: 'x',
        note: `median of ${ROUNDS} paired runs (goal <= 1.3); ${median(times[i]!).toFixed(0)} ms; CPU time ${(ticks[i]! / Math.max(1, baseTicks)).toFixed(2)}x`,
      })),
    ];
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
