import { describe, expect, it } from 'vitest';
import { formatMarker, parseMarker } from '../../xen-lane/runner/markers.js';

describe('xen lane serial markers', () => {
  it('round-trips a result marker', () => {
    const data = { scenario: 'bridge-vif', xenstored: 'xenstored', ok: true, ms: 1234 };
    expect(parseMarker(formatMarker('RESULT', data))).toEqual({ kind: 'RESULT', data });
  });

  it('finds a marker behind console noise on the same line', () => {
    const line = `(XEN) d1v0 something@@ZC-START ${JSON.stringify({ scenario: 'x', timeoutMs: 5 })}\r`;
    expect(parseMarker(line)).toEqual({ kind: 'START', data: { scenario: 'x', timeoutMs: 5 } });
  });

  it('ignores unknown kinds, plain lines and cut-off JSON', () => {
    expect(parseMarker('@@ZC-BOGUS {"a":1}')).toBeUndefined();
    expect(parseMarker('[bridge-vif] $ xl create /tmp/x.cfg')).toBeUndefined();
    expect(parseMarker('@@ZC-RESULT {"scenario":"x","ok":tr')).toBeUndefined();
  });

  it('parses array payloads (SUMMARY)', () => {
    expect(parseMarker('@@ZC-SUMMARY [{"scenario":"a"}]')?.data).toEqual([{ scenario: 'a' }]);
  });
});
