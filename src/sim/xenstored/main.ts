import { parseArgs } from 'node:util';
import { XenstoreServer } from './server.js';

const USAGE = 'usage: zynclone xenstored --socket PATH [--domain-socket-dir DIR]';

function logLine(rec: Record<string, unknown>): void {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), component: 'xenstored', ...rec })}\n`,
  );
}

/**
 * `zynclone xenstored`: runs the simulated XenStore daemon in the foreground
 * until SIGTERM or SIGINT; returns the exit status.
 */
export async function runXenstored(argv: string[]): Promise<number> {
  let socketPath: string | undefined;
  let domainSocketDir: string | undefined;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        'domain-socket-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    socketPath = values.socket;
    domainSocketDir = values['domain-socket-dir'];
  } catch (err) {
    process.stderr.write(`xenstored: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!socketPath) {
    process.stderr.write(`xenstored: --socket is required\n${USAGE}\n`);
    return 2;
  }

  let server: XenstoreServer;
  try {
    server = await XenstoreServer.start({
      socketPath,
      ...(domainSocketDir === undefined ? {} : { domainSocketDir }),
      logger: (rec) => {
        if (process.env.ZYNCLONE_XENSTORED_DEBUG) logLine(rec);
      },
    });
  } catch (err) {
    process.stderr.write(`xenstored: cannot listen on ${socketPath}: ${(err as Error).message}\n`);
    return 1;
  }
  // Signals are handled before 'ready' is printed: whoever waits for that
  // line may send SIGTERM right away.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      logLine({ event: 'stopping', signal });
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  logLine({
    event: 'ready',
    socket: socketPath,
    domainSocketDir: domainSocketDir ?? null,
    pid: process.pid,
  });
  await stopped;
  await server.close();
  return 0;
}
