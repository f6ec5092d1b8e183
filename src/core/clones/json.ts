/**
 * A clone and its status as JSON, the one shape `vmclone list|status --json`
 * and the web API (`GET /api/v1/clones[/{vm}]`) both answer with.
 */
import type { CloneRecord } from '../state/types.js';
import type { CloneStatus, CreateResult } from './lifecycle.js';

export function cloneJson(c: CloneRecord) {
  return {
    vm: c.vm,
    cloneName: c.cloneName,
    state: c.state,
    kind: c.kind,
    cloneDomid: c.cloneDomid,
    cloneUuid: c.cloneUuid,
    sourceUuid: c.sourceUuid,
    requestedBy: c.requestedBy,
    createdAt: new Date(c.createdAt).toISOString(),
    updatedAt: new Date(c.updatedAt).toISOString(),
    snapshots: c.snapshots,
  };
}

/** What a create answers with: `vmclone create --json` and `POST /api/v1/clones`. */
export function createResultJson(r: CreateResult) {
  return {
    clone: cloneJson(r.clone),
    originalPauseMs: r.originalPauseMs ?? null,
    memoryCopy: r.memoryCopy ?? null,
    totalMs: r.totalMs,
    removedPeripherals: [...r.plan.removedPeripherals],
    vifs: r.plan.cloneVifs.map((v) => ({
      devid: v.devid,
      name: v.name,
      masked: v.masked,
      bridge: v.bridge,
      mac: v.mac ?? null,
    })),
    warnings: [...r.warnings],
  };
}

/** `sharedVolumes`: the VM's shared volumes, their holder and attachments (volumes' holdingsJson). */
export function statusJson(s: CloneStatus, sharedVolumes: unknown) {
  return {
    vm: s.vm,
    clone: s.clone ? cloneJson(s.clone) : null,
    domain: s.domain ?? null,
    original: s.originalDomain ?? null,
    lockdown: { generation: s.generation ?? null, ack: s.ack ?? null },
    operation: s.running
      ? { id: s.running.id, kind: s.running.kind, ownerPid: s.running.owner.pid }
      : null,
    configFile: s.configFile ?? null,
    note: s.note ?? null,
    sharedVolumes,
  };
}
