// The net monitor's figures, in namespaces this benchmark creates and deletes:
// - mask change written in XenStore -> acknowledgement seen by a watcher
//   (the ack is written only after nftables committed, so this bounds the time
//   until the rule is active from above), and the nft transaction alone;
// - a full reconcile with 1000 vifs (XenStore read + one transaction);
// - iperf3 throughput between two guests through the bridge, with the table
//   and 1000 locked vifs in its sets, against no table at all.
// Figures only; never fails on time. Needs root, nft, python3 and iperf3.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ackNode, vifLeaf, vmLeaf, vmNode } from '../src/core/xenstore/index.js';
import { type DaemonLogger, createLogger } from '../src/daemons/common/log.js';
import { NetMonitor, type PassStats, ensureTable } from '../src/daemons/net-monitor/monitor.js';
import { createNftExecutor } from '../src/daemons/net-monitor/nft-exec.js';
import { XenstoreServer } from '../src/sim/xenstored/server.js';
import { XsClient } from '../src/xenstore/client.js';
import type { BenchResult } from './types.js';

const CHANGES = 200;
const VMS = 250; // x (2 clone vifs + 2 original vifs) = 1000 vifs
const IPERF_SECONDS = 2;
const IPERF_ROUNDS = 5;
const spec = { table: 'zynclone', cloneVifPrefix: 'zcv' };

function sh(
  cmd: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

const silent: DaemonLogger = createLogger('net-monitor', { level: 'error', write: () => {} });

async function measure(): Promise<BenchResult[]> {
  const prefix = `zcb${process.pid % 10000}`;
  const netdd = `${prefix}-netdd`;
  const guests = [`${prefix}-a`, `${prefix}-b`];
  const namespaces: string[] = [];
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'zc-netmon-bench-'));
  const results: BenchResult[] = [];
  let server: XenstoreServer | undefined;
  const clients: XsClient[] = [];
  const nft = createNftExecutor({ netns: netdd });
  let monitor: NetMonitor | undefined;
  try {
    for (const ns of [netdd, ...guests]) {
      namespaces.push(ns);
      await must('ip', ['netns', 'add', ns]);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await must('ip', ['-n', netdd, 'link', 'add', 'br0', 'type', 'bridge']);
    await must('ip', ['-n', netdd, 'link', 'set', 'br0', 'up']);
    for (const [i, g] of guests.entries()) {
      const vif = `vif${i + 1}.0`;
      await must('ip', [
        '-n',
        netdd,
        'link',
        'add',
        vif,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        g,
      ]);
      await must('ip', ['-n', netdd, 'link', 'set', vif, 'master', 'br0']);
      await must('ip', ['-n', netdd, 'link', 'set', vif, 'up']);
      await must('ip', ['-n', g, 'addr', 'add', `10.98.0.${i + 1}/24`, 'dev', 'eth0']);
      await must('ip', ['-n', g, 'link', 'set', 'eth0', 'up']);
    }

    const socketPath = join(dir, 'xs.sock');
    // xenstored in its own process, as on a host; in-process only when run from sources.
    const xsd = await startXenstored(socketPath);
    if (xsd) children.push(xsd);
    else server = await XenstoreServer.start({ socketPath });
    const pub = await XsClient.connect({ path: socketPath, transport: 'socket' });
    const monXs = await XsClient.connect({ path: socketPath, transport: 'socket' });
    clients.push(pub, monXs);

    // 1000 vifs: every clone vif locked, every original vif masked (the worst case for the sets).
    for (let v = 0; v < VMS; v++) {
      await pub.transaction(async (tx) => {
        const base = vmNode(`vm${v}`);
        await tx.write(`${base}/state`, 'running');
        for (const d of [0, 1]) {
          await tx.write(`${base}/clone-vif/${d}/name`, `zcv${v}.${d}`);
          await tx.write(`${base}/clone-vif/${d}/masked`, '1');
          await tx.write(`${base}/original-vif/${d}/name`, `vif${1000 + v}.${d}`);
          await tx.write(`${base}/original-vif/${d}/masked`, '1');
        }
        await tx.write(`${base}/generation`, '1');
      });
    }

    await ensureTable(nft, spec);
    monitor = new NetMonitor({ xs: monXs, nft, spec, log: silent });
    const firstPass = new Promise<PassStats>((resolve) => {
      const off = monitor!.onPass((s) => {
        off();
        resolve(s);
      });
    });
    const t0 = performance.now();
    await monitor.start();
    const full = await firstPass;
    results.push(
      {
        name: 'full reconcile, 1000 vifs (XenStore read + nft + acks)',
        value: round(performance.now() - t0),
        unit: 'ms',
        note: 'target < 200',
      },
      { name: 'full reconcile, 1000 vifs: nft transaction', value: round(full.nftMs), unit: 'ms' },
    );

    // Mask changes: one clone vif toggled, each change its own generation.
    const nftTimes: number[] = [];
    monitor.onPass((s) => {
      if (s.nft !== 'none') nftTimes.push(s.nftMs);
    });
    const ackWatch = await pub.watch(ackNode('vm7'));
    const acks = ackWatch[Symbol.asyncIterator]();
    const latencies: number[] = [];
    const fromCommit: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const gen = i + 2;
      const start = performance.now();
      await pub.transaction(async (tx) => {
        await tx.write(vifLeaf('vm7', 'clone-vif', 0, 'masked'), i % 2 === 0 ? '0' : '1');
        await tx.write(vmLeaf('vm7', 'generation'), String(gen));
      });
      const committed = performance.now();
      for (;;) {
        const item = await acks.next();
        if (item.done) throw new Error('ack watch ended');
        const ack = await pub.tryRead(ackNode('vm7'));
        if (ack !== undefined && Number(ack) >= gen) break;
      }
      latencies.push(performance.now() - start);
      fromCommit.push(performance.now() - committed);
    }
    fromCommit.sort((a, b) => a - b);
    await ackWatch.close();
    latencies.sort((a, b) => a - b);
    nftTimes.sort((a, b) => a - b);
    results.push(
      {
        name: 'mask change -> ack seen (bounds rule active), p50',
        value: round(percentile(latencies, 50)),
        unit: 'ms',
        note: `${CHANGES} changes`,
      },
      {
        name: 'mask change -> ack seen (bounds rule active), p99',
        value: round(percentile(latencies, 99)),
        unit: 'ms',
        note: 'from tx start; target < 10',
      },
      {
        name: 'mask change committed -> ack seen, p99',
        value: round(percentile(fromCommit, 99)),
        unit: 'ms',
        note: "without the writer's own 4 round trips",
      },
      {
        name: 'mask change: nft transaction p50',
        value: round(percentile(nftTimes, 50)),
        unit: 'ms',
        note: 'libnftables context',
      },
      {
        name: 'mask change: nft transaction p99',
        value: round(percentile(nftTimes, 99)),
        unit: 'ms',
      },
    );

    // For comparison: the same change through `nft -f -`, one process per transaction.
    const cli = createNftExecutor({ netns: netdd, backend: 'cli' });
    const cliTimes: number[] = [];
    for (let i = 0; i < 20; i++) {
      const verb = i % 2 === 0 ? 'add' : 'delete';
      const t = performance.now();
      await cli.run(`${verb} element bridge ${spec.table} clone_allowed { "zcvbench" }\n`);
      cliTimes.push(performance.now() - t);
    }
    cliTimes.sort((a, b) => a - b);
    results.push({
      name: 'mask change via nft -f - (cli backend), p50',
      value: round(percentile(cliTimes, 50)),
      unit: 'ms',
      note: '20 changes',
    });

    await monitor.stop();
    monitor = undefined;

    // Throughput through the bridge: 1000 locked vifs in the sets vs no table.
    if (!existsSync('/usr/bin/iperf3')) {
      results.push({
        name: 'iperf3 ratio',
        value: 0,
        unit: 'ratio',
        note: 'skipped: iperf3 missing',
      });
    } else {
      const srv = spawn('ip', ['netns', 'exec', guests[1]!, 'iperf3', '-s', '-B', '10.98.0.2'], {
        stdio: 'ignore',
      });
      children.push(srv);
      await new Promise((r) => setTimeout(r, 300));
      const iperf = async (): Promise<number> => {
        const out = await must('ip', [
          ...[
            'netns',
            'exec',
            guests[0]!,
            'iperf3',
            '-c',
            '10.98.0.2',
            '-t',
            String(IPERF_SECONDS),
            '-J',
          ],
        ]);
        return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end
          .sum_received.bits_per_second;
      };
      const without: number[] = [];
      const withTable: number[] = [];
      const tableState = await must('ip', ['netns', 'exec', netdd, 'nft', 'list', 'ruleset']);
      for (let r = 0; r < IPERF_ROUNDS; r++) {
        for (const f of ['bridge', 'inet', 'arp']) await nft.run(`delete table ${f} ${spec.table}`);
        without.push(await iperf());
        await nft.run(tableState);
        withTable.push(await iperf());
      }
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      results.push(
        {
          name: 'bridge throughput, no table',
          value: round(med(without) / 1e9),
          unit: 'Gbit/s',
          note: `iperf3 -t ${IPERF_SECONDS}, median of ${IPERF_ROUNDS}`,
        },
        {
          name: 'bridge throughput, table + 1000 locked vifs',
          value: round(med(withTable) / 1e9),
          unit: 'Gbit/s',
        },
        {
          name: 'bridge throughput ratio (table / none)',
          // Each round measures both back to back: the median of the per-round
          // ratios cancels most of the machine's drift between rounds.
          value: round(med(withTable.map((w, i) => w / without[i]!))),
          unit: 'ratio',
          note: `median of ${IPERF_ROUNDS} paired rounds; target >= 0.95`,
        },
      );
    }
    return results;
  } finally {
    await monitor?.stop().catch(() => {});
    await nft.close().catch(() => {});
    for (const c of clients) await c.close().catch(() => {});
    await server?.close().catch(() => {});
    for (const c of children) c.kill('SIGKILL');
    for (const ns of namespaces.reverse()) await sh('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The simulator's xenstored as a child process, if its compiled entry sits beside this file. */
async function startXenstored(socketPath: string): Promise<ChildProcess | undefined> {
  const main = fileURLToPath(new URL('../src/sim/xenstored/main.js', import.meta.url));
  if (!existsSync(main)) return undefined;
  const code =
    'const m = await import(process.argv[1]); process.exitCode = await m.runXenstored(process.argv.slice(2));';
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', code, pathToFileURL(main).href, '--socket', socketPath],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"ready"')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`xenstored exited with ${c}`)));
  });
  return child;
}

export async function run(): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) {
    return [
      {
        name: 'net monitor',
        value: 0,
        unit: '-',
        note: 'skipped: needs root (namespaces, nftables)',
      },
    ];
  }
  for (const tool of ['/usr/sbin/nft', '/usr/bin/python3', '/usr/sbin/ip']) {
    if (!existsSync(tool)) {
      return [{ name: 'net monitor', value: 0, unit: '-', note: `skipped: ${tool} missing` }];
    }
  }
  return measure();
}
