import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  FrameTooLargeError,
  HEADER_SIZE,
  XENSTORE_PAYLOAD_MAX,
  type XsFrame,
  XsType,
  encodeFrame,
  formatPerm,
  joinNul,
  parsePerm,
  splitNul,
  xsTypeName,
} from '../../src/xenstore/wire.js';

const frames: XsFrame[] = [
  { type: XsType.READ, reqId: 1, txId: 0, payload: joinNul(['/local/domain/0/name']) },
  { type: XsType.WRITE, reqId: 2, txId: 7, payload: Buffer.from('/a\0value with spaces') },
  { type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: joinNul(['/a/b', 'tok']) },
  { type: XsType.TRANSACTION_START, reqId: 0xffffffff, txId: 0, payload: Buffer.alloc(0) },
  { type: XsType.ERROR, reqId: 3, txId: 0, payload: joinNul(['ENOENT']) },
  {
    type: XsType.WRITE,
    reqId: 4,
    txId: 0,
    payload: Buffer.concat([Buffer.from('/big\0'), Buffer.alloc(XENSTORE_PAYLOAD_MAX - 5, 0x61)]),
  },
];
const stream = Buffer.concat(frames.map(encodeFrame));

function same(got: XsFrame[], want: XsFrame[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((f, i) => {
    const w = want[i]!;
    expect({ type: f.type, reqId: f.reqId, txId: f.txId }).toEqual({
      type: w.type,
      reqId: w.reqId,
      txId: w.txId,
    });
    expect(f.payload.equals(w.payload)).toBe(true);
  });
}

describe('encodeFrame', () => {
  it('writes the 16-byte little-endian header of xs_wire.h', () => {
    const buf = encodeFrame({
      type: XsType.WRITE,
      reqId: 0x01020304,
      txId: 9,
      payload: Buffer.from('ab'),
    });
    expect(buf.length).toBe(HEADER_SIZE + 2);
    expect([...buf.subarray(0, 16)]).toEqual([11, 0, 0, 0, 4, 3, 2, 1, 9, 0, 0, 0, 2, 0, 0, 0]);
    expect(buf.subarray(16).toString()).toBe('ab');
  });
});

describe('FrameDecoder', () => {
  it('decodes a stream fed whole', () => {
    const d = new FrameDecoder();
    same(d.push(stream), frames);
    expect(d.pendingBytes).toBe(0);
  });

  it('decodes a stream fed byte by byte', () => {
    const d = new FrameDecoder();
    const got: XsFrame[] = [];
    for (let i = 0; i < stream.length; i++) got.push(...d.push(stream.subarray(i, i + 1)));
    same(got, frames);
    expect(d.pendingBytes).toBe(0);
  });

  it('decodes every frame split at every byte boundary', () => {
    for (const frame of frames) {
      const bytes = encodeFrame(frame);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const d = new FrameDecoder();
        const got = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
        same(got, [frame]);
      }
    }
  });

  it('decodes the whole stream split at every byte boundary into two chunks', () => {
    for (let cut = 0; cut <= stream.length; cut += 7) {
      const d = new FrameDecoder();
      same([...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))], frames);
    }
  });

  it('keeps a partial frame until the rest arrives', () => {
    const d = new FrameDecoder();
    const bytes = encodeFrame(frames[0]!);
    expect(d.push(bytes.subarray(0, 20))).toEqual([]);
    expect(d.pendingBytes).toBe(20);
    same(d.push(bytes.subarray(20)), [frames[0]!]);
  });

  it('refuses a header that announces more than the payload limit', () => {
    const head = Buffer.alloc(HEADER_SIZE);
    head.writeUInt32LE(XsType.READ, 0);
    head.writeUInt32LE(XENSTORE_PAYLOAD_MAX + 1, 12);
    const d = new FrameDecoder();
    expect(() => d.push(head)).toThrow(FrameTooLargeError);
    try {
      new FrameDecoder().push(head);
    } catch (err) {
      expect((err as FrameTooLargeError).code).toBe('XS_FRAME_TOO_LARGE');
      expect((err as Error).message).toContain(String(XENSTORE_PAYLOAD_MAX + 1));
    }
  });
});

describe('NUL-separated payloads', () => {
  it('splits with or without the trailing NUL', () => {
    expect(splitNul(Buffer.from('a\0b\0'))).toEqual(['a', 'b']);
    expect(splitNul(Buffer.from('a\0b'))).toEqual(['a', 'b']);
    expect(splitNul(Buffer.alloc(0))).toEqual([]);
    expect(splitNul(Buffer.from('\0'))).toEqual(['']);
  });

  it('joins with a trailing NUL by default', () => {
    expect(joinNul(['a', 'b']).toString()).toBe('a\0b\0');
    expect(joinNul(['a', 'b'], false).toString()).toBe('a\0b');
  });
});

describe('permissions', () => {
  it('round-trips every access letter', () => {
    for (const text of ['n0', 'r5', 'w3', 'b65535']) expect(formatPerm(parsePerm(text))).toBe(text);
    expect(parsePerm('b7')).toEqual({ domid: 7, access: 'both' });
  });

  it('rejects malformed entries', () => {
    for (const bad of ['', 'x1', 'r', 'r-1', 'r65536', 'r1a']) {
      expect(() => parsePerm(bad), bad).toThrow(RangeError);
    }
  });
});

describe('type names', () => {
  it('keeps the hole left by XS_RESTRICT', () => {
    expect(xsTypeName(20)).toBeUndefined();
    expect(xsTypeName(21)).toBe('RESET_WATCHES');
    expect(xsTypeName(22)).toBe('DIRECTORY_PART');
  });
});
