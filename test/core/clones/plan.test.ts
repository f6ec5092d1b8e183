import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  IFNAME_MAX,
  type SnapshotTarget,
  classifyDisks,
  cloneVifName,
  consoleTypeOf,
  parseOriginalConfig,
  planClone,
  regeneratedMac,
  replicationIn,
  shortIdFor,
} from '../../../src/core/clones/plan.js';
import { type ZyncloneConfig, defaultConfig } from '../../../src/core/config/index.js';
import { XlConfig, parseDisk, parseVif } from '../../../src/xen/index.js';

const fixtures = join(__dirname, '../../fixtures/xl');
const winText = readFileSync(join(fixtures, 'win-hvm.cfg'), 'utf8');
const WIN_UUID = '3c1f5a0e-9b7d-4e52-a1c4-2f6d8e9b0a11';
const CLONE_UUID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';

function cfg(over: Partial<ZyncloneConfig> = {}): ZyncloneConfig {
  return { ...defaultConfig(), ...over };
}

const winSnapshots: SnapshotTarget[] = [
  { vdev: 'hda', dest: '/var/lib/zynclone/volumes/win2019-prod-clone.hda', format: 'raw' },
  { vdev: 'hdb', dest: '/var/lib/zynclone/volumes/win2019-prod-clone.hdb.qcow2', format: 'qcow2' },
];

function planWin(over: Partial<ZyncloneConfig> = {}, kind: 'online' | 'memory' = 'online') {
  return planClone({
    vm: 'win2019-prod',
    original: parseOriginalConfig(winText, 'win-hvm.cfg'),
    config: cfg(over),
    kind,
    cloneName: 'win2019-prod-clone',
    cloneUuid: CLONE_UUID,
    originalUuid: WIN_UUID,
    snapshots: winSnapshots,
  });
}

describe('clone plan', () => {
  it('gives the clone its new name and a new UUID, never the original one', () => {
    const plan = planWin();
    const out = XlConfig.parse(plan.configText);
    expect(out.getString('name')).toBe('win2019-prod-clone');
    expect(out.getString('uuid')).toBe(CLONE_UUID);
    expect(() =>
      planClone({
        vm: 'win2019-prod',
        original: parseOriginalConfig(winText, 'x'),
        config: cfg(),
        kind: 'online',
        cloneName: 'c',
        cloneUuid: WIN_UUID.toUpperCase(),
        originalUuid: WIN_UUID,
        snapshots: winSnapshots,
      }),
    ).toThrow(expect.objectContaining({ code: 'CLONE_CONFIG' }));
  });

  it('points writable disks at their snapshots and keeps the cdrom', () => {
    const plan = planWin();
    const disks = XlConfig.parse(plan.configText).getStrings('disk')!.map(parseDisk);
    expect(disks.map((d) => [d.vdev, d.target, d.format])).toEqual([
      ['hda', '/var/lib/zynclone/volumes/win2019-prod-clone.hda', 'raw'],
      ['hdb', '/var/lib/zynclone/volumes/win2019-prod-clone.hdb.qcow2', 'qcow2'],
      ['hdc', '/srv/iso/virtio-win.iso', 'raw'],
    ]);
    expect(disks[2]!.devtype).toBe('cdrom');
    expect(plan.disks.map((d) => d.action)).toEqual(['snapshot', 'snapshot', 'keep']);
  });

  it('refuses a plan that misses a snapshot for a writable disk', () => {
    expect(() =>
      planClone({
        vm: 'win2019-prod',
        original: parseOriginalConfig(winText, 'x'),
        config: cfg(),
        kind: 'online',
        cloneName: 'c',
        cloneUuid: CLONE_UUID,
        snapshots: winSnapshots.slice(0, 1),
      }),
    ).toThrow(/no snapshot planned for disk hdb/);
  });

  it('shares volumes named in shared_volumes by vdev or by spec', () => {
    const original = parseOriginalConfig(winText, 'x');
    const byVdev = classifyDisks(original, cfg({ shared_volumes: ['hdb'] }));
    expect(byVdev.map((d) => d.action)).toEqual(['snapshot', 'share', 'keep']);
    const bySpec = classifyDisks(
      original,
      cfg({ shared_volumes: ['phy:/dev/vg0/win2019-c,hda,w'] }),
    );
    expect(bySpec.map((d) => d.action)).toEqual(['share', 'snapshot', 'keep']);
    const plan = planClone({
      vm: 'win2019-prod',
      original,
      config: cfg({ shared_volumes: ['hdb'] }),
      kind: 'online',
      cloneName: 'c1',
      cloneUuid: CLONE_UUID,
      snapshots: winSnapshots.slice(0, 1),
    });
    // The original holds it: the clone's config leaves it out (detached, the default)...
    const disks = XlConfig.parse(plan.configText).getStrings('disk')!.map(parseDisk);
    expect(disks.map((d) => d.vdev)).toEqual(['hda', 'hdc']);
    expect(plan.disks[1]).toMatchObject({ action: 'share', cloneSpec: null });
    // ...or carries it read-only.
    const ro = planClone({
      vm: 'win2019-prod',
      original,
      config: cfg({ shared_volumes: ['hdb'], shared_volume_mode: 'ro' }),
      kind: 'online',
      cloneName: 'c1',
      cloneUuid: CLONE_UUID,
      snapshots: winSnapshots.slice(0, 1),
    });
    const roDisks = XlConfig.parse(ro.configText).getStrings('disk')!.map(parseDisk);
    expect(roDisks.map((d) => [d.vdev, d.target, d.access])).toEqual([
      ['hda', '/var/lib/zynclone/volumes/win2019-prod-clone.hda', 'rw'],
      ['hdb', '/srv/xen/win2019/data,1.qcow2', 'ro'],
      ['hdc', '/srv/iso/virtio-win.iso', 'ro'],
    ]);
  });

  it('names every clone vif with the prefix, within 15 characters, and moves masked ones to the isolation bridge', () => {
    const plan = planWin({ clone_vif_mask: '1' });
    const vifs = XlConfig.parse(plan.configText).getStrings('vif')!.map(parseVif);
    const short = shortIdFor(CLONE_UUID, 'zcv');
    expect(vifs.map((v) => v.vifname)).toEqual([`zcv${short}.0`, `zcv${short}.1`]);
    expect(vifs.map((v) => v.bridge)).toEqual(['xenbr0', 'zc-isolated']);
    expect(plan.cloneVifs.map((v) => v.masked)).toEqual([false, true]);
    for (const v of plan.cloneVifs) expect(v.name.length).toBeLessThanOrEqual(IFNAME_MAX);
    // The original's other vif settings stay.
    expect(vifs[0]!.model).toBe('e1000');
    expect(vifs[1]!.ip).toBe('10.0.2.15');
  });

  it('masks every vif by default', () => {
    const plan = planWin();
    expect(plan.cloneVifs.every((v) => v.masked && v.bridge === 'zc-isolated')).toBe(true);
    expect(plan.cloneVifMask).toBe('all');
    expect(plan.originalVifMask).toBe('none');
    expect(plan.originalVifs.map((v) => [v.devid, v.masked, v.vifname])).toEqual([
      [0, false, 'win2019p.0'],
      [1, false, undefined],
    ]);
  });

  it('keeps vif names within IFNAMSIZ for the longest prefix and devid', () => {
    const short = shortIdFor(CLONE_UUID, 'abcdefg');
    expect(cloneVifName('abcdefg', short, 63).length).toBe(IFNAME_MAX);
  });

  it('keeps or regenerates MACs per policy; memory clones always keep them', () => {
    const kept = planWin({ mac_policy: 'keep' });
    expect(kept.cloneVifs.map((v) => v.mac)).toEqual(['00:16:3e:5a:01:01', '00:16:3e:5a:01:02']);
    const fresh = planWin({ mac_policy: 'regenerate' });
    expect(fresh.cloneVifs.map((v) => v.mac)).toEqual([
      regeneratedMac(CLONE_UUID, 0),
      regeneratedMac(CLONE_UUID, 1),
    ]);
    for (const v of fresh.cloneVifs) {
      expect(v.mac).toMatch(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
      expect(['00:16:3e:5a:01:01', '00:16:3e:5a:01:02']).not.toContain(v.mac);
    }
    const memory = planWin({ mac_policy: 'regenerate' }, 'memory');
    expect(memory.cloneVifs.map((v) => v.mac)).toEqual(['00:16:3e:5a:01:01', '00:16:3e:5a:01:02']);
  });

  it('takes MACs of vifs without one from the running original', () => {
    const original = XlConfig.parse('name="a"\nvif=["bridge=xenbr0"]\n');
    const plan = planClone({
      vm: 'a',
      original,
      config: cfg(),
      kind: 'memory',
      cloneName: 'a-clone',
      cloneUuid: CLONE_UUID,
      snapshots: [],
      runningMacs: new Map([[0, '00:16:3e:00:00:09']]),
    });
    expect(plan.cloneVifs[0]!.mac).toBe('00:16:3e:00:00:09');
  });

  it('strips host-bound peripherals unless kept', () => {
    const plan = planWin();
    const out = XlConfig.parse(plan.configText);
    for (const key of ['pci', 'usb', 'usbctrl', 'usbdev', 'vtpm', 'serial']) {
      expect(out.has(key), key).toBe(false);
    }
    expect(plan.removedPeripherals).toEqual(['pci', 'usb', 'usbctrl', 'usbdev', 'serial', 'vtpm']);
    const keep = XlConfig.parse(planWin({ keep_peripherals: ['usb', 'serial'] }).configText);
    expect(keep.getString('usb')).toBe('1');
    expect(keep.getString('serial')).toBe('pty');
    expect(keep.has('pci')).toBe(false);
    // Unrelated settings stay as written.
    expect(out.getStrings('viridian')).toEqual(['defaults', 'time_ref_count']);
    expect(out.getString('on_crash')).toBe('preserve');
  });

  it('detects consoles: VNC, SPICE only (with a warning), none', () => {
    expect(planWin().console).toEqual({ type: 'vnc', enabled: true });
    expect(consoleTypeOf(XlConfig.parse('type="hvm"\nvnc=0\nspice=1\n'))).toBe('spice');
    expect(consoleTypeOf(XlConfig.parse('type="pv"\n'))).toBe('none');
    expect(consoleTypeOf(XlConfig.parse('type="pv"\nvfb=["vnc=1"]\n'))).toBe('vnc');
    const spice = planClone({
      vm: 'a',
      original: XlConfig.parse('name="a"\ntype="hvm"\nvnc=0\nspice=1\nspiceport=6000\n'),
      config: cfg(),
      kind: 'online',
      cloneName: 'a-clone',
      cloneUuid: CLONE_UUID,
      snapshots: [],
    });
    expect(spice.console).toEqual({ type: 'spice', enabled: false });
    expect(spice.warnings.join('\n')).toMatch(/SPICE/);
  });

  it('frees fixed VNC displays', () => {
    const plan = planClone({
      vm: 'a',
      original: XlConfig.parse('name="a"\ntype="pv"\nvfb=["vnc=1,vncdisplay=3"]\n'),
      config: cfg(),
      kind: 'online',
      cloneName: 'a-clone',
      cloneUuid: CLONE_UUID,
      snapshots: [],
    });
    expect(XlConfig.parse(plan.configText).getStrings('vfb')).toEqual(['vnc=1,vncunused=1']);
  });

  it('finds COLO replication in the config', () => {
    expect(replicationIn(XlConfig.parse(winText))).toBeUndefined();
    expect(
      replicationIn(
        XlConfig.parse(
          "disk=['format=raw,vdev=xvda,colo,colo-host=h,colo-port=9000,colo-export=e,active-disk=/a,hidden-disk=/h,target=/x']\n",
        ),
      ),
    ).toMatch(/COLO/);
  });

  it('refuses a config of another VM and bad masks with CLONE_CONFIG', () => {
    expect(() =>
      planClone({
        vm: 'other',
        original: XlConfig.parse(winText),
        config: cfg(),
        kind: 'online',
        cloneName: 'c',
        cloneUuid: CLONE_UUID,
        snapshots: winSnapshots,
      }),
    ).toThrow(/not of other/);
    expect(() => planWin({ clone_vif_mask: 'bogus' })).toThrow(
      expect.objectContaining({ code: 'CLONE_CONFIG' }),
    );
  });
});
