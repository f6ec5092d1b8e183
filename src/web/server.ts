import type { Server } from 'node:http';
/**
 * `zynclone web`'s server: the app on @hono/node-server, over HTTP or TLS,
 * with the live view and the metrics it reads from.
 */
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { ZynclonePaths } from '../core/paths.js';
import type { DaemonLogger } from '../daemons/common/log.js';
import { buildApp } from './app.js';
import { ensureToken, tokenFiles } from './auth.js';
import { dashboardBundle } from './bundle.js';
import { CoreHost } from './host.js';
import { LiveFeed } from './live.js';
import { WebMetrics } from './metrics.js';

export interface WebServerOptions {
  readonly paths: ZynclonePaths;
  readonly xenstorePath: string;
  readonly env: NodeJS.ProcessEnv;
  readonly host: string;
  /** 0: any free port. */
  readonly port: number;
  /** PEM certificate chain and key: serve HTTPS. */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly netns?: string;
  readonly log: DaemonLogger;
}

export interface WebServer {
  readonly url: string;
  readonly core: CoreHost;
  readonly feed: LiveFeed;
  close(): Promise<void>;
}

export async function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const tokens = tokenFiles(o.paths);
  const adminToken = ensureToken(tokens.admin);
  const metricsToken = ensureToken(tokens.metrics);
  const core = new CoreHost({
    paths: o.paths,
    xenstorePath: o.xenstorePath,
    env: o.env,
    ...(o.netns === undefined ? {} : { netns: o.netns }),
  });
  const live = new LiveFeed(core, {
    onOperationFinished: (op) => metrics.observeOperation(op),
    onError: (what, err) => o.log.warn(what, { error: err }),
  });
  const metrics = new WebMetrics(live, () => core.xs());
  try {
    await live.start();
  } catch (err) {
    await live.stop().catch(() => {});
    await core.close();
    throw err;
  }
  const app = buildApp({
    host: core,
    feed: live,
    adminToken,
    metricsToken,
    metrics,
    bundle: dashboardBundle,
    tls: o.tls !== undefined,
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        hostname: o.host,
        port: o.port,
        ...(o.tls
          ? { createServer: createHttpsServer, serverOptions: { cert: o.tls.cert, key: o.tls.key } }
          : {}),
      },
      () => resolve(s as Server),
    );
    s.once('error', reject);
  }).catch(async (err) => {
    await live.stop();
    await core.close();
    throw err;
  });
  const addr = server.address() as AddressInfo;
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${o.tls ? 'https' : 'http'}://${hostPart}:${addr.port}/`;
  return {
    url,
    core,
    feed: live,
    async close() {
      await live.stop();
      await new Promise<void>((r) => {
        server.close(() => r());
        // Live views never end by themselves.
        server.closeAllConnections();
      });
      await core.close();
    },
  };
}
