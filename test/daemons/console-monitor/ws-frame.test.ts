// The in-place frame writer against ws itself: the header bytes are the ones
// ws's Sender makes for the same payload, and ws's Receiver (what a client
// runs) reads back every payload, alone and as one stream of frames.
import { describe, expect, it } from 'vitest';
import * as ws from 'ws';
import {
  FRAME_HEADROOM,
  writeBinaryFrameHeader,
} from '../../../src/daemons/console-monitor/ws-frame.js';

// ws exports its frame parser and writer, but @types/ws does not declare them.
const { Receiver, Sender } = ws as unknown as {
  Receiver: new (o: { isServer: boolean; maxPayload: number }) => NodeJS.WritableStream & {
    on(e: 'message', l: (data: Buffer, isBinary: boolean) => void): void;
    on(e: 'error', l: (err: Error) => void): void;
  };
  Sender: { frame(data: Buffer, o: Record<string, unknown>): Buffer[] };
};

// Every length where the header's form changes, on both sides.
const LENGTHS = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 200_003];

function framed(length: number): { frame: Buffer; payload: Buffer } {
  const buf = Buffer.alloc(FRAME_HEADROOM + length, 0xee);
  const payload = buf.subarray(FRAME_HEADROOM);
  for (let i = 0; i < length; i++) payload[i] = (i * 31 + length) & 0xff;
  const start = writeBinaryFrameHeader(buf, length);
  return { frame: buf.subarray(start), payload };
}

/** What ws's client-side parser makes of `pieces`, once it has read `count` messages. */
function receive(pieces: Buffer[], count: number): Promise<Buffer[]> {
  const receiver = new Receiver({ isServer: false, maxPayload: 0 });
  const got: Buffer[] = [];
  return new Promise((resolve, reject) => {
    receiver.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) reject(new Error('text frame'));
      got.push(Buffer.from(data));
      if (got.length === count) resolve(got);
    });
    receiver.on('error', reject);
    for (const piece of pieces) receiver.write(piece);
  });
}

describe('writeBinaryFrameHeader', () => {
  it.each(LENGTHS)('writes the header ws writes for %i bytes', (length) => {
    const { frame, payload } = framed(length);
    const [header] = Sender.frame(payload, {
      fin: true,
      opcode: 2,
      mask: false,
      readOnly: false,
      rsv1: false,
    });
    expect(frame.subarray(0, frame.length - length)).toEqual(header);
  });

  it('frames that ws reads back byte for byte, one by one and back to back', async () => {
    const frames = LENGTHS.map(framed);
    const alone = await Promise.all(frames.map((f) => receive([f.frame], 1)));
    expect(alone.map(([p]) => p)).toEqual(frames.map((f) => f.payload));
    // One stream, cut at odd places as TCP may deliver it.
    const stream = Buffer.concat(frames.map((f) => f.frame));
    const pieces: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 7777) pieces.push(stream.subarray(at, at + 7777));
    const together = await receive(pieces, frames.length);
    expect(together).toEqual(frames.map((f) => f.payload));
  });
});
