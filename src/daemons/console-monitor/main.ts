// `zynclone console-monitor`: the console domain's part of ZynClone (dom0 on
// a plain Xen host). It learns everything from XenStore, reaches the clones'
// VNC servers over the network, and never runs xl or reads the state store.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ZyncloneConfig, defaultConfig, readBaseConfig } from '../../core/config/index.js';
import { type ZynclonePaths, zynclonePaths } from '../../core/paths.js';
import { intOption, runDaemon } from '../common/daemon.js';
import { DEFAULT_HEARTBEAT_MS } from '../common/heartbeat.js';
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

export function runConsoleMonitor(argv: string[]): Promise<number> {
  return runDaemon(
    {
      name: DAEMON_NAME,
      usage: USAGE,
      options: {
        root: { type: 'string' },
        'reject-delay-ms': { type: 'string', default: String(DEFAULT_REJECT_DELAY_MS) },
        assets: { type: 'string', default: process.env.ZYNCLONE_CONSOLE_ASSETS ?? DEFAULT_ASSETS },
      },
      parse: (values) => {
        const rejectDelayMs = intOption(
          'reject-delay-ms',
          values['reject-delay-ms'] as string,
          0,
          60_000,
        );
        const paths = zynclonePaths(values.root as string | undefined);
        const config = { ...defaultConfig(), ...readBaseConfig(paths) };
        const tls = tlsFiles(paths, config);
        return {
          rejectDelayMs,
          assetsDir: values.assets as string,
          listen: { host: config.console_listen, port: config.console_port },
          tls,
          splice: spliceHelper(paths, config, tls !== undefined),
        };
      },
      describe: (o) => ({ ...o.listen, tls: o.tls !== undefined, splice: o.splice }),
      stopMessage: 'stopping; open consoles are closed',
      failure: 'console monitor failed',
      serve: async ({ xs, options: o, log, serving }) => {
        const monitor = new ConsoleMonitor({
          xs,
          log,
          listen: o.listen,
          tls: o.tls,
          assetsDir: o.assetsDir,
          rejectDelayMs: o.rejectDelayMs,
          splice: o.splice,
        });
        try {
          const url = await monitor.start();
          log.info('serving', { url });
          await serving();
        } finally {
          await monitor.stop().catch(() => {});
        }
      },
    },
    argv,
  );
}

/** The splice helper named by base.json, or why VNC -> browser bytes are copied by the proxy. */
function spliceHelper(
  paths: ZynclonePaths,
  config: ZyncloneConfig,
  tls: boolean,
): { helper: string } | { whyNot: string } {
  if (config.console_splice_helper === '') return { whyNot: 'console_splice_helper is empty' };
  if (tls) return { whyNot: 'TLS (splice cannot see through it)' };
  const helper = paths.resolve(config.console_splice_helper);
  return existsSync(helper) ? { helper } : { whyNot: `no splice helper at ${helper}` };
}

/** The TLS certificate and key named by base.json (both or neither), read. */
function tlsFiles(
  paths: ZynclonePaths,
  config: ZyncloneConfig,
): { cert: Buffer; key: Buffer } | undefined {
  const { console_tls_cert: certFile, console_tls_key: keyFile } = config;
  if ((certFile === '') !== (keyFile === '')) {
    throw new Error(
      `${paths.baseConfigFile}: console_tls_cert and console_tls_key must be set together`,
    );
  }
  if (certFile === '') return undefined;
  const read = (file: string, key: string) => {
    try {
      return readFileSync(paths.resolve(file));
    } catch (err) {
      throw new Error(`${key} ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: read(certFile, 'console_tls_cert'), key: read(keyFile, 'console_tls_key') };
}
