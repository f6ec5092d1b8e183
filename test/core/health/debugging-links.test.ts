// Every link vmclone doctor prints leads to a section of docs/debugging.md.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEBUGGING_SECTIONS, debuggingLink } from '../../../src/core/health/doctor.js';

const doc = readFileSync(resolve(__dirname, '../../../docs/debugging.md'), 'utf8');
/** GitHub's anchors: lower case, punctuation dropped, spaces to dashes. */
const anchors = new Set(
  [...doc.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
    m[1]!
      .toLowerCase()
      .replace(/[^a-z0-9 -]/g, '')
      .replace(/ /g, '-'),
  ),
);

describe('docs/debugging.md links', () => {
  it('has a section for every anchor doctor links to', () => {
    for (const anchor of [...Object.values(DEBUGGING_SECTIONS), 'checks-first']) {
      expect(anchors, anchor).toContain(anchor);
    }
  });

  it('covers the symptoms operators meet', () => {
    for (const a of [
      'monitors-not-running',
      'ack-timeout',
      'console-not-reachable',
      'guest-request-unanswered',
    ]) {
      expect(anchors).toContain(a);
    }
  });

  it('links a daemon first, then its family, then the general checks', () => {
    expect(debuggingLink('heartbeat:console-monitor')).toBe(
      'docs/debugging.md#console-not-reachable',
    );
    expect(debuggingLink('heartbeat:net-monitor')).toBe('docs/debugging.md#monitors-not-running');
    expect(debuggingLink('lockdown-ack:web1')).toBe('docs/debugging.md#ack-timeout');
    expect(debuggingLink('something-new')).toBe('docs/debugging.md#checks-first');
  });
});
