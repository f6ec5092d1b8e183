// `zynclone net-monitor`: the network domain's part of ZynClone. It reads
// only XenStore and keeps one nftables table of its own (nft-script.ts).
import { type NftTableSpec, checkTableSpec } from '../../core/lockdown/nft-script.js';
import { VM_ROOT } from '../../core/xenstore/index.js';
import { runDaemon } from '../common/daemon.js';
import { DEFAULT_HEARTBEAT_MS } from '../common/heartbeat.js';
import type { DaemonLogger } from '../common/log.js';
import { NetMonitor, ensureTable } from './monitor.js';
import { type NftBackend, NftError, type NftExecutor, createNftExecutor } from './nft-exec.js';

export const DAEMON_NAME = 'net-monitor';

const USAGE = `usage: zynclone net-monitor [options]

  --xenstore PATH          XenStore socket (default $XENSTORED_PATH or /run/xenstored/socket)
  --netns NAME             run nft inside this network namespace (default $ZYNCLONE_NETNS, else the current one)
  --table NAME             nftables table name, in families bridge, inet and arp (default zynclone)
  --clone-vif-prefix STR   interface name prefix of clone vifs (default zcv)
  --nft-backend KIND       libnftables (a kept-open context, default) or cli (nft -f - per change)
  --heartbeat-ms N         heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
`;

export function runNetMonitor(argv: string[]): Promise<number> {
  return runDaemon(
    {
      name: DAEMON_NAME,
      usage: USAGE,
      options: {
        netns: { type: 'string' },
        table: { type: 'string', default: 'zynclone' },
        'clone-vif-prefix': { type: 'string', default: 'zcv' },
        'nft-backend': { type: 'string', default: 'libnftables' },
      },
      parse: (values) => {
        const spec = {
          table: values.table as string,
          cloneVifPrefix: values['clone-vif-prefix'] as string,
        };
        checkTableSpec(spec);
        const backend = values['nft-backend'] as string;
        if (backend !== 'libnftables' && backend !== 'cli') {
          throw new Error(
            `--nft-backend must be libnftables or cli, not ${JSON.stringify(backend)}`,
          );
        }
        const netns =
          (values.netns as string | undefined) ?? (process.env.ZYNCLONE_NETNS || undefined);
        return { spec, backend: backend as NftBackend, netns };
      },
      describe: (o) => ({ netns: o.netns, ...o.spec, backend: o.backend }),
      stopMessage: 'stopping; the nftables table stays as it is',
      waitMessage: 'xenstore unreachable; the table keeps its last state',
      // The standing rule first: clone vifs are dropped before we know anything else.
      prepare: (o, log) => standingTable(o, log),
      prepareFailure: 'cannot set up the nftables table',
      release: (nft) => nft.close(),
      failure: 'net monitor failed',
      serve: async ({ xs, options: o, prepared: nft, log, serving }) => {
        const monitor = new NetMonitor({ xs, nft, spec: o.spec, log });
        try {
          await monitor.start();
          log.info('watching', { path: VM_ROOT });
          await serving();
        } finally {
          await monitor.stop();
        }
      },
    },
    argv,
  );
}

/** An nftables executor with the table and its standing drop rule in place. */
async function standingTable(
  o: { spec: NftTableSpec; backend: NftBackend; netns: string | undefined },
  log: DaemonLogger,
): Promise<NftExecutor> {
  let nft = createNftExecutor({ netns: o.netns, backend: o.backend });
  try {
    let created: string[];
    try {
      created = await ensureTable(nft, o.spec);
    } catch (err) {
      if (!(err instanceof NftError && err.code === 'NFT_UNAVAILABLE' && nft.backend !== 'cli')) {
        throw err;
      }
      // No python3 or libnftables here: slower, but the same transactions.
      log.warn('libnftables helper unavailable; using nft -f - per change', { error: err });
      await nft.close();
      nft = createNftExecutor({ netns: o.netns, backend: 'cli' });
      created = await ensureTable(nft, o.spec);
    }
    log.info(created.length ? 'nftables table created' : 'nftables table present, kept', {
      created,
    });
    return nft;
  } catch (err) {
    await nft.close();
    throw err;
  }
}
