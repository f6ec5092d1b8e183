// One run of zynclone-console-splice (helpers/console-splice): it gets the
// VNC socket and the browser socket (duplicated by spawn's stdio) and moves
// VNC -> browser bytes with splice(2) as binary frames, in the kernel. It says
// `ready` once set up and, when it ends, why and how many bytes it moved.
// Control frames go to it on stdin and leave between data frames; the end of
// stdin stops it at the next frame boundary.
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';

/** How long a stop may wait for the current frame to reach a browser that does not read. */
const STOP_TIMEOUT_MS = 2000;

export interface SpliceEnd {
  /** vnc-closed, vnc-failed, browser-gone, stopped; killed when it had to be; failed to start. */
  reason: string;
  bytes: number;
  /** True when the browser's stream ends with a whole frame: a close frame may follow. */
  atFrameBoundary: boolean;
  error?: string;
}

export class SpliceHelper {
  /** Settles once: the helper is moving bytes (true) or never started (false: nothing was read). */
  readonly started: Promise<boolean>;
  /** Settles when the helper has exited. */
  readonly ended: Promise<SpliceEnd>;
  private readonly child: ChildProcess;
  private last: SpliceEnd | undefined;

  constructor(path: string, vnc: Socket, browser: Socket) {
    this.child = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe', vnc, browser] });
    let ready = false;
    let startedNow!: (ok: boolean) => void;
    this.started = new Promise((r) => {
      startedNow = r;
    });
    let stderr = '';
    this.child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-500);
    });
    // A broken pipe here means the helper is gone; 'close' says why.
    this.child.stdin!.on('error', () => {});
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const event = parseEvent(line);
      if (event?.event === 'ready') {
        ready = true;
        startedNow(true);
      } else if (event?.event === 'end') {
        this.last = {
          reason: String(event.reason),
          bytes: Number(event.bytes) || 0,
          atFrameBoundary: event.atFrameBoundary === true,
          ...(typeof event.error === 'string' ? { error: event.error } : {}),
        };
      }
    });
    let spawnError: string | undefined;
    this.child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code ?? err.message;
    });
    this.ended = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        startedNow(false);
        resolve(
          this.last ?? {
            reason: ready ? 'killed' : 'failed to start',
            bytes: 0,
            atFrameBoundary: !ready,
            error: (spawnError ?? stderr.trim()) || `exit ${code ?? signal}`,
          },
        );
      });
    });
  }

  /** Sends a complete control frame (e.g. a pong) between data frames. */
  sendControlFrame(frame: Buffer): void {
    if (this.child.stdin!.writable) this.child.stdin!.write(frame);
  }

  /** Stops the helper at the next frame boundary, or kills it when the browser does not take the current frame in time. */
  stop(): Promise<SpliceEnd> {
    this.child.stdin!.end();
    const timer = setTimeout(() => {
      this.child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    return this.ended.finally(() => clearTimeout(timer));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
}

function parseEvent(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** An unmasked control frame (RFC 6455 5.5) carrying `payload` (at most 125 bytes). */
export function controlFrame(opcode: number, payload: Buffer): Buffer {
  const body = payload.subarray(0, 125);
  return Buffer.concat([Buffer.from([0x80 | opcode, body.length]), body]);
}
