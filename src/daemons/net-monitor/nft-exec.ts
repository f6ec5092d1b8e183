// Runs nftables scripts, each as one transaction. Two ways:
// - 'libnftables' (default): one long-lived python3 process that holds a
//   libnftables context (what `nft` itself is built on, loaded via ctypes) and
//   runs one script per request line. Starting `nft` costs about 5 ms per
//   transaction, and a transaction that deletes set elements can hold the
//   exiting process another 10-30 ms in the kernel; a kept-open context
//   applies a set change in about 0.1 ms.
// - 'cli': `nft -f -` per transaction, script on stdin; no python3 needed.
// Both run inside a network namespace with `ip netns exec NAME` when asked.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ZynCloneError } from '../../errors/index.js';
import { RunError, type RunResult, inNetns, run } from '../../process/index.js';

export type NftBackend = 'libnftables' | 'cli';

export interface NftExecOptions {
  /** Network namespace to run in (`ip netns exec`); the current one if undefined. */
  netns?: string;
  backend?: NftBackend;
  /** Deadline of one transaction (default 10000 ms). */
  timeoutMs?: number;
}

export class NftError extends ZynCloneError<'NFT_FAILED' | 'NFT_UNAVAILABLE' | 'NFT_TIMEOUT'> {
  constructor(
    code: 'NFT_FAILED' | 'NFT_UNAVAILABLE' | 'NFT_TIMEOUT',
    message: string,
    readonly stderr = '',
  ) {
    super(code, message);
  }
}

export interface NftResult {
  stdout: string;
}

export interface NftExecutor {
  readonly backend: NftBackend;
  /** Runs one script as one transaction; rejects with NftError naming nft's complaint. */
  run(script: string): Promise<NftResult>;
  close(): Promise<void>;
}

// A constant program, never built from data; requests arrive as JSON lines.
const HELPER = `
import ctypes, json, sys
lib = ctypes.CDLL("libnftables.so.1")
lib.nft_ctx_new.restype = ctypes.c_void_p
lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
ctx = lib.nft_ctx_new(0)
lib.nft_ctx_buffer_output(ctx)
lib.nft_ctx_buffer_error(ctx)
sys.stdout.write(json.dumps({"ready": True}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    rc = lib.nft_run_cmd_from_buffer(ctx, req["script"].encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode("utf-8", "replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode("utf-8", "replace")
    sys.stdout.write(json.dumps({"id": req["id"], "rc": rc, "out": out, "err": err}) + "\\n")
    sys.stdout.flush()
`;

export function createNftExecutor(opts: NftExecOptions = {}): NftExecutor {
  return (opts.backend ?? 'libnftables') === 'cli' ? new CliNft(opts) : new LibNft(opts);
}

function firstLine(text: string): string {
  return text.trim().split('\n').slice(0, 3).join(' | ');
}

class CliNft implements NftExecutor {
  readonly backend = 'cli';
  constructor(private readonly opts: NftExecOptions) {}

  async run(script: string): Promise<NftResult> {
    let res: RunResult;
    try {
      res = await run(['nft', '-f', '-'], {
        input: script,
        timeoutMs: this.opts.timeoutMs ?? 10_000,
        check: false,
        ...(this.opts.netns === undefined ? {} : { netns: this.opts.netns }),
      });
    } catch (err) {
      if (err instanceof RunError && err.code === 'RUN_TIMEOUT')
        throw new NftError('NFT_TIMEOUT', err.message, err.stderr);
      throw new NftError('NFT_UNAVAILABLE', (err as Error).message);
    }
    if (res.status === 0) return { stdout: res.stdout };
    throw new NftError('NFT_FAILED', `nft failed: ${firstLine(res.stderr)}`, res.stderr);
  }

  async close(): Promise<void> {}
}

type Pending = {
  resolve(r: NftResult): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
};

class LibNft implements NftExecutor {
  readonly backend = 'libnftables';
  private child: ChildProcessWithoutNullStreams | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: NftExecOptions) {}

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    // A long-lived helper, not one run to completion: spawned here, in the
    // same namespace the runner would use.
    const [cmd, ...args] = inNetns(this.opts.netns, ['python3', '-u', '-c', HELPER]);
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child.stdin.on('error', () => {
      // reported by the exit handler
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      let started = false;
      lines.on('line', (line) => {
        let msg: { ready?: boolean; id?: number; rc?: number; out?: string; err?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        if (msg.ready) {
          started = true;
          resolve();
          return;
        }
        const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id!);
        clearTimeout(p.timer);
        if (msg.rc === 0) p.resolve({ stdout: msg.out ?? '' });
        else
          p.reject(new NftError('NFT_FAILED', `nft failed: ${firstLine(msg.err ?? '')}`, msg.err));
      });
      const fail = (why: string) => {
        const err = new NftError(
          'NFT_UNAVAILABLE',
          `${why}${stderr ? `: ${firstLine(stderr)}` : ''}`,
        );
        if (this.child === child) {
          this.child = undefined;
          this.ready = undefined;
        }
        if (!started) reject(err);
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(err);
          this.pending.delete(id);
        }
      };
      child.on('error', (err) => fail(`cannot start the libnftables helper: ${err.message}`));
      child.on('exit', (code, signal) =>
        fail(`the libnftables helper exited (${signal ?? `code ${code}`})`),
      );
    });
    return this.ready;
  }

  async run(script: string): Promise<NftResult> {
    if (this.closed) throw new NftError('NFT_UNAVAILABLE', 'the nft executor is closed');
    await this.start();
    const child = this.child!;
    const id = this.nextId++;
    return new Promise<NftResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NftError('NFT_TIMEOUT', 'nft transaction timed out; restarting the helper'));
        // Its state is unknown now: start afresh next time.
        child.kill('SIGKILL');
      }, this.opts.timeoutMs ?? 10_000);
      this.pending.set(id, { resolve, reject, timer });
      child.stdin.write(`${JSON.stringify({ id, script })}\n`);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.stdin.end();
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    });
  }
}
