// Byte pipes to xenstored: its Unix socket in dom0, /dev/xen/xenbus in a guest.
// A transport knows nothing of frames beyond "write this buffer in one go".
import {
  close as fsClose,
  open as fsOpen,
  read as fsRead,
  write as fsWrite,
  writeSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { XsConnectionError } from './errors.js';
import { XsType, encodeFrame } from './wire.js';

export type XsTransportKind = 'socket' | 'xenbus';

export interface TransportHandlers {
  data(chunk: Buffer): void;
  /** The peer went away (or the pipe broke); never called after close(). */
  closed(err?: Error): void;
}

export interface XsTransport {
  readonly kind: XsTransportKind;
  readonly path: string;
  start(handlers: TransportHandlers): void;
  /** Queues one whole frame; frames go out in call order. */
  send(frame: Buffer): void;
  close(): void;
}

export const DEFAULT_SOCKET_PATH = '/run/xenstored/socket';
export const DEFAULT_XENBUS_PATH = '/dev/xen/xenbus';

/** Where libxenstore would look for the daemon socket. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.XENSTORED_PATH || DEFAULT_SOCKET_PATH;
}

export function openSocketTransport(path: string): Promise<XsTransport> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    const onError = (err: Error) => {
      sock.destroy();
      reject(
        new XsConnectionError(`cannot connect to xenstored socket ${path}: ${err.message}`, {
          cause: err,
        }),
      );
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      let done = false;
      let handlers: TransportHandlers | undefined;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        handlers?.closed(err);
      };
      sock.on('error', (err) => finish(err));
      sock.on('close', () => finish());
      sock.on('end', () => sock.end());
      resolve({
        kind: 'socket',
        path,
        start(h) {
          handlers = h;
          sock.on('data', (chunk: Buffer) => {
            if (!done) h.data(chunk);
          });
        },
        send(frame) {
          if (done) return;
          // The frames of one tick (a transaction's pipelined requests, a
          // burst of replies) leave in one writev, not one syscall each.
          if (sock.writableCorked === 0) {
            sock.cork();
            process.nextTick(() => sock.uncork());
          }
          sock.write(frame);
        },
        close() {
          done = true;
          sock.destroy();
        },
      });
    });
  });
}

function readFd(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeFd(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWrite(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * A transport over file descriptors, read by a loop of blocking reads in the
 * libuv threadpool (character devices cannot be polled by net.Socket). The
 * xenbus driver wants each write() to carry one whole message, so a frame is
 * written by a single call; short writes (pipes) are finished off.
 *
 * close() cannot interrupt a read blocked in the kernel, and a blocked
 * threadpool read keeps the process from exiting. So close() sends one last
 * harmless request whose reply ends that read; the loop closes the fds then.
 */
export function fdTransport(
  kind: XsTransportKind,
  path: string,
  readFdNum: number,
  writeFdNum: number,
): XsTransport {
  let done = false;
  let handlers: TransportHandlers | undefined;
  let writes: Promise<void> = Promise.resolve();
  let reading = false;
  const closeFds = () => {
    fsClose(readFdNum, () => {});
    if (writeFdNum !== readFdNum) fsClose(writeFdNum, () => {});
  };
  const finish = (err?: Error) => {
    if (done) return;
    done = true;
    closeFds();
    handlers?.closed(err);
  };
  const loop = async () => {
    const buf = Buffer.allocUnsafe(64 * 1024);
    while (!done) {
      let n: number;
      reading = true;
      try {
        n = await readFd(readFdNum, buf);
      } catch (err) {
        finish(err as Error);
        return;
      } finally {
        reading = false;
      }
      if (done) {
        closeFds();
        return;
      }
      if (n === 0) {
        finish();
        return;
      }
      handlers?.data(Buffer.from(buf.subarray(0, n)));
    }
  };
  return {
    kind,
    path,
    start(h) {
      handlers = h;
      void loop();
    },
    send(frame) {
      writes = writes.then(async () => {
        let off = 0;
        while (!done && off < frame.length) {
          try {
            off += await writeFd(writeFdNum, off === 0 ? frame : frame.subarray(off));
          } catch (err) {
            finish(err as Error);
          }
        }
      });
    },
    close() {
      if (done) return;
      done = true;
      if (!reading) {
        closeFds();
        return;
      }
      try {
        // Synchronous, so it is on its way even if the process exits next.
        writeSync(writeFdNum, WAKE_UP_FRAME);
      } catch {
        closeFds();
      }
    },
  };
}

/** Any request answers; GET_DOMAIN_PATH of dom0 is allowed to every domain. */
const WAKE_UP_FRAME = encodeFrame({
  type: XsType.GET_DOMAIN_PATH,
  reqId: 0xfffffff0,
  txId: 0,
  payload: Buffer.from('0\0'),
});

export function openXenbusTransport(path: string = DEFAULT_XENBUS_PATH): Promise<XsTransport> {
  return new Promise((resolve, reject) => {
    fsOpen(path, 'r+', (err, fd) => {
      if (err) {
        reject(
          new XsConnectionError(`cannot open xenbus device ${path}: ${err.message}`, {
            cause: err,
          }),
        );
        return;
      }
      resolve(fdTransport('xenbus', path, fd, fd));
    });
  });
}
