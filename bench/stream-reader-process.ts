// One throughput reader in a process of its own, so that it shares neither an
// event loop nor a CPU account with the bench, the source or the proxy.
// argv: a JSON StreamTarget and the byte count. Prints drainStream's answer
// as one JSON line.
import { type StreamTarget, drainStream } from './stream-reader.js';

const [target, total] = process.argv.slice(2);
const drained = await drainStream(JSON.parse(target!) as StreamTarget, Number(total));
process.stdout.write(`${JSON.stringify(drained)}\n`);
