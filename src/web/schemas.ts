// The API's request and response shapes. The routes (api.ts) validate with
// them and the OpenAPI document is generated from them: one definition.
import { z } from '@hono/zod-openapi';

export const VmParam = z.object({
  vm: z
    .string()
    .max(200)
    .openapi({
      param: { name: 'vm', in: 'path' },
      example: 'web01',
      description: 'the original VM',
    }),
});

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z
        .string()
        .openapi({ example: 'VM_BUSY', description: 'stable error code, as vmclone prints it' }),
      message: z.string(),
      exitCode: z
        .number()
        .int()
        .openapi({ description: 'the exit status vmclone gives for this error' }),
    }),
  })
  .openapi('Error');

const CloneKindSchema = z.enum(['offline', 'online', 'memory']);
const CloneStateSchema = z.enum(['running', 'active', 'inactive']);

/** As `vmclone list --json` prints one clone. */
export const CloneSchema = z
  .object({
    vm: z.string(),
    cloneName: z.string(),
    state: CloneStateSchema,
    kind: CloneKindSchema,
    cloneDomid: z.number().int().nullable(),
    cloneUuid: z.string().nullable(),
    sourceUuid: z.string(),
    requestedBy: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    snapshots: z.array(z.unknown()),
  })
  .openapi('Clone');

/** As `vmclone list --json` prints each clone: with its VM's shared volumes. */
export const CloneListItemSchema = CloneSchema.extend({
  sharedVolumes: z.array(z.unknown()),
}).openapi('CloneListItem');

/** As `vmclone status --json` prints it. */
export const StatusSchema = z
  .object({
    vm: z.string(),
    clone: CloneSchema.nullable(),
    domain: z
      .object({ domid: z.number().int(), state: z.string(), paused: z.boolean() })
      .nullable(),
    original: z.object({ domid: z.number().int(), state: z.string() }).nullable(),
    lockdown: z.object({ generation: z.number().nullable(), ack: z.number().nullable() }),
    operation: z
      .object({ id: z.number().int(), kind: z.string(), ownerPid: z.number().int() })
      .nullable(),
    configFile: z.string().nullable(),
    note: z.string().nullable(),
    sharedVolumes: z.array(z.unknown()),
  })
  .openapi('Status');

export const CreateBody = z
  .object({
    kind: CloneKindSchema.optional().openapi({
      description: "offline, online (disk-only) or memory; default: the VM's clone_kind",
    }),
    start: z.boolean().optional().openapi({
      description: 'false: stop at state active (vmclone --no-start); default: start_on_create',
    }),
  })
  .strict()
  .openapi('CreateRequest');

/** As `vmclone create --json` prints it. */
export const CreateResultSchema = z
  .object({
    clone: CloneSchema,
    originalPauseMs: z.number().nullable(),
    memoryCopy: z
      .object({
        method: z.enum(['live', 'save-pause']),
        fallback: z.string().nullable(),
        copyMs: z.number().nullable(),
      })
      .nullable()
      .openapi({
        description:
          'memory clones: live pre-copy, or xl save -p and why (fallback); null for other kinds',
      }),
    totalMs: z.number(),
    removedPeripherals: z.array(z.string()),
    vifs: z.array(
      z.object({
        devid: z.number().int(),
        name: z.string(),
        masked: z.boolean(),
        bridge: z.string(),
        mac: z.string().nullable(),
      }),
    ),
    warnings: z.array(z.string()),
  })
  .openapi('CreateResult');

export const StopBody = z
  .object({
    force: z
      .boolean()
      .optional()
      .openapi({ description: 'destroy at once (vmclone stop --force)' }),
  })
  .strict()
  .openapi('StopRequest');

export const TransitionResult = z.object({ clone: CloneSchema }).openapi('TransitionResult');
export const RemoveResult = z.object({ removed: z.boolean() }).openapi('RemoveResult');

export const VmsSchema = z
  .array(
    z.object({
      name: z.string(),
      domid: z.number().int().nullable(),
      state: z.string().nullable(),
    }),
  )
  .openapi('Vms');

/** As `vmclone config --json` prints it. */
export const ConfigSchema = z
  .object({
    vm: z.string(),
    values: z.record(z.string(), z.unknown()),
    origins: z.record(z.string(), z.enum(['default', 'base', 'override'])),
    files: z.object({ base: z.string(), override: z.string(), generated: z.string() }),
  })
  .openapi('Config');

export const ConfigPatch = z
  .object({
    set: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({
        description:
          'keys to set in the VM override; a string is read as vmclone config --set reads it',
        example: { clone_vif_mask: '0,2' },
      }),
    unset: z
      .array(z.string())
      .optional()
      .openapi({ description: 'keys to remove from the override' }),
  })
  .strict()
  .openapi('ConfigPatch');

export const DoctorSchema = z
  .object({
    healthy: z.boolean(),
    findings: z.array(
      z.object({
        check: z.string(),
        ok: z.boolean(),
        severity: z.enum(['info', 'warning', 'error']),
        message: z.string(),
        fix: z.string().optional(),
      }),
    ),
  })
  .openapi('Doctor');

export const AuditSchema = z
  .array(
    z.object({
      id: z.number().int(),
      at: z.string(),
      who: z.string(),
      action: z.string(),
      vm: z.string().nullable(),
      opId: z.number().int().nullable(),
      outcome: z.string(),
      detail: z.unknown(),
    }),
  )
  .openapi('Audit');

export const AuditQuery = z.object({
  vm: z
    .string()
    .max(200)
    .optional()
    .openapi({ param: { name: 'vm', in: 'query' } }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .openapi({ param: { name: 'limit', in: 'query' } }),
});

export const SessionSchema = z
  .object({
    who: z.string(),
    csrfToken: z.string().nullable().openapi({
      description: 'send as X-CSRF-Token on every state-changing request (null for Bearer clients)',
    }),
  })
  .openapi('Session');

/** As `vmclone console --json` prints it: opening `url` is all a browser does. */
export const ConsoleTicketSchema = z
  .object({
    url: z.string().openapi({
      description:
        "the console page of clone_console_monitor; the one-time ticket is in the URL's fragment",
    }),
    vm: z.string(),
    cloneName: z.string(),
    cloneUuid: z.string(),
    domid: z.number().int(),
    ticket: z.string().openapi({ description: 'the short id the audit and the monitor log use' }),
    expiresAt: z.string().openapi({ description: 'the ticket is refused after this' }),
  })
  .openapi('ConsoleTicket');
