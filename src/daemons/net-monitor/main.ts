// `zynclone net-monitor`: the network domain's part of ZynClone. It reads
// only XenStore and keeps one nftables table of its own (nft-script.ts).
import { packageVersion } from '../../cli/version.js';
import { checkTableSpec } from '../../core/lockdown/nft-script.js';
import { VM_ROOT } from '../../core/xenstore/index.js';
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from '../common/heartbeat.js';
import { createLogger } from '../common/log.js';
import {
  connectUntilStopped,
  parseDaemonArgs,
  stopOnSignal,
  xenstoreSocket,
} from '../common/process.js';
import { NetMonitor, ensureTable } from './monitor.js';
import { type NftBackend, NftError, createNftExecutor } from './nft-exec.js';

export const DAEMON_NAME = 'net-monitor';

const USAGE = `usage: zynclone net-monitor [options]

  --xenstore PATH          XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --netns NAME             run nft inside this network namespace (default $ZYNCLONE_NETNS, else the current one)
  --table NAME             nftables table name, in families bridge, inet and arp (default zynclone)
  --clone-vif-prefix STR   interface name prefix of clone vifs (default zcv)
  --nft-backend KIND       libnftables (a kept-open context, default) or cli (nft -f - per change)
  --heartbeat-ms N         heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
`;

export async function runNetMonitor(argv: string[]): Promise<number> {
  const values = parseDaemonArgs(DAEMON_NAME, USAGE, argv, {
    xenstore: { type: 'string' },
    netns: { type: 'string' },
    table: { type: 'string', default: 'zynclone' },
    'clone-vif-prefix': { type: 'string', default: 'zcv' },
    'nft-backend': { type: 'string', default: 'libnftables' },
    'heartbeat-ms': { type: 'string', default: String(DEFAULT_HEARTBEAT_MS) },
  });
  if (typeof values === 'number') return values;
  const spec = {
    table: values.table as string,
    cloneVifPrefix: values['clone-vif-prefix'] as string,
  };
  const backend = values['nft-backend'] as string;
  const heartbeatMs = Number(values['heartbeat-ms']);
  try {
    checkTableSpec(spec);
    if (backend !== 'libnftables' && backend !== 'cli') {
      throw new Error(`--nft-backend must be libnftables or cli, not ${JSON.stringify(backend)}`);
    }
    if (!Number.isInteger(heartbeatMs) || heartbeatMs < 100) {
      throw new Error('--heartbeat-ms must be an integer of at least 100');
    }
  } catch (err) {
    process.stderr.write(`zynclone net-monitor: ${(err as Error).message}\n`);
    return 2;
  }
  const socket = xenstoreSocket(values);
  const netns = (values.netns as string | undefined) ?? (process.env.ZYNCLONE_NETNS || undefined);
  const version = packageVersion();
  const log = createLogger(DAEMON_NAME);

  let nft = createNftExecutor({ netns, backend: backend as NftBackend });
  const stop = stopOnSignal(log, 'stopping; the nftables table stays as it is');

  log.info('starting', { version, socket, netns, ...spec, backend });
  // The standing rule first: clone vifs are dropped before we know anything else.
  try {
    let created: string[];
    try {
      created = await ensureTable(nft, spec);
    } catch (err) {
      if (!(err instanceof NftError && err.code === 'NFT_UNAVAILABLE' && nft.backend !== 'cli')) {
        throw err;
      }
      // No python3 or libnftables here: slower, but the same transactions.
      log.warn('libnftables helper unavailable; using nft -f - per change', { error: err });
      await nft.close();
      nft = createNftExecutor({ netns, backend: 'cli' });
      created = await ensureTable(nft, spec);
    }
    log.info(created.length ? 'nftables table created' : 'nftables table present, kept', {
      created,
    });
  } catch (err) {
    log.error('cannot set up the nftables table', { error: err });
    await nft.close();
    return 1;
  }

  const xs = await connectUntilStopped(
    socket,
    log,
    stop,
    'xenstore unreachable; the table keeps its last state',
  );
  if (!xs) {
    await nft.close();
    return 0;
  }

  const monitor = new NetMonitor({ xs, nft, spec, log });
  const heartbeat = startHeartbeat(xs, DAEMON_NAME, version, heartbeatMs, log);
  try {
    await monitor.start();
    log.info('watching', { path: VM_ROOT });
    await stop.stopped;
  } catch (err) {
    log.error('net monitor failed', { error: err });
    return 1;
  } finally {
    heartbeat.stop();
    await monitor.stop();
    await xs.close().catch(() => {});
    await nft.close();
  }
  return 0;
}
