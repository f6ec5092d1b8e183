// configPolicy: who a domain is and what it may ask, from the real
// configuration files and state store, as each guest request is admitted.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setOverride } from '../../../src/core/config/index.js';
import { type ZynclonePaths, validateVmName, zynclonePaths } from '../../../src/core/paths.js';
import { type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { configPolicy } from '../../../src/daemons/orchestrator/host.js';
import type { Admission } from '../../../src/daemons/orchestrator/orchestrator.js';

const WEB01 = validateVmName('web01');
const web01 = { domid: 5, name: 'web01', uuid: '00000000-0000-4000-8000-000000000005' };

function allowed(a: Admission): readonly string[] {
  if (!a.serve) throw new Error(`not served: ${a.reason}`);
  return a.allowedOps;
}

describe('configPolicy', () => {
  let dir: string;
  let paths: ZynclonePaths;
  let store: StateStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'zc-orch-policy-'));
    paths = zynclonePaths(join(dir, 'root'));
    store = openStateStore({ paths });
    setOverride(WEB01, 'guest_orchestration', 'true', paths);
    setOverride(WEB01, 'guest_allowed_operations', 'status', paths);
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sees a file edited in place on the very next request', () => {
    const policy = configPolicy(paths, store);
    const file = paths.overrideFile(WEB01);
    const text = (op: string) =>
      JSON.stringify({ guest_orchestration: true, guest_allowed_operations: [op] });
    expect(allowed(policy.admit(web01))).toEqual(['status']);
    // Same size, same inode, written right after the last read: only the times tell.
    writeFileSync(file, text('remove'));
    expect(allowed(policy.admit(web01))).toEqual(['remove']);
    writeFileSync(file, text('create'));
    expect(allowed(policy.admit(web01))).toEqual(['create']);
  });

  it('parses settled files once, and again whenever one is replaced, edited or removed', () => {
    // Ten seconds on: every file counts as settled.
    const policy = configPolicy(paths, store, () => Date.now() + 10_000);
    const first = allowed(policy.admit(web01));
    expect(allowed(policy.admit(web01))).toBe(first);

    setOverride(WEB01, 'guest_allowed_operations', 'status,create', paths);
    expect(allowed(policy.admit(web01))).toEqual(['status', 'create']);

    writeFileSync(
      paths.overrideFile(WEB01),
      JSON.stringify({ guest_orchestration: true, guest_allowed_operations: ['stop'] }),
    );
    expect(allowed(policy.admit(web01))).toEqual(['stop']);

    writeFileSync(paths.baseConfigFile, JSON.stringify({ guest_allowed_operations: ['start'] }));
    rmSync(paths.overrideFile(WEB01));
    expect(policy.admit(web01)).toEqual({ serve: false, reason: 'guest_orchestration is off' });
  });

  it('knows a clone by its domain name or UUID and applies its original configuration', () => {
    const policy = configPolicy(paths, store);
    store.putClone({
      vm: 'web01',
      cloneName: 'web01-clone',
      cloneUuid: '00000000-0000-4000-8000-0000000000c1',
      state: 'running',
      kind: 'online',
      sourceUuid: web01.uuid,
      requestedBy: 'user:root',
    });
    for (const domain of [
      { domid: 7, name: 'web01-clone', uuid: '00000000-0000-4000-8000-000000000007' },
      { domid: 8, name: 'renamed', uuid: '00000000-0000-4000-8000-0000000000c1' },
    ]) {
      expect(policy.admit(domain)).toMatchObject({
        serve: true,
        vm: domain.name,
        cloneOf: 'web01',
        allowedOps: ['status'],
        allowCloneRequests: false,
      });
    }
    expect(policy.admit({ ...web01, domid: 9, name: 'db01' })).toEqual({
      serve: false,
      reason: 'guest_orchestration is off',
    });
  });
});
