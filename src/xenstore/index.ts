// Public API of the xenstore layer. Typical use:
//   const xs = await XsClient.connect();            // socket, then /dev/xen/xenbus
//   await xs.write('/tool/zynclone/x', 'v');
//   for await (const item of await xs.watch('/tool/zynclone')) { ... }  // 'event' | 'resync'
//   await xs.transaction(async (tx) => { ... });    // retried on EAGAIN
// Errors all extend XsError (a ZynCloneError); match on `code` (XS_ENOENT, XS_EAGAIN, XS_LIMIT,
// XS_CONNECTION, ...) or with isXsErrno(err, 'ENOENT'); `errno` keeps the name xenstored sent.
export {
  XsClient,
  XsTransactionHandle,
  type Logger,
  type XsClientOptions,
  type XsReconnectOptions,
  type XsTransactionOptions,
} from './client.js';
export * from './errors.js';
export { checkPath } from './requests.js';
export {
  DEFAULT_SOCKET_PATH,
  DEFAULT_XENBUS_PATH,
  defaultSocketPath,
  fdTransport,
  openSocketTransport,
  openXenbusTransport,
  type TransportHandlers,
  type XsTransport,
  type XsTransportKind,
} from './transport.js';
export * from './types.js';
export { WATCH_QUEUE_MAX, WatchHandle } from './watch-registry.js';
export {
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  XsType,
  type XsPerm,
  type XsPermAccess,
  formatPerm,
  parsePerm,
} from './wire.js';
