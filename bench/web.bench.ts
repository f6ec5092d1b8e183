// `zynclone web` against the simulator (plain storage, no network; a stand-in
// acknowledges lockdowns): API latency of list and status with 100 clones,
// each against the same core call made in-process (what HTTP, auth and JSON
// add); events delivered per second to 50 open live views while the state
// store changes; and the time from a `vmclone stop` on the CLI to the live
// view showing it (event received by an SSE client), next to how long the
// stop command itself takes.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CloneLifecycle } from '../src/core/clones/lifecycle.js';
import { validateVmName, zynclonePaths } from '../src/core/paths.js';
import { openStateStore } from '../src/core/state/index.js';
import { createLogger } from '../src/daemons/common/log.js';
import { startWebServer } from '../src/web/server.js';
import { XlDriver } from '../src/xen/index.js';
import { ackEveryGeneration, sh, simDemo, simEnv } from './sim-host.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const zynclone = resolve(here, '../src/bin/zynclone.js');
const vmcloneBin = resolve(here, '../src/bin/vmclone.js');
const CLONES = 100;
const PAGES = 50;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timed(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return ms.sort((a, b) => a - b);
}

/** An SSE client: calls `onEvent` for each event; `close()` ends it. */
async function follow(
  url: string,
  token: string,
  onEvent: (event: string, data: string) => void,
): Promise<{ close(): void }> {
  const ctrl = new AbortController();
  const r = await fetch(new URL('/api/v1/events', url), {
    headers: { Authorization: `Bearer ${token}` },
    signal: ctrl.signal,
  });
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        onEvent(event, /^data: (.*)$/m.exec(block)?.[1] ?? '');
      }
    }
  })().catch(() => {});
  return { close: () => ctrl.abort() };
}

export async function run(): Promise<BenchResult[]> {
  const base = mkdtempSync(join(tmpdir(), 'zc-bench-web-'));
  const root = join(base, 'root');
  const env = simEnv(root);
  const results: BenchResult[] = [];
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  try {
    await simDemo(root, env);
    cleanups.push(() => sh(process.execPath, [zynclone, 'sim', 'down', '--root', root], env));
    const paths = zynclonePaths(root);
    const socket = join(root, 'run/xenstored/socket');

    // No network in this run: a stand-in acks the lockdown.
    cleanups.push(await ackEveryGeneration(socket));

    // 100 clone records (no domains): what list and status read.
    const store = openStateStore({ paths });
    cleanups.push(() => store.close());
    for (let i = 0; i < CLONES; i++) {
      store.putClone({
        vm: `vm${i}`,
        cloneName: `vm${i}-clone`,
        state: 'active',
        kind: 'offline',
        sourceUuid: '00000000-0000-4000-8000-000000000000',
        requestedBy: 'system:bench',
      });
    }

    const server = await startWebServer({
      paths,
      xenstorePath: socket,
      env,
      host: '127.0.0.1',
      port: 0,
      log: createLogger('web', { level: 'error' }),
    });
    cleanups.push(() => server.close());
    const token = readFileSync(join(root, 'var/lib/zynclone/web/admin-token'), 'utf8').trim();
    const get = async (path: string) => {
      const r = await fetch(new URL(path, server.url), {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
      return r.json();
    };

    // ---- API latency ------------------------------------------------------
    const lc = new CloneLifecycle({
      paths,
      store,
      xl: new XlDriver({ env }),
      xs: async () => server.core.xs(),
      requestedBy: 'system:bench',
    });
    for (const [name, n, api, direct] of [
      ['list', 300, () => get('/api/v1/clones'), async () => JSON.stringify(lc.list())],
      [
        'status',
        40,
        () => get('/api/v1/clones/vm42'),
        async () => JSON.stringify(await lc.status(validateVmName('vm42'))),
      ],
    ] as const) {
      await api();
      const viaApi = await timed(n, api);
      const inProcess = await timed(n, direct);
      const note = `${CLONES} clones, ${n} requests; in-process core call p50 ${percentile(inProcess, 50).toFixed(2)} ms`;
      results.push(
        { name: `GET ${name} p50`, value: percentile(viaApi, 50), unit: 'ms', note },
        { name: `GET ${name} p99`, value: percentile(viaApi, 99), unit: 'ms' },
        {
          name: `GET ${name} p50 / core call p50`,
          value: percentile(viaApi, 50) / percentile(inProcess, 50),
          unit: 'ratio',
          note: name === 'status' ? 'status runs xl list (a process start)' : undefined,
        },
      );
    }

    // ---- events to 50 pages -----------------------------------------------
    let delivered = 0;
    const pages = await Promise.all(
      Array.from({ length: PAGES }, () =>
        follow(server.url, token, (event) => {
          if (event === 'clone') delivered++;
        }),
      ),
    );
    cleanups.push(() => {
      for (const p of pages) p.close();
    });
    await new Promise((r) => setTimeout(r, 500));
    delivered = 0;
    // The changes come from another process, as vmclone's do.
    const windowMs = 3000;
    const storeModule = pathToFileURL(resolve(here, '../src/core/state/index.js')).href;
    const writerOut = await sh(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { openStateStore } from ${JSON.stringify(storeModule)};
         const store = openStateStore({ file: ${JSON.stringify(paths.stateDb)} });
         let n = 0;
         for (const end = Date.now() + ${windowMs}; Date.now() < end; n++) {
           store.updateClone('vm' + (n % ${CLONES}), { state: n % 2 === 0 ? 'inactive' : 'active' });
         }
         store.close();
         process.stdout.write(String(n));`,
      ],
      env,
    );
    const changes = Number(writerOut);
    await new Promise((r) => setTimeout(r, 500));
    const seconds = windowMs / 1000;
    results.push(
      {
        name: `events delivered to ${PAGES} pages`,
        value: Math.round(delivered / seconds),
        unit: 'events/s',
        note: `${changes} store commits in ${seconds} s (${Math.round(changes / seconds)}/s), changes coalesced per pass`,
      },
      {
        name: 'events per page / store commits',
        value: delivered / PAGES / changes,
        unit: 'ratio',
        note: '1: every commit reached every page as its own event',
      },
    );
    for (const p of pages) p.close();

    // ---- CLI stop to live view ----------------------------------------------
    for (let i = 0; i < CLONES; i++) store.deleteClone(`vm${i}`);
    await sh('xl', ['shutdown', '-w', 'db01'], env);
    await sh(
      process.execPath,
      [vmcloneBin, 'config', 'db01', '--set', 'storage_backend=copy'],
      env,
    );
    await sh(
      process.execPath,
      [vmcloneBin, 'create', 'db01', '--offline', '--no-start', '-q'],
      env,
    );
    const toView: number[] = [];
    const afterExit: number[] = [];
    const commandMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      await sh(process.execPath, [vmcloneBin, 'start', 'db01', '-q'], env);
      let shownAt: number | undefined;
      let shown: () => void = () => {};
      const seen = new Promise<void>((r) => {
        shown = r;
      });
      const page = await follow(server.url, token, (event, data) => {
        if (event !== 'clone' || shownAt !== undefined) return;
        const v = JSON.parse(data) as { vm: string; clone: { state: string } | null };
        if (v.vm === 'db01' && v.clone?.state === 'active') {
          shownAt = performance.now();
          shown();
        }
      });
      const t0 = performance.now();
      const child: ChildProcess = spawn(
        process.execPath,
        [vmcloneBin, 'stop', 'db01', '--force', '-q'],
        {
          env,
          stdio: 'ignore',
        },
      );
      const exitedAt = await new Promise<number>((r) =>
        child.once('exit', () => r(performance.now())),
      );
      await seen;
      page.close();
      toView.push(shownAt! - t0);
      afterExit.push(shownAt! - exitedAt);
      commandMs.push(exitedAt - t0);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    results.push(
      {
        name: 'vmclone stop -> live view',
        value: median(toView),
        unit: 'ms',
        note: `median of 5, from the command's start; the command itself takes ${median(commandMs).toFixed(0)} ms`,
      },
      {
        name: 'live view after vmclone exits',
        value: median(afterExit),
        unit: 'ms',
        note: 'negative: shown before the command exited',
      },
    );
    await sh(process.execPath, [vmcloneBin, 'remove', 'db01', '-q'], env);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  }
  return results;
}
