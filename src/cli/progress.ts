/**
 * Progress lines for long steps. On a terminal, a step shows as "... " and is
 * completed on the same line with its time; elsewhere (pipes, logs) every
 * event is one plain line. Colour only on a terminal and never with NO_COLOR
 * (https://no-color.org). Progress goes to stderr, results to stdout.
 */
import type { ProgressEvent } from '../core/clones/lifecycle.js';
import type { CliOutput } from './process-io.js';

export interface ProgressOptions {
  readonly stream?: CliOutput;
  readonly env?: NodeJS.ProcessEnv;
  /** --quiet: only warnings. */
  readonly quiet?: boolean;
}

export function useColor(
  stream: { isTTY?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return stream.isTTY === true && (env.NO_COLOR ?? '') === '' && env.TERM !== 'dumb';
}

export function createProgress(opts: ProgressOptions = {}): (e: ProgressEvent) => void {
  const out = opts.stream ?? process.stderr;
  // Looked up at the first line shown (a quiet command may show none): on
  // the process's stderr, isTTY loads node:tty.
  let tty = false;
  let color = false;
  let looked = false;
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  let open: string | undefined;
  const closeOpen = () => {
    if (open !== undefined && tty) out.write('\n');
    open = undefined;
  };
  // Progress of one copy: redrawn in place on a terminal, every 10% elsewhere.
  let lastTenth = -1;
  let progressShown = false;
  const endProgress = () => {
    if (progressShown && tty) out.write('\n');
    progressShown = false;
    lastTenth = -1;
  };
  return (e) => {
    if (opts.quiet && e.kind !== 'warn') return;
    if (!looked) {
      looked = true;
      tty = out.isTTY === true;
      color = useColor(out, opts.env);
    }
    if (e.kind !== 'progress') endProgress();
    switch (e.kind) {
      case 'progress': {
        const total = e.total ?? 0;
        const pct = total > 0 ? Math.min(100, Math.floor(((e.done ?? 0) * 100) / total)) : 100;
        const line = `${e.message}: ${pct}% of ${formatBytes(total)}`;
        if (tty) {
          if (!progressShown && open !== undefined) out.write('\n');
          open = undefined;
          out.write(`\r${line}\x1b[K`);
          progressShown = true;
        } else if (Math.floor(pct / 10) > lastTenth) {
          lastTenth = Math.floor(pct / 10);
          out.write(`${line}\n`);
        }
        return;
      }
      case 'step':
        closeOpen();
        if (tty) {
          out.write(`${e.message} ... `);
          open = e.message;
        } else {
          out.write(`${e.message} ...\n`);
        }
        return;
      case 'done': {
        const ms = e.ms === undefined ? '' : ` (${formatMs(e.ms)})`;
        if (tty && open === e.message) {
          out.write(`${paint('32', 'done')}${ms}\n`);
          open = undefined;
        } else {
          closeOpen();
          out.write(`${e.message}: done${ms}\n`);
        }
        return;
      }
      case 'info':
        closeOpen();
        out.write(`${e.message}\n`);
        return;
      case 'warn':
        closeOpen();
        out.write(`${paint('33', 'warning:')} ${e.message}\n`);
        return;
    }
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
