import { describe, expect, it } from 'vitest';
import {
  type AccessMode,
  SWITCH_STEPS,
  paramsPath,
  sharingConflict,
  withSharedDisk,
} from '../../../src/core/volumes/index.js';
import { parseDisk } from '../../../src/xen/index.js';

const at = (domid: number, devid: number, mode: AccessMode) => ({ domid, devid, mode });

describe('the single-writer rule', () => {
  const cases: [string, ReturnType<typeof at>[], ReturnType<typeof at>, number | undefined][] = [
    ['nobody has it', [], at(5, 51728, 'w'), undefined],
    ['another domain writes it: no second writer', [at(3, 51728, 'w')], at(5, 51728, 'w'), 3],
    ['another domain writes it: no reader either', [at(3, 51728, 'w')], at(5, 51728, 'r'), 3],
    ['another domain reads it: no writer', [at(3, 51728, 'r')], at(5, 51728, 'w'), 3],
    ['readers share it', [at(3, 51728, 'r')], at(5, 51728, 'r'), undefined],
    [
      'the same device of the same domain is that attachment',
      [at(5, 51728, 'w')],
      at(5, 51728, 'w'),
      undefined,
    ],
    [
      'a second device of the same domain is a second writer',
      [at(5, 51728, 'w')],
      at(5, 51744, 'w'),
      5,
    ],
    // Xen's block script exempts domains of the same VM UUID; this rule exempts nobody.
    ['a clone with the original UUID gets no exemption', [at(3, 51728, 'w')], at(4, 51728, 'w'), 3],
  ];
  for (const [what, existing, want, conflict] of cases) {
    it(what, () => {
      expect(sharingConflict(existing, want)?.domid).toBe(conflict);
    });
  }
});

describe('backend params', () => {
  it('names the volume with or without a format prefix', () => {
    expect(paramsPath('/dev/vg/data')).toBe('/dev/vg/data');
    expect(paramsPath('aio:/var/lib/xen/images/data.img')).toBe('/var/lib/xen/images/data.img');
    expect(paramsPath('qcow2:/img/a.qcow2')).toBe('/img/a.qcow2');
  });
});

describe("the clone's config carries the volume exactly while the clone holds it", () => {
  const spec = parseDisk('format=raw,vdev=xvdb,access=w,target=/img/shared.img');
  const volume = { vdev: 'xvdb', text: 'x', spec, target: '/img/shared.img' };
  const cfg = `# generated\nname = "db01-clone"\ndisk = [ 'format=raw,vdev=xvda,access=rw,target=/v/root.img' ]\n`;

  it('adds it writable, keeps the rest and the comment, and removes it again', () => {
    const held = withSharedDisk(cfg, volume, true);
    expect(held).toContain('# generated');
    expect(held).toContain('target=/v/root.img');
    expect(held).toMatch(/vdev=xvdb, access=rw, target=\/img\/shared\.img/);
    expect(withSharedDisk(held, volume, true)).toBe(held);
    const back = withSharedDisk(held, volume, false);
    expect(back).not.toContain('xvdb');
    expect(back).toContain('target=/v/root.img');
  });
});

describe('switch steps', () => {
  it('are exported in order for crash tests', () => {
    expect(SWITCH_STEPS).toEqual(['plan', 'detach', 'clone-config', 'attach', 'record']);
  });
});
