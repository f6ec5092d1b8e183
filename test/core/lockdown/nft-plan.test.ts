import { describe, expect, it } from 'vitest';
import {
  type VmInput,
  diffSets,
  isEmptyDiff,
  isValidIfname,
  planLockdown,
} from '../../../src/core/lockdown/nft-plan.js';
import {
  NftScriptError,
  renderCreateScript,
  renderDiffScript,
  renderReconcileScript,
} from '../../../src/core/lockdown/nft-script.js';

const opts = { cloneVifPrefix: 'zcv' };

function vm(over: Partial<VmInput> & { vm: string }): VmInput {
  return {
    state: 'running',
    generation: '1',
    originalVifMask: 'none',
    cloneVifs: [],
    originalVifs: [],
    ...over,
  };
}

describe('planLockdown', () => {
  it('allows a clone vif only when masked is exactly 0', () => {
    const plan = planLockdown(
      [
        vm({
          vm: 'web',
          cloneVifs: [
            { devid: 0, name: 'zcv7.0', masked: '0' },
            { devid: 1, name: 'zcv7.1', masked: '1' },
            { devid: 2, name: 'zcv7.2', masked: undefined },
            { devid: 3, name: 'zcv7.3', masked: 'no' },
          ],
        }),
      ],
      opts,
    );
    expect(plan.sets).toEqual({ cloneAllowed: ['zcv7.0'], masked: [] });
    expect(plan.vms[0]).toMatchObject({
      vm: 'web',
      generation: 1,
      allowedCloneVifs: ['zcv7.0'],
      complete: true,
    });
  });

  it('drops masked original vifs only while the clone is running or active', () => {
    const originalVifs = [
      { devid: 0, name: 'vif5.0', masked: '1' },
      { devid: 1, name: 'vif5.1', masked: '0' },
    ];
    for (const state of ['running', 'active']) {
      const plan = planLockdown([vm({ vm: 'db', state, originalVifs })], opts);
      expect(plan.sets.masked).toEqual(['vif5.0']);
      expect(plan.vms[0]!.droppedOriginalVifs).toEqual(['vif5.0']);
    }
    const inactive = planLockdown([vm({ vm: 'db', state: 'inactive', originalVifs })], opts);
    expect(inactive.sets.masked).toEqual([]);
    expect(inactive.vms[0]!.complete).toBe(true);
  });

  it('falls back to original-vif-mask when a vif has no masked node', () => {
    const originalVifs = [
      { devid: 0, name: 'vif5.0', masked: undefined },
      { devid: 2, name: 'vif5.2', masked: undefined },
    ];
    expect(
      planLockdown([vm({ vm: 'a', originalVifMask: '0x4', originalVifs })], opts).sets.masked,
    ).toEqual(['vif5.2']);
    expect(
      planLockdown([vm({ vm: 'a', originalVifMask: 'all', originalVifs })], opts).sets.masked,
    ).toEqual(['vif5.0', 'vif5.2']);
  });

  it('drops an original vif when nothing valid says whether to (fail closed)', () => {
    const plan = planLockdown(
      [
        vm({
          vm: 'a',
          originalVifMask: 'bogus',
          originalVifs: [{ devid: 0, name: 'vif5.0', masked: undefined }],
        }),
      ],
      opts,
    );
    expect(plan.sets.masked).toEqual(['vif5.0']);
    expect(plan.vms[0]!.problems.join()).toMatch(/invalid vif mask/);
  });

  it('does not acknowledge a VM whose masked original vif has no usable name', () => {
    const plan = planLockdown(
      [vm({ vm: 'a', originalVifs: [{ devid: 0, name: 'bad"name', masked: '1' }] })],
      opts,
    );
    expect(plan.sets.masked).toEqual([]);
    expect(plan.vms[0]!.complete).toBe(false);
    expect(plan.vms[0]!.problems[0]).toMatch(/original vif 0: cannot drop it/);
  });

  it('keeps a clone vif with a bad name dropped, and still acknowledges', () => {
    const plan = planLockdown(
      [vm({ vm: 'a', cloneVifs: [{ devid: 0, name: 'zcv*', masked: '0' }] })],
      opts,
    );
    expect(plan.sets.cloneAllowed).toEqual([]);
    expect(plan.vms[0]!.complete).toBe(true);
    expect(plan.vms[0]!.problems[0]).toMatch(/cannot allow it/);
  });

  it('drops by name a masked clone vif that lacks the prefix', () => {
    const plan = planLockdown(
      [vm({ vm: 'a', cloneVifs: [{ devid: 0, name: 'odd0', masked: '1' }] })],
      opts,
    );
    expect(plan.sets.masked).toEqual(['odd0']);
    expect(plan.vms[0]!.droppedOriginalVifs).toEqual([]);
  });

  it('never acknowledges without a valid generation', () => {
    for (const generation of [undefined, '', '01', '1.5', '-3']) {
      const plan = planLockdown([vm({ vm: 'a', generation })], opts);
      expect(plan.vms[0]!.complete).toBe(false);
      expect(plan.vms[0]!.generation).toBeUndefined();
    }
  });

  it('lets a drop win over an allow of the same name', () => {
    const plan = planLockdown(
      [
        vm({ vm: 'a', cloneVifs: [{ devid: 0, name: 'zcvx', masked: '0' }] }),
        vm({ vm: 'b', originalVifs: [{ devid: 0, name: 'zcvx', masked: '1' }] }),
      ],
      opts,
    );
    expect(plan.sets).toEqual({ cloneAllowed: [], masked: ['zcvx'] });
    expect(plan.vms[0]!.allowedCloneVifs).toEqual([]);
  });

  it('is deterministic whatever the input order', () => {
    const a = vm({
      vm: 'a',
      cloneVifs: [
        { devid: 1, name: 'zcv1.1', masked: '0' },
        { devid: 0, name: 'zcv1.0', masked: '0' },
      ],
      originalVifs: [{ devid: 0, name: 'vif3.0', masked: '1' }],
    });
    const b = vm({ vm: 'b', cloneVifs: [{ devid: 0, name: 'zcv2.0', masked: '0' }] });
    const one = planLockdown([a, b], opts);
    const two = planLockdown([b, a], opts);
    expect(one).toEqual(two);
    expect(one.sets.cloneAllowed).toEqual(['zcv1.0', 'zcv1.1', 'zcv2.0']);
    expect(renderReconcileScript({ table: 't', cloneVifPrefix: 'zcv' }, one.sets)).toBe(
      renderReconcileScript({ table: 't', cloneVifPrefix: 'zcv' }, two.sets),
    );
  });
});

describe('diffSets', () => {
  it('lists additions and removals per set', () => {
    const d = diffSets(
      { cloneAllowed: ['zcv1', 'zcv2'], masked: ['vif1.0'] },
      { cloneAllowed: ['zcv2', 'zcv3'], masked: [] },
    );
    expect(d).toEqual({
      cloneAllowed: { add: ['zcv3'], remove: ['zcv1'] },
      masked: { add: [], remove: ['vif1.0'] },
    });
    expect(isEmptyDiff(d)).toBe(false);
    const same = { cloneAllowed: ['a'], masked: ['b'] };
    expect(isEmptyDiff(diffSets(same, same))).toBe(true);
  });
});

describe('nft scripts', () => {
  const spec = { table: 'zynclone', cloneVifPrefix: 'zcv' };

  it('renders the standing rule and both sets in every family', () => {
    const script = renderReconcileScript(spec, { cloneAllowed: ['zcv1.0'], masked: ['vif5.0'] });
    for (const family of ['bridge', 'inet', 'arp']) {
      expect(script).toContain(
        `add rule ${family} zynclone vif_in iifname "zcv*" iifname != @clone_allowed counter drop`,
      );
      expect(script).toContain(`add rule ${family} zynclone vif_out oifname @masked counter drop`);
      expect(script).toContain(`add element ${family} zynclone clone_allowed { "zcv1.0" }`);
      expect(script).toContain(`add element ${family} zynclone masked { "vif5.0" }`);
    }
    // Never deletes the table: a packet must never find it missing.
    expect(script).not.toMatch(/delete table|flush ruleset/);
  });

  it('renders only element changes for a diff, and nothing for no change', () => {
    const script = renderDiffScript(spec, {
      cloneAllowed: { add: ['zcv2.0'], remove: ['zcv1.0'] },
      masked: { add: [], remove: [] },
    });
    expect(script.split('\n').filter(Boolean)).toEqual([
      'delete element bridge zynclone clone_allowed { "zcv1.0" }',
      'add element bridge zynclone clone_allowed { "zcv2.0" }',
      'delete element inet zynclone clone_allowed { "zcv1.0" }',
      'add element inet zynclone clone_allowed { "zcv2.0" }',
      'delete element arp zynclone clone_allowed { "zcv1.0" }',
      'add element arp zynclone clone_allowed { "zcv2.0" }',
    ]);
    const none = { add: [], remove: [] };
    expect(renderDiffScript(spec, { cloneAllowed: none, masked: none })).toBe('');
  });

  it('creates only the missing families', () => {
    const script = renderCreateScript(spec, ['arp']);
    expect(script).toContain('add table arp zynclone');
    expect(script).not.toContain('bridge');
    expect(renderCreateScript(spec, [])).toBe('');
  });

  it('refuses names and prefixes that could break the script', () => {
    expect(() => renderReconcileScript({ table: 'a b', cloneVifPrefix: 'zcv' }, empty())).toThrow(
      NftScriptError,
    );
    expect(() => renderReconcileScript({ table: 't', cloneVifPrefix: 'z"' }, empty())).toThrow(
      /clone vif prefix/,
    );
    expect(() =>
      renderReconcileScript(spec, { cloneAllowed: ['x" } ; flush ruleset'], masked: [] }),
    ).toThrow(/refusing interface name/);
    for (const bad of ['', '.', 'a/b', 'a b', 'x*', 'sixteen-chars-xx', 'q"']) {
      expect(isValidIfname(bad)).toBe(false);
    }
    for (const good of ['vif5.0', 'zcv12.3', 'vif5.0-emu', 'fifteen-chars-x']) {
      expect(isValidIfname(good)).toBe(true);
    }
  });
});

function empty() {
  return { cloneAllowed: [], masked: [] };
}
