// Runs every bench/*.bench.js beside this file (or those named on the command
// line) and prints one table. Benchmarks report figures; they never fail on time.
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchModule, BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();

const rows: Array<BenchResult & { suite: string }> = [];
let failed = false;
for (const file of files) {
  const suite = basename(file, '.bench.js');
  process.stderr.write(`bench: ${suite} ...\n`);
  try {
    const mod = (await import(pathToFileURL(join(here, file)).href)) as BenchModule;
    for (const r of await mod.run()) rows.push({ suite, ...r });
  } catch (err) {
    failed = true;
    process.stderr.write(`bench: ${suite} failed: ${(err as Error).stack ?? err}\n`);
  }
}

const fmt = (v: number) =>
  Number.isInteger(v)
    ? v.toLocaleString('en-US')
    : v.toLocaleString('en-US', { maximumFractionDigits: 3 });
const table = rows.map((r) => [r.suite, r.name, fmt(r.value), r.unit, r.note ?? '']);
const head = ['suite', 'measure', 'value', 'unit', 'note'];
const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) =>
  cells
    .map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
    .join('  ')
    .trimEnd();
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of table) console.log(line(row));
process.exitCode = failed ? 1 : 0;
