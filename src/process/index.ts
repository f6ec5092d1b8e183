export {
  DEFAULT_MAX_OUTPUT_BYTES,
  DEFAULT_TIMEOUT_MS,
  RunError,
  type RunErrorCode,
  type RunOptions,
  type RunResult,
  describeArgv,
  firstLines,
  inNetns,
  run,
} from './run.js';
