export type { CommandResult, CommandRunner } from './command.js';
export { runCommand } from './command.js';
export { StorageError, type StorageErrorCode } from './errors.js';
export {
  DEFAULT_CLASSIC_SIZE,
  type LvInfo,
  classicSnapshotArgv,
  lvsArgv,
  parseLvsReport,
  removeArgv,
  thinSnapshotArgv,
} from './lvm.js';
export {
  type LvmSelfTestOptions,
  type LvmSelfTestReport,
  lvmSnapshotSelfTest,
} from './lvm-selftest.js';
export {
  type ExecuteContext,
  type PlanOptions,
  execute,
  executeAll,
  planSnapshot,
  remove,
} from './plan.js';
export { type ImageInfo, imageInfo, overlayCreateArgv } from './qcow2.js';
export { parseSnapshotPlan, parseSnapshotRecord } from './record.js';
export { clearReflinkCache, probeReflink, type ReflinkProbe, reflinkFile } from './reflink.js';
export { type SparseCopyResult, sparseCopy } from './sparse-copy.js';
export type * from './types.js';
