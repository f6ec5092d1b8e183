import type { XsPerm } from './wire.js';

/** Transaction id on the wire; 0 means "no transaction". */
export type TxId = number & { readonly __brand: 'TxId' };
export const NO_TX = 0 as TxId;

export interface WatchEvent {
  path: string;
  token: string;
}

/**
 * What a watch yields: events, plus a `resync` marker after a reconnect, which
 * tells the user that events may have been missed and state must be re-read.
 */
export type WatchItem = ({ kind: 'event' } & WatchEvent) | { kind: 'resync' };

export interface XsWatch extends AsyncIterable<WatchItem> {
  readonly path: string;
  readonly token: string;
  /** Unregisters the watch and ends the iterator. */
  close(): Promise<void>;
}

export interface XsOps {
  read(path: string): Promise<string>;
  /** Like read, but undefined for ENOENT. */
  tryRead(path: string): Promise<string | undefined>;
  write(path: string, value: string | Buffer): Promise<void>;
  mkdir(path: string): Promise<void>;
  rm(path: string): Promise<void>;
  directory(path: string): Promise<string[]>;
  getPerms(path: string): Promise<XsPerm[]>;
  setPerms(path: string, perms: readonly XsPerm[]): Promise<void>;
}

export interface XsTransaction extends XsOps {
  readonly id: TxId;
}

export type XsStatus = 'connecting' | 'ready' | 'reconnecting' | 'closed';
