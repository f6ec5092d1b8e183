// The orchestrator bench's hostile guest, in a process of its own as a
// separate VM would be: its watch flood's events then cost the hostile side,
// not the process that times the well-behaved guests.
// argv: SOCKET WRITES. Prints "ready" once its watches are set, then floods
// and prints its FloodResult as one JSON line.
import { REQUEST_NODE } from '../src/daemons/orchestrator/protocol.js';
import { flood, hostileOps, watchFlood } from '../src/sim/host/hostile-guest.js';
import { XsClient } from '../src/xenstore/client.js';

const [socket, writes] = process.argv.slice(2);
const xs = await XsClient.connect({ path: socket!, transport: 'socket', reconnect: false });
await watchFlood(xs, [REQUEST_NODE, 'zynclone/reply', 'data'], 128);
process.stdout.write('ready\n');
const result = await flood(xs, hostileOps(REQUEST_NODE, Number(writes), 42), 64);
process.stdout.write(`${JSON.stringify(result)}\n`);
await xs.close();
