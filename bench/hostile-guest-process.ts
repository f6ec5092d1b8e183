// The orchestrator bench's hostile guest, in a process of its own as a
// separate VM would be: its watch flood's events then cost the hostile side,
// not the process that times the well-behaved guests. It lives through the
// quiet phases too (connected, its watches set, idle), so that quiet and
// flood are measured with the same processes.
// argv: SOCKET. Prints "ready" once its watches are set; then for each line
// "flood N" on stdin floods N writes and prints its FloodResult as one JSON
// line. Exits when stdin closes.
import { createInterface } from 'node:readline';
import { REQUEST_NODE } from '../src/daemons/orchestrator/protocol.js';
import { flood, hostileOps, watchFlood } from '../src/sim/host/hostile-guest.js';
import { XsClient } from '../src/xenstore/client.js';

const [socket] = process.argv.slice(2);
const xs = await XsClient.connect({ path: socket!, transport: 'socket', reconnect: false });
await watchFlood(xs, [REQUEST_NODE, 'zynclone/reply', 'data'], 128);
process.stdout.write('ready\n');
let seed = 42;
for await (const line of createInterface({ input: process.stdin })) {
  const writes = /^flood (\d+)$/.exec(line)?.[1];
  if (writes === undefined) continue;
  const result = await flood(xs, hostileOps(REQUEST_NODE, Number(writes), seed++), 64);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
await xs.close();
