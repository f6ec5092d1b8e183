// Server-to-browser binary WebSocket frames written in place (RFC 6455 5.2).
// A buffer keeps FRAME_HEADROOM bytes free in front of its payload, and the
// frame header is written into them, so header and payload leave in one
// write of one buffer: no copy, no header allocation, no writev.

/** The longest header of an unmasked frame: 2 bytes, 8 of them a 64-bit length. */
export const FRAME_HEADROOM = 10;

const FIN_BINARY = 0x82;

/**
 * Writes the header of a final binary frame carrying `payloadLength` bytes
 * that start at `buf[FRAME_HEADROOM]`, just in front of them; returns the
 * offset in `buf` where the frame starts.
 */
export function writeBinaryFrameHeader(buf: Buffer, payloadLength: number): number {
  if (payloadLength < 126) {
    buf[FRAME_HEADROOM - 2] = FIN_BINARY;
    buf[FRAME_HEADROOM - 1] = payloadLength;
    return FRAME_HEADROOM - 2;
  }
  if (payloadLength < 0x10000) {
    buf[FRAME_HEADROOM - 4] = FIN_BINARY;
    buf[FRAME_HEADROOM - 3] = 126;
    buf.writeUInt16BE(payloadLength, FRAME_HEADROOM - 2);
    return FRAME_HEADROOM - 4;
  }
  buf[0] = FIN_BINARY;
  buf[1] = 127;
  // A buffer holds less than 2^53 bytes: the high word is the length over 2^32.
  buf.writeUInt32BE(Math.floor(payloadLength / 0x1_0000_0000), 2);
  buf.writeUInt32BE(payloadLength >>> 0, 6);
  return 0;
}
