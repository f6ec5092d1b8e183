import { describe, expect, it } from 'vitest';
import { XsArgumentError, XsLimitError, XsProtocolError } from '../../src/xenstore/errors.js';
import {
  build,
  checkPath,
  parseBool,
  parseDirectoryPart,
  parsePerms,
  parseTxId,
  parseWatchEvent,
} from '../../src/xenstore/requests.js';
import { XsType } from '../../src/xenstore/wire.js';

describe('request payloads', () => {
  it('follow docs/misc/xenstore.txt', () => {
    const cases: Array<[ReturnType<typeof build.read>, number, string]> = [
      [build.read('/a'), XsType.READ, '/a\0'],
      [build.write('/a', 'v'), XsType.WRITE, '/a\0v'],
      [build.write('/a', ''), XsType.WRITE, '/a\0'],
      [build.mkdir('/a'), XsType.MKDIR, '/a\0'],
      [build.rm('/a'), XsType.RM, '/a\0'],
      [build.directory('/a'), XsType.DIRECTORY, '/a\0'],
      [build.directoryPart('/a', 4090), XsType.DIRECTORY_PART, '/a\x004090\0'],
      [build.getPerms('/a'), XsType.GET_PERMS, '/a\0'],
      [
        build.setPerms('/a', [
          { domid: 0, access: 'none' },
          { domid: 5, access: 'read' },
        ]),
        XsType.SET_PERMS,
        '/a\0n0\0r5\0',
      ],
      [build.watch('@releaseDomain', 't1'), XsType.WATCH, '@releaseDomain\0t1\0'],
      [build.unwatch('/a', 't1'), XsType.UNWATCH, '/a\0t1\0'],
      [build.transactionStart(), XsType.TRANSACTION_START, '\0'],
      [build.transactionEnd(true), XsType.TRANSACTION_END, 'T\0'],
      [build.transactionEnd(false), XsType.TRANSACTION_END, 'F\0'],
      [build.getDomainPath(3), XsType.GET_DOMAIN_PATH, '3\0'],
      [build.isDomainIntroduced(3), XsType.IS_DOMAIN_INTRODUCED, '3\0'],
      [build.introduce(3, 0x1234n, 17), XsType.INTRODUCE, '3\x004660\x0017\0'],
      [build.release(3), XsType.RELEASE, '3\0'],
      [build.resetWatches(), XsType.RESET_WATCHES, '\0'],
    ];
    for (const [req, type, payload] of cases) {
      expect(req.type).toBe(type);
      expect(req.payload.toString('latin1')).toBe(payload);
    }
  });
});

describe('limits checked before sending', () => {
  it('refuses a payload over 4096 bytes, naming the limit', () => {
    expect(() => build.write('/a', Buffer.alloc(4094))).toThrow(XsLimitError);
    expect(() => build.write('/a', Buffer.alloc(4093))).not.toThrow();
    expect(() => build.write('/a', Buffer.alloc(5000))).toThrow(
      /payload of 5003 bytes is over the 4096-byte limit/,
    );
  });

  it('refuses paths over 3072 (absolute) and 2048 (relative) bytes', () => {
    const abs = `/${'a'.repeat(3071)}`;
    expect(() => checkPath(abs, 'read')).not.toThrow();
    expect(() => checkPath(`${abs}b`, 'read')).toThrow(
      /absolute path of 3073 bytes is over the 3072-byte limit/,
    );
    expect(() => checkPath('a'.repeat(2048), 'read')).not.toThrow();
    expect(() => checkPath('a'.repeat(2049), 'read')).toThrow(XsLimitError);
    expect(() => checkPath('é'.repeat(1025), 'read')).toThrow(/2050 bytes/);
  });

  it('refuses empty paths, NUL bytes and bad domids as argument errors', () => {
    expect(() => checkPath('', 'read')).toThrow(XsArgumentError);
    expect(() => checkPath('/a\0b', 'read')).toThrow(/NUL/);
    expect(() => build.watch('/a', '')).toThrow(XsArgumentError);
    expect(() => build.getDomainPath(-1)).toThrow(XsArgumentError);
    expect(() => build.release(65536)).toThrow(XsArgumentError);
    expect(() => build.setPerms('/a', [])).toThrow(XsArgumentError);
  });
});

describe('reply parsing', () => {
  it('reads transaction ids, booleans, perms, parts and events', () => {
    expect(parseTxId(Buffer.from('42\0'))).toBe(42);
    expect(() => parseTxId(Buffer.from('x\0'))).toThrow(XsProtocolError);
    expect(parseBool(Buffer.from('T\0'), 'op')).toBe(true);
    expect(parseBool(Buffer.from('F\0'), 'op')).toBe(false);
    expect(() => parseBool(Buffer.from('Y\0'), 'op')).toThrow(XsProtocolError);
    expect(parsePerms(Buffer.from('b0\0r5\0'), '/a')).toEqual([
      { domid: 0, access: 'both' },
      { domid: 5, access: 'read' },
    ]);
    expect(() => parsePerms(Buffer.from('q0\0'), '/a')).toThrow(XsProtocolError);
    const part = parseDirectoryPart(Buffer.from('17\0a\0b\0'));
    expect(part.generation).toBe('17');
    expect(part.chunk.toString()).toBe('a\0b\0');
    expect(parseWatchEvent(Buffer.from('/a/b\0tok\0'))).toEqual({ path: '/a/b', token: 'tok' });
    expect(() => parseWatchEvent(Buffer.from('/a/b\0'))).toThrow(XsProtocolError);
  });
});
