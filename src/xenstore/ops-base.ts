// The path operations shared by the client and its transactions: both only
// differ in how a request reaches xenstored (which tx_id it carries).
import { XsRemoteError } from './errors.js';
import { type XsRequest, build, parseDirectoryPart, parsePerms } from './requests.js';
import type { XsOps } from './types.js';
import { type XsPerm, splitNul } from './wire.js';

/** A node's child list changed this many times while being read in parts: give up. */
const DIRECTORY_PART_RESTARTS = 16;

export abstract class XsOpsBase implements XsOps {
  protected abstract exec(req: XsRequest): Promise<Buffer>;

  /** The value as xenstored stores it (values may be binary). */
  readBuffer(path: string): Promise<Buffer> {
    return this.run(() => build.read(path));
  }

  async read(path: string): Promise<string> {
    return (await this.readBuffer(path)).toString('utf8');
  }

  async tryRead(path: string): Promise<string | undefined> {
    try {
      return await this.read(path);
    } catch (err) {
      if (err instanceof XsRemoteError && err.errno === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** True if the node exists; EACCES and other errors are thrown, not guessed at. */
  async exists(path: string): Promise<boolean> {
    return (await this.tryReadBuffer(path)) !== undefined;
  }

  async write(path: string, value: string | Buffer): Promise<void> {
    await this.run(() => build.write(path, value));
  }

  async mkdir(path: string): Promise<void> {
    await this.run(() => build.mkdir(path));
  }

  async rm(path: string): Promise<void> {
    await this.run(() => build.rm(path));
  }

  async directory(path: string): Promise<string[]> {
    try {
      return splitNul(await this.run(() => build.directory(path)));
    } catch (err) {
      // Like libxenstore: DIRECTORY_PART only when the whole list does not fit.
      if (err instanceof XsRemoteError && err.errno === 'E2BIG')
        return this.directoryInParts(path, err);
      throw err;
    }
  }

  async getPerms(path: string): Promise<XsPerm[]> {
    return parsePerms(await this.run(() => build.getPerms(path)), path);
  }

  async setPerms(path: string, perms: readonly XsPerm[]): Promise<void> {
    await this.run(() => build.setPerms(path, perms));
  }

  private async tryReadBuffer(path: string): Promise<Buffer | undefined> {
    try {
      return await this.readBuffer(path);
    } catch (err) {
      if (err instanceof XsRemoteError && err.errno === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Builds the request inside the promise so argument errors reject rather than throw. */
  protected async run(make: () => XsRequest): Promise<Buffer> {
    return this.exec(make());
  }

  private async directoryInParts(path: string, tooBig: XsRemoteError): Promise<string[]> {
    let restarts = 0;
    let generation: string | undefined;
    let chunks: Buffer[] = [];
    let offset = 0;
    for (;;) {
      let reply: Buffer;
      try {
        reply = await this.run(() => build.directoryPart(path, offset));
      } catch (err) {
        if (err instanceof XsRemoteError && err.errno === 'ENOSYS') throw tooBig;
        throw err;
      }
      const part = parseDirectoryPart(reply);
      if (offset > 0 && part.generation !== generation) {
        // The node changed between two parts: the offsets mean nothing now.
        if (++restarts > DIRECTORY_PART_RESTARTS)
          throw new XsRemoteError('EAGAIN', 'directory', path);
        chunks = [];
        offset = 0;
        generation = undefined;
        continue;
      }
      generation = part.generation;
      chunks.push(part.chunk);
      offset += part.chunk.length;
      // The list ends with an empty name, i.e. two NULs in a row (or nothing at all).
      const all = Buffer.concat(chunks);
      if (all.length <= 1 || (all[all.length - 1] === 0 && all[all.length - 2] === 0)) {
        return splitNul(all.subarray(0, Math.max(0, all.length - 1)));
      }
      if (part.chunk.length === 0) return splitNul(all);
    }
  }
}
