// The orchestrator bench's baseline: a dom0 process that answers each guest
// request with `accepted` the way the orchestrator writes it (one read of the
// request node, one transaction for the reply nodes) and does nothing else:
// no policy, state store, log, rate limit or operation. Its latency is the
// floor of the protocol on this machine at this moment.
// argv: SOCKET GUESTS. Serves domains 1..GUESTS; prints "ready" when it does.
import {
  PROTOCOL_VERSION,
  REPLY_ROOT,
  REQUEST_NODE,
  parseRequest,
  replyNodes,
} from '../src/daemons/orchestrator/protocol.js';
import { XsClient } from '../src/xenstore/client.js';

const [socket, guests] = process.argv.slice(2);
const xs = await XsClient.connect({ path: socket!, transport: 'socket' });

async function serve(domid: number): Promise<void> {
  const root = `/local/domain/${domid}/${REPLY_ROOT}`;
  const node = `/local/domain/${domid}/${REQUEST_NODE}`;
  await xs.transaction(async (tx) => {
    await tx.mkdir(root);
    await tx.setPerms(root, [
      { domid: 0, access: 'none' },
      { domid, access: 'read' },
    ]);
    await tx.write(`${root}/protocol`, PROTOCOL_VERSION);
  });
  const watch = await xs.watch(node);
  void (async () => {
    for await (const item of watch) {
      if (item.kind !== 'event') continue;
      const raw = await xs.readBuffer(node).catch(() => undefined);
      if (raw === undefined) continue;
      const { id, op } = parseRequest(raw);
      const reply = `${root}/reply/${id}`;
      await xs.transaction(async (tx) => {
        await Promise.all([
          tx.tryRead(`${root}/protocol`),
          tx.rm(reply).catch(() => {}),
          ...Object.entries(replyNodes({ state: 'accepted', op, message: 'accepted' })).map(
            ([k, v]) => tx.write(`${reply}/${k}`, v),
          ),
        ]);
      });
    }
  })();
}

for (let domid = 1; domid <= Number(guests); domid++) await serve(domid);
process.stdout.write('ready\n');
