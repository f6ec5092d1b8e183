/**
 * The journal's step names, per operation, in the order a successful
 * operation journals them. The lifecycle journals exactly these (its unit
 * tests check that), and the crash and failure tests derive their matrices
 * from them. `remove-snapshot` is journaled once per volume as
 * `remove-snapshot:<vdev>`.
 */
const BOOT = ['create-domain', 'publish-domid', 'wait-ack', 'unpause-clone'] as const;
/** A memory clone's second half: its image restored as the clone, locked down, unpaused. */
const RESTORE = [
  'publish',
  'restore-domain',
  'publish-domid',
  'wait-ack',
  'unpause-clone',
  'remove-save-image',
  'record',
] as const;

export const CREATE_STEPS = {
  offline: ['plan', 'write-config', 'snapshot', 'publish', ...BOOT, 'record'],
  online: ['plan', 'write-config', 'pause-snapshot', 'publish', ...BOOT, 'record'],
  memory: ['plan', 'write-config', 'save-original', 'snapshot', 'unpause-original', ...RESTORE],
  /** A memory clone through the live save helper (memory-copy.ts); `memory` is its fallback. */
  'memory-live': [
    'plan',
    'write-config',
    'live-save-original',
    'snapshot',
    'resume-original',
    ...RESTORE,
  ],
} as const;

export const START_STEPS = ['write-config', 'publish', ...BOOT, 'record'] as const;
export const STOP_STEPS = ['stop-domain', 'publish', 'record'] as const;
export const ACTIVATE_STEPS = ['publish', 'wait-ack', 'record'] as const;
export const DEACTIVATE_STEPS = ['publish', 'record'] as const;
export const REMOVE_STEPS = [
  'destroy-domain',
  'unpublish',
  'return-volumes',
  'remove-snapshot',
  'remove-files',
  'delete-record',
] as const;
