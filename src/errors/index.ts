export { ZynCloneError, isZynCloneError } from './base.js';
export {
  ERROR_CODES,
  EXIT,
  EXIT_MEANING,
  type ErrorCode,
  type ErrorCodeSpec,
  type ExitName,
  type ExitStatus,
  exitStatusFor,
  isErrorCode,
} from './codes.js';
export { errorsMarkdown } from './doc.js';
