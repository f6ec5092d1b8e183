// `zynclone web`: the operator's dashboard and HTTP API (README.md here).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { packageVersion } from '../cli/version.js';
import { zynclonePaths, zyncloneRoot } from '../core/paths.js';
import { type Heartbeat, startHeartbeat } from '../daemons/common/heartbeat.js';
import { createLogger } from '../daemons/common/log.js';
import { stopOnSignal } from '../daemons/common/process.js';
import { defaultSocketPath } from '../xenstore/index.js';
import { startWebServer } from './server.js';

export const DEFAULT_LISTEN = '127.0.0.1:8450';

const USAGE = `usage: zynclone web [options]

  --listen HOST:PORT  where to serve (default ${DEFAULT_LISTEN}: loopback only;
                      [::1]:PORT for IPv6, port 0 for any free port)
  --tls-cert FILE     PEM certificate (chain): serve HTTPS (needs --tls-key)
  --tls-key FILE      PEM private key of the certificate
  --root DIR          root prefix of every ZynClone path (default $ZYNCLONE_ROOT or /)
  --xenstore PATH     XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --netns NAME        network namespace of the network domain, for the doctor
                      (default $ZYNCLONE_NETNS, else this one)

The admin token is created at first start (mode 0600) in
<root>/var/lib/zynclone/web/admin-token; the token for /metrics from other
hosts than loopback next to it, in metrics-token.
`;

/** `HOST:PORT` or `[V6]:PORT`. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new Error(
      `--listen must be HOST:PORT or [IPV6]:PORT with a port 0-65535, not ${JSON.stringify(text)}`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

export async function runWeb(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string', default: DEFAULT_LISTEN },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        root: { type: 'string' },
        xenstore: { type: 'string' },
        netns: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`zynclone web: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let listen: { host: string; port: number };
  let tls: { cert: string; key: string } | undefined;
  let paths: ReturnType<typeof zynclonePaths>;
  try {
    listen = parseListen(values.listen as string);
    const cert = values['tls-cert'] as string | undefined;
    const key = values['tls-key'] as string | undefined;
    if ((cert === undefined) !== (key === undefined))
      throw new Error('--tls-cert and --tls-key go together');
    if (cert !== undefined && key !== undefined) {
      tls = { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
    }
    paths = zynclonePaths((values.root as string | undefined) ?? zyncloneRoot());
  } catch (err) {
    process.stderr.write(`zynclone web: ${(err as Error).message}\n`);
    return 2;
  }
  const log = createLogger('web');
  const stop = stopOnSignal(log, 'stopping');
  const netns = (values.netns as string | undefined) ?? (process.env.ZYNCLONE_NETNS || undefined);
  let server: Awaited<ReturnType<typeof startWebServer>>;
  try {
    server = await startWebServer({
      paths,
      xenstorePath: (values.xenstore as string | undefined) ?? defaultSocketPath(process.env),
      env: process.env,
      ...listen,
      ...(tls ? { tls } : {}),
      ...(netns === undefined ? {} : { netns }),
      log,
    });
  } catch (err) {
    log.error('cannot start', { error: err });
    return 1;
  }
  log.info('serving', { url: server.url, root: paths.root });
  // Its health in XenStore, as the daemons': the page and the doctor read it.
  let heartbeat: Heartbeat | undefined;
  try {
    heartbeat = startHeartbeat(await server.core.xs(), 'web', packageVersion(), undefined, log);
  } catch (err) {
    log.warn('no heartbeat in XenStore: XenStore is not reachable', { error: err });
  }
  await stop.stopped;
  heartbeat?.stop();
  await server.close();
  return 0;
}
