import { describe, expect, it } from 'vitest';
import { type ErrorCode, isZynCloneError } from '../../src/errors/index.js';
import {
  XsArgumentError,
  XsConnectionError,
  XsError,
  XsLimitError,
  XsProtocolError,
  XsRemoteError,
  XsTimeoutError,
  XsTransactionStateError,
  isXsErrno,
} from '../../src/xenstore/errors.js';
import { FrameTooLargeError } from '../../src/xenstore/wire.js';

const table: Array<{ err: Error; name: string; code: string; message: string }> = [
  {
    err: new XsError('XS_EIO', 'generic'),
    name: 'XsError',
    code: 'XS_EIO',
    message: 'generic',
  },
  {
    err: new XsRemoteError('ENOENT', 'read', '/local/domain/7/name'),
    name: 'XsRemoteError',
    code: 'XS_ENOENT',
    message: 'xenstore read /local/domain/7/name: ENOENT',
  },
  {
    err: new XsRemoteError('EAGAIN', 'transaction-end'),
    name: 'XsRemoteError',
    code: 'XS_EAGAIN',
    message: 'xenstore transaction-end: EAGAIN',
  },
  {
    err: new XsLimitError('xenstore write /x: payload of 5000 bytes is over the 4096-byte limit'),
    name: 'XsLimitError',
    code: 'XS_LIMIT',
    message: 'xenstore write /x: payload of 5000 bytes is over the 4096-byte limit',
  },
  {
    err: new XsConnectionError('xenstored closed the connection'),
    name: 'XsConnectionError',
    code: 'XS_CONNECTION',
    message: 'xenstored closed the connection',
  },
  {
    err: new XsProtocolError('reply type WRITE is neither READ nor ERROR'),
    name: 'XsProtocolError',
    code: 'XS_PROTOCOL',
    message: 'reply type WRITE is neither READ nor ERROR',
  },
  {
    err: new XsTimeoutError('read', 250),
    name: 'XsTimeoutError',
    code: 'XS_TIMEOUT',
    message: 'xenstore read: no answer within 250 ms',
  },
  {
    err: new XsArgumentError('xenstore read: the path is empty'),
    name: 'XsArgumentError',
    code: 'XS_INVALID_ARGUMENT',
    message: 'xenstore read: the path is empty',
  },
  {
    err: new XsTransactionStateError('transaction 3 is already committed'),
    name: 'XsTransactionStateError',
    code: 'XS_TX_FINISHED',
    message: 'transaction 3 is already committed',
  },
  {
    err: new FrameTooLargeError(5000),
    name: 'FrameTooLargeError',
    code: 'XS_FRAME_TOO_LARGE',
    message: 'xenstore frame announces 5000 bytes, more than 4096',
  },
];

describe('error classes', () => {
  it.each(table)('$name carries code $code', ({ err, name, code, message }) => {
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe(name);
    expect((err as Error & { code: string }).code).toBe(code);
    expect(err.message).toBe(message);
    expect(isZynCloneError(err, code as ErrorCode)).toBe(true);
    if (name !== 'FrameTooLargeError') expect(err).toBeInstanceOf(XsError);
  });

  it('namespaces the errno xenstored sent, so it never passes for a filesystem errno', () => {
    const err = new XsRemoteError('ENOENT', 'read', '/x');
    expect(err.code).toBe('XS_ENOENT');
    expect(err.errno).toBe('ENOENT');
    expect(isZynCloneError(err, 'XS_ENOENT')).toBe(true);
    const odd = new XsRemoteError('EWHATEVER', 'read', '/x');
    expect([odd.code, odd.errno]).toEqual(['XS_EUNKNOWN', 'EWHATEVER']);
  });

  it('keeps the remote errno, op and path on XsRemoteError', () => {
    const err = new XsRemoteError('EACCES', 'write', '/tool');
    expect([err.errno, err.op, err.path]).toEqual(['EACCES', 'write', '/tool']);
    expect(isXsErrno(err, 'EACCES')).toBe(true);
    expect(isXsErrno(err, 'ENOENT')).toBe(false);
    expect(isXsErrno(new Error('EACCES'), 'EACCES')).toBe(false);
  });

  it('keeps the cause of a connection error', () => {
    const cause = new Error('ECONNREFUSED');
    expect(new XsConnectionError('cannot connect', { cause }).cause).toBe(cause);
  });
});
