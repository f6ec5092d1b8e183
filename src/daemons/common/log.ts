// Structured logs for every daemon: one JSON object per line on stdout, so
// journald keeps each record whole and `jq` can read them. Fields that are
// Errors become their message and code; a field can never break the line.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface DaemonLogger {
  readonly component: string;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose records also carry these fields. */
  child(fields: Record<string, unknown>): DaemonLogger;
}

export interface LoggerOptions {
  /** Records below this level are dropped (default: $ZYNCLONE_LOG_LEVEL or 'info'). */
  level?: LogLevel;
  /** Where lines go (default: process.stdout). */
  write?: (line: string) => void;
  now?: () => Date;
}

function levelFromEnv(): LogLevel {
  const v = process.env.ZYNCLONE_LOG_LEVEL;
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : 'info';
}

function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? { message: value.message } : { message: value.message, code };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function createLogger(component: string, opts: LoggerOptions = {}): DaemonLogger {
  const min = LEVELS[opts.level ?? levelFromEnv()];
  const write = opts.write ?? ((line: string) => process.stdout.write(line));
  const now = opts.now ?? (() => new Date());

  const make = (bound: Record<string, unknown>): DaemonLogger => {
    const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
      if (LEVELS[level] < min) return;
      const rec: Record<string, unknown> = { time: now().toISOString(), level, component, msg };
      for (const [k, v] of Object.entries({ ...bound, ...fields })) {
        if (!(k in rec)) rec[k] = plain(v);
      }
      let line: string;
      try {
        line = JSON.stringify(rec);
      } catch {
        line = JSON.stringify({ time: rec.time, level, component, msg, fields: 'unserialisable' });
      }
      write(`${line}\n`);
    };
    return {
      component,
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (fields) => make({ ...bound, ...fields }),
    };
  };
  return make({});
}
