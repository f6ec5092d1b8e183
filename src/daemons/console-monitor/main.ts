// `zynclone console-monitor`: the console domain's part of ZynClone (dom0 on
// a plain Xen host). It learns everything from XenStore, reaches the clones'
// VNC servers over the network, and never runs xl or reads the state store.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageVersion } from '../../cli/version.js';
import { defaultConfig, readBaseConfig } from '../../core/config/index.js';
import { zynclonePaths } from '../../core/paths.js';
import { daemonLeaf } from '../../core/xenstore/index.js';
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from '../common/heartbeat.js';
import { createLogger } from '../common/log.js';
import {
  connectUntilStopped,
  parseDaemonArgs,
  stopOnSignal,
  xenstoreSocket,
} from '../common/process.js';
import { ConsoleMonitor, DEFAULT_REJECT_DELAY_MS } from './monitor.js';

export const DAEMON_NAME = 'console-monitor';

/** Where `npm run build` puts the page: dist/console-page beside dist/src. */
export const DEFAULT_ASSETS = join(
  dirname(fileURLToPath(import.meta.url)),
  '../../../console-page',
);

const USAGE = `usage: zynclone console-monitor [options]

  --xenstore PATH        XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --root DIR             root prefix of every ZynClone path (default $ZYNCLONE_ROOT or /);
                         listen address, port and TLS files come from <root>/etc/xen/clone/base.json
  --heartbeat-ms N       heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
  --reject-delay-ms N    delay before answering a refused ticket (default ${DEFAULT_REJECT_DELAY_MS})
  --assets DIR           the built console page (default $ZYNCLONE_CONSOLE_ASSETS or
                         ${DEFAULT_ASSETS})
`;

function intOption(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) {
    throw new Error(
      `--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`,
    );
  }
  return n;
}

export async function runConsoleMonitor(argv: string[]): Promise<number> {
  const values = parseDaemonArgs(DAEMON_NAME, USAGE, argv, {
    xenstore: { type: 'string' },
    root: { type: 'string' },
    'heartbeat-ms': { type: 'string', default: String(DEFAULT_HEARTBEAT_MS) },
    'reject-delay-ms': { type: 'string', default: String(DEFAULT_REJECT_DELAY_MS) },
    assets: { type: 'string', default: process.env.ZYNCLONE_CONSOLE_ASSETS ?? DEFAULT_ASSETS },
  });
  if (typeof values === 'number') return values;
  let heartbeatMs: number;
  let rejectDelayMs: number;
  let config: ReturnType<typeof defaultConfig>;
  let tls: { cert: Buffer; key: Buffer } | undefined;
  try {
    heartbeatMs = intOption('heartbeat-ms', values['heartbeat-ms'] as string, 100, 3_600_000);
    rejectDelayMs = intOption('reject-delay-ms', values['reject-delay-ms'] as string, 0, 60_000);
    const paths =
      values.root === undefined ? zynclonePaths() : zynclonePaths(values.root as string);
    config = { ...defaultConfig(), ...readBaseConfig(paths) };
    const { console_tls_cert: certFile, console_tls_key: keyFile } = config;
    if ((certFile === '') !== (keyFile === '')) {
      throw new Error(
        `${paths.baseConfigFile}: console_tls_cert and console_tls_key must be set together`,
      );
    }
    if (certFile !== '') {
      const read = (file: string, key: string) => {
        try {
          return readFileSync(paths.resolve(file));
        } catch (err) {
          throw new Error(`${key} ${file}: ${(err as Error).message}`);
        }
      };
      tls = { cert: read(certFile, 'console_tls_cert'), key: read(keyFile, 'console_tls_key') };
    }
  } catch (err) {
    process.stderr.write(`zynclone console-monitor: ${(err as Error).message}\n`);
    return 2;
  }
  const socket = xenstoreSocket(values);
  const version = packageVersion();
  const log = createLogger(DAEMON_NAME);
  const stop = stopOnSignal(log, 'stopping; open consoles are closed');
  const listen = { host: config.console_listen, port: config.console_port };
  log.info('starting', { version, socket, ...listen, tls: tls !== undefined });

  const xs = await connectUntilStopped(socket, log, stop, 'xenstore unreachable; retrying');
  if (!xs) return 0;
  const monitor = new ConsoleMonitor({
    xs,
    log,
    listen,
    tls,
    assetsDir: values.assets as string,
    rejectDelayMs,
  });
  let heartbeat: ReturnType<typeof startHeartbeat> | undefined;
  try {
    const url = await monitor.start();
    await xs.write(daemonLeaf(DAEMON_NAME, 'heartbeat-ms'), String(heartbeatMs));
    heartbeat = startHeartbeat(xs, DAEMON_NAME, version, heartbeatMs, log);
    log.info('serving', { url });
    await stop.stopped;
  } catch (err) {
    log.error('console monitor failed', { error: err });
    return 1;
  } finally {
    heartbeat?.stop();
    await monitor.stop().catch(() => {});
    await xs.close().catch(() => {});
  }
  return 0;
}
