/**
 * Errors of the web console: issuing a ticket (vmclone console) and redeeming
 * it (clone_console_monitor). Every one carries a stable `code`.
 */
import { ZynCloneError } from '../../errors/index.js';

export type ConsoleErrorCode =
  /** The VM has no clone, or its clone does not run. */
  | 'CONSOLE_NOT_RUNNING'
  /** console_enabled is false for the VM. */
  | 'CONSOLE_DISABLED'
  /** The clone's only console is SPICE, which the web console cannot show. */
  | 'CONSOLE_SPICE'
  /** The clone has no VNC server (no console/vnc-port in XenStore). */
  | 'CONSOLE_NO_VNC'
  /** clone_console_monitor has not published its URL, or its heartbeat is stale. */
  | 'CONSOLE_MONITOR_DOWN'
  /** Too many unexpired tickets are outstanding. */
  | 'CONSOLE_TICKET_LIMIT'
  /** A ticket node in XenStore is not what the issuer writes. */
  | 'CONSOLE_TICKET_MALFORMED';

export class ConsoleError extends ZynCloneError<ConsoleErrorCode> {}
