// The protocol's parser and reply format against the vectors that the bash
// and PowerShell clients' tests use too.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../../src/cli/exit-codes.js';
import {
  MAX_REQUEST_BYTES,
  ProtocolError,
  REPLY_ROOT,
  REPLY_STATES,
  REQUEST_NODE,
  type Reply,
  formatRequest,
  parseRequest,
  replyNodes,
} from '../../../src/daemons/orchestrator/protocol.js';
import { vectors } from '../../guest/vectors.js';

describe('guest request protocol', () => {
  it('names the nodes the vectors name', () => {
    expect(REQUEST_NODE).toBe(vectors.requestNode);
    expect(REPLY_ROOT).toBe(vectors.replyRoot);
    expect([...REPLY_STATES]).toEqual(vectors.replyStates);
  });

  it.each(vectors.parse.map((v) => [v.raw ?? `hex ${v.rawHex}`, v] as const))(
    'parses %j',
    (_, v) => {
      const raw =
        v.rawHex === undefined ? Buffer.from(v.raw!, 'latin1') : Buffer.from(v.rawHex, 'hex');
      if (v.error === undefined) {
        const req = parseRequest(raw);
        expect(req).toEqual({ id: v.id, op: v.op, args: v.args });
        expect(formatRequest(req)).toBe(v.raw);
      } else {
        let err: unknown;
        try {
          parseRequest(raw);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ProtocolError);
        expect((err as ProtocolError).code).toBe(v.error);
        expect((err as ProtocolError).id).toBe(v.id);
      }
    },
  );

  it('the clients write requests the orchestrator parses', () => {
    for (const v of vectors.clientRequests) {
      const raw = v.request.replace('ID', 'client-1');
      expect(formatRequest(parseRequest(Buffer.from(raw)))).toBe(raw);
    }
  });

  it.each(vectors.replies.map((v) => [v.nodes.state, v.nodes.code ?? '', v] as const))(
    'writes a %s %s reply as the vectors say',
    (_, __, v) => {
      const reply: Reply = {
        state: v.nodes.state as Reply['state'],
        op: v.nodes.op!,
        ...(v.nodes.code === undefined ? {} : { code: v.nodes.code }),
        ...(v.nodes.message === undefined ? {} : { message: v.nodes.message }),
        ...(v.nodes['clone-state'] === undefined ? {} : { cloneState: v.nodes['clone-state'] }),
        ...(v.nodes['clone-name'] === undefined ? {} : { cloneName: v.nodes['clone-name'] }),
      };
      expect(replyNodes(reply)).toEqual(v.nodes);
    },
  );

  it("gives the lifecycle's error codes the exit statuses vmclone gives them", () => {
    const own = new Set([
      'BAD_REQUEST',
      'UNKNOWN_OP',
      'OP_NOT_ALLOWED',
      'CLONE_REQUEST_REFUSED',
      'RATE_LIMITED',
      'BUSY',
      'INTERRUPTED',
    ]);
    for (const v of vectors.replies) {
      const code = v.nodes.code;
      if (code !== undefined && !own.has(code)) expect(exitCodeFor({ code })).toBe(v.exit);
    }
  });

  it('never throws anything but a ProtocolError, and whatever it accepts reads back the same', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: MAX_REQUEST_BYTES + 8 }), (bytes) => {
        const raw = Buffer.from(bytes);
        try {
          const req = parseRequest(raw);
          expect(formatRequest(req)).toBe(raw.toString('latin1'));
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('reply messages are one bounded line of printable ASCII whatever an error says', () => {
    const nodes = replyNodes({
      state: 'error',
      op: 'create',
      code: 'FAILED',
      message: `line one\nline two\u0000\u00e9${'x'.repeat(1000)}`,
    });
    expect(nodes.message).toMatch(/^[\x20-\x7e]{1,400}$/);
    expect(nodes.message!.startsWith('line one line two x')).toBe(true);
  });
});
