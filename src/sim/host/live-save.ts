// zynclone-livesave in the simulator: the same argv, JSON lines and exit
// statuses as helpers/livesave (see its README), run by the daemon on the
// domains it owns. The launcher relays the go-ahead line from its stdin; its
// death (the connection closing) is the helper's death: the copy stops with
// the domain running, a held domain is resumed.
import { isAbsolute, resolve } from 'node:path';
import type { DomainManager } from './domains.js';
import { LibxlError } from './domains.js';

const USAGE =
  'usage: zynclone-livesave [--hold] [--verbose] DOMAIN FILE\n' +
  '       zynclone-livesave --resume [--verbose] DOMAIN\n';

export interface LiveSaveIo {
  readonly cwd: string;
  out(text: string): void;
  err(text: string): void;
  /** Resolves on the caller's go-ahead line (or when it goes away). */
  goAhead(): Promise<void>;
  /** Aborted when the caller goes away. */
  readonly signal: AbortSignal;
}

interface Args {
  help: boolean;
  hold: boolean;
  resume: boolean;
  domain: string;
  file: string;
}

/** helpers/livesave/args.c, in TypeScript; returns what is wrong or the arguments. */
export function parseLiveSaveArgs(argv: readonly string[]): Args | string {
  const a: Args = { help: false, hold: false, resume: false, domain: '', file: '' };
  const positional: string[] = [];
  let optionsDone = false;
  for (const arg of argv) {
    if (!optionsDone && arg.length > 1 && arg.startsWith('-')) {
      if (arg === '--') optionsDone = true;
      else if (arg === '--hold') a.hold = true;
      else if (arg === '--resume') a.resume = true;
      else if (arg === '--verbose') continue;
      else if (arg === '--help' || arg === '-h') a.help = true;
      else return 'unknown option';
      continue;
    }
    if (positional.length === 2) return 'too many arguments';
    positional.push(arg);
  }
  if (a.help) return a;
  if (a.resume && a.hold) return '--hold and --resume exclude each other';
  const wanted = a.resume ? 1 : 2;
  if (positional.length < wanted) return a.resume ? 'missing DOMAIN' : 'missing DOMAIN or FILE';
  if (positional.length > wanted) return 'too many arguments';
  const [domain, file] = positional as [string, string | undefined];
  if (domain === '' || domain.startsWith('-') || domain.length >= 256) {
    return 'DOMAIN must be a domain id or name';
  }
  a.domain = domain;
  if (!a.resume) {
    if (file === '') return 'FILE is empty';
    a.file = file ?? '';
  }
  return a;
}

export async function runLiveSave(
  dm: DomainManager,
  argv: readonly string[],
  io: LiveSaveIo,
): Promise<number> {
  const a = parseLiveSaveArgs(argv);
  if (typeof a === 'string') {
    io.err(`zynclone-livesave: ${a}\n${USAGE}`);
    return 2;
  }
  if (a.help) {
    io.out(USAGE);
    return 0;
  }
  const line = (v: Record<string, unknown>) => io.out(`${JSON.stringify(v)}\n`);
  const fail = (code: string, message: string) => {
    line({ event: 'error', code, message });
    return 1;
  };
  const d = /^\d+$/.test(a.domain) ? dm.get(Number(a.domain)) : dm.byName(a.domain);
  if (d === undefined) return fail('NO_DOMAIN', `no domain ${a.domain}`);
  if (d.domid === 0) return fail('DOM0', 'refusing to save domain 0');
  if (a.resume) {
    if (!(await dm.resumeSuspended(d))) {
      return fail('NOT_SUSPENDED', `domain ${d.domid} is not suspended`);
    }
    line({ event: 'resumed', domid: d.domid });
    return 0;
  }
  const file = isAbsolute(a.file) ? a.file : resolve(io.cwd, a.file);
  try {
    const r = await dm.liveSave(d, file, {
      signal: io.signal,
      onSuspended: () => {
        if (a.hold) line({ event: 'suspended', domid: d.domid });
      },
      hold: () => (a.hold ? io.goAhead() : Promise.resolve()),
    });
    line({ event: 'saved', domid: d.domid, file: a.file, ...r });
    return 0;
  } catch (err) {
    if (err instanceof LibxlError) {
      return fail(
        err.code === 'XL_FAILED' ? 'SUSPEND' : err.code,
        err.code === 'NO_LOG_DIRTY'
          ? err.message
          : `live save of domain ${d.domid} failed: ${err.message}`,
      );
    }
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST' || e.code === 'ENOENT' || e.code === 'EACCES') {
      return fail('OPEN', `cannot create ${a.file}: ${e.message}`);
    }
    throw err;
  }
}
