import { describe, expect, it } from 'vitest';
import {
  PathError,
  asVmName,
  validateVmName,
  zynclonePaths,
  zyncloneRoot,
} from '../../src/core/paths.js';

describe('paths', () => {
  it('hangs every path off ZYNCLONE_ROOT', () => {
    const root = zyncloneRoot({ ZYNCLONE_ROOT: '/tmp/zc-root/' });
    const p = zynclonePaths(root);
    expect(p.baseConfigFile).toBe('/tmp/zc-root/etc/xen/clone/base.json');
    expect(p.overrideFile(validateVmName('web1'))).toBe(
      '/tmp/zc-root/etc/xen/clone/override/web1.json',
    );
    expect(p.guestCfgFile(validateVmName('web1'))).toBe(
      '/tmp/zc-root/etc/xen/clone/guest/web1.cfg',
    );
    expect(p.stateDb).toBe('/tmp/zc-root/var/lib/zynclone/state.db');
    expect(p.resolve('/var/lib/zynclone/volumes')).toBe('/tmp/zc-root/var/lib/zynclone/volumes');
  });

  it('defaults to / and refuses a relative root', () => {
    expect(zyncloneRoot({})).toBe('/');
    expect(zynclonePaths('/').baseConfigFile).toBe('/etc/xen/clone/base.json');
    expect(() => zyncloneRoot({ ZYNCLONE_ROOT: 'rel/dir' })).toThrow(
      expect.objectContaining({ code: 'ROOT_INVALID' }),
    );
  });

  it('never resolves a config path outside the root', () => {
    expect(() => zynclonePaths('/tmp/r').resolve('/var/../../etc/passwd')).toThrow(PathError);
  });

  it.each(['web1', 'Win-2019_a.b', 'a', 'x'.repeat(64)])('accepts VM name %j', (name) => {
    expect(validateVmName(name)).toBe(name);
    expect(asVmName(name)).toBe(name);
  });

  it.each([
    ['', /empty/],
    ['../etc', /only letters/],
    ['a/b', /only letters/],
    ['-rf', /only letters/],
    ['.hidden', /only letters/],
    ['a b', /only letters/],
    ['vm\n', /only letters/],
    ['x'.repeat(65), /longer than 64/],
    ['12', /domain id/],
  ])('refuses VM name %j with a reason', (name, reason) => {
    expect(() => validateVmName(name)).toThrow(reason);
    expect(() => validateVmName(name)).toThrow(
      expect.objectContaining({ code: 'VM_NAME_INVALID' }),
    );
    expect(asVmName(name)).toBeUndefined();
  });
});
