// The control socket between the xl front end (and `sim down`) and the
// daemon: one JSON object per line each way. A request is answered by any
// number of {out}/{err} chunks and one final {exit} (or {ok}/{error}).
import { createConnection } from 'node:net';

export type ControlRequest =
  | { op: 'xl'; argv: string[]; cwd: string; fault?: string }
  | { op: 'guest'; argv: string[] }
  /** zynclone-livesave; the client then sends `{"go":true}` to end a --hold. */
  | { op: 'livesave'; argv: string[]; cwd: string }
  | { op: 'ping' }
  | { op: 'stop' };

export type ControlReply =
  | { out: string }
  | { err: string }
  | { exit: number }
  | { ok: true; pid: number; network: boolean; reason?: string }
  | { error: string; code: string };

export function isFinal(r: ControlReply): boolean {
  return 'exit' in r || 'ok' in r || 'error' in r;
}

/** Sends one request; `onChunk` sees every reply, the promise resolves with the final one. */
export function controlRequest(
  socketPath: string,
  req: ControlRequest,
  onChunk: (r: ControlReply) => void = () => {},
  timeoutMs = 0,
): Promise<ControlReply> {
  return new Promise((resolveReq, reject) => {
    const sock = createConnection(socketPath);
    let buf = '';
    let done = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            sock.destroy();
            if (!done)
              reject(
                Object.assign(new Error('control request timed out'), { code: 'SIM_TIMEOUT' }),
              );
          }, timeoutMs)
        : undefined;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line === '') continue;
        const r = JSON.parse(line) as ControlReply;
        onChunk(r);
        if (isFinal(r)) {
          done = true;
          if (timer) clearTimeout(timer);
          sock.end();
          resolveReq(r);
          return;
        }
      }
    });
    sock.on('error', (err) => {
      if (timer) clearTimeout(timer);
      if (!done) reject(err);
    });
    sock.on('close', () => {
      if (timer) clearTimeout(timer);
      if (!done)
        reject(
          Object.assign(new Error('the simulator closed the connection'), { code: 'SIM_GONE' }),
        );
    });
  });
}
