// The one function that says what a clone's lockdown must be, and the clone
// metadata it reads: masks and bridges come from the configuration passed in
// (the current one), never from the metadata written at creation.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cloneLockdown, lockedCloneConfig } from '../../../src/core/clones/lockdown.js';
import {
  type CloneMeta,
  cloneMetaFile,
  clonesDir,
  readCloneMeta,
  writeCloneMeta,
} from '../../../src/core/clones/meta.js';
import { type ZyncloneConfig, defaultConfig } from '../../../src/core/config/index.js';
import { type VmName, zynclonePaths } from '../../../src/core/paths.js';
import { XlConfig, parseVif } from '../../../src/xen/index.js';

const META: CloneMeta = {
  version: 2,
  vm: 'web' as VmName,
  cloneName: 'web-clone',
  cloneUuid: '1234abcd-0000-4000-8000-000000000001',
  kind: 'online',
  originalConfigFile: '/etc/xen/web.cfg',
  cloneVifs: [
    {
      devid: 0,
      name: 'zcv1234abcd.0',
      productionSpec: 'mac=00:16:3e:00:00:01,bridge=xenbr0,vifname=zcv1234abcd.0,devid=0',
    },
    {
      devid: 1,
      name: 'zcv1234abcd.1',
      productionSpec:
        'mac=00:16:3e:00:00:02,bridge=xenbr1,script=vif-route,gatewaydev=eth1,vifname=zcv1234abcd.1,devid=1',
    },
  ],
  originalVifs: [
    { devid: 0, vifname: null },
    { devid: 1, vifname: 'web-lan' },
  ],
  consoleType: 'vnc',
};

const cfg = (over: Partial<ZyncloneConfig> = {}): ZyncloneConfig => ({
  ...defaultConfig(),
  ...over,
});

describe('cloneLockdown', () => {
  it('masks and isolates from the configuration it is given', () => {
    const all = cloneLockdown('web', 'web-clone', META, 'running', cfg(), {});
    expect(all.publication.cloneVifMask).toBe('all');
    expect(all.cloneVifs.map((v) => [v.masked, v.bridge])).toEqual([
      [true, 'zc-isolated'],
      [true, 'zc-isolated'],
    ]);
    // A routed vif on the isolation bridge would route around it.
    const routed = parseVif(all.cloneVifs[1]!.spec);
    expect(routed).toMatchObject({ bridge: 'zc-isolated', script: 'vif-bridge' });
    expect(routed.gatewaydev).toBeUndefined();
    expect(routed.mac).toBe('00:16:3e:00:00:02');

    const none = cloneLockdown(
      'web',
      'web-clone',
      META,
      'running',
      cfg({ clone_vif_mask: 'none' }),
      {},
    );
    expect(none.publication.cloneVifMask).toBe('none');
    expect(none.cloneVifs.map((v) => [v.masked, v.bridge])).toEqual([
      [false, 'xenbr0'],
      [false, 'xenbr1'],
    ]);
    expect(parseVif(none.cloneVifs[1]!.spec).script).toBe('vif-route');

    const one = cloneLockdown('web', 'web-clone', META, 'active', cfg({ clone_vif_mask: '1' }), {});
    expect(one.publication.cloneVifs).toEqual([
      { devid: 0, name: 'zcv1234abcd.0', masked: false },
      { devid: 1, name: 'zcv1234abcd.1', masked: true },
    ]);
  });

  it('fails closed when the configuration cannot be read', () => {
    const l = cloneLockdown('web', 'web-clone', META, 'running', new Error('bad override'), {});
    expect(l.configProblem).toBe('bad override');
    expect(l.publication.cloneVifs.every((v) => v.masked)).toBe(true);
    expect(l.publication.cloneVifMask).toBe('all');
  });

  it('publishes no clone vif when the metadata is unreadable (they stay dropped)', () => {
    const l = cloneLockdown('web', 'web-clone', undefined, 'running', cfg(), { cloneDomid: 7 });
    expect(l.cloneVifs).toEqual([]);
    expect(l.publication).toMatchObject({
      cloneDomid: 7,
      cloneVifs: [],
      console: { type: 'none' },
    });
  });

  it("names the original's vifs from the live domain, masked by original_vif_mask", () => {
    const running = cloneLockdown(
      'web',
      'web-clone',
      META,
      'running',
      cfg({ original_vif_mask: '0' }),
      {
        original: { domid: 12, nics: [{ devid: 0 }, { devid: 1, vifname: 'web-lan' }] },
        cloneDomid: 13,
      },
    );
    expect(running.publication).toMatchObject({ originalDomid: 12, cloneDomid: 13 });
    expect(running.publication.originalVifs).toEqual([
      { devid: 0, name: 'vif12.0', masked: true },
      { devid: 1, name: 'web-lan', masked: false },
    ]);
    // Shut down: only a vif its config names has a name to drop.
    const stopped = cloneLockdown(
      'web',
      'web-clone',
      META,
      'active',
      cfg({ original_vif_mask: 'all' }),
      {},
    );
    expect(stopped.publication.originalVifs).toEqual([{ devid: 1, name: 'web-lan', masked: true }]);
    expect(stopped.publication.originalDomid).toBeUndefined();
  });

  it('turns the VNC console on only when the configuration allows it', () => {
    expect(cloneLockdown('web', 'c', META, 'running', cfg(), {}).publication.console).toEqual({
      type: 'vnc',
      enabled: true,
    });
    expect(
      cloneLockdown('web', 'c', META, 'running', cfg({ console_enabled: false }), {}).publication
        .console.enabled,
    ).toBe(false);
  });
});

describe('lockedCloneConfig', () => {
  it("rewrites only the clone config's vifs, from the lockdown", () => {
    const text = `# generated\nname = "web-clone"\nmemory = 64\nvif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0,vifname=zcv1234abcd.0,devid=0' ]\n`;
    const l = cloneLockdown('web', 'web-clone', META, 'running', cfg(), {});
    const out = XlConfig.parse(lockedCloneConfig(text, 'web-clone.cfg', l));
    expect(out.getString('name')).toBe('web-clone');
    expect(out.getNumber('memory')).toBe(64);
    expect((out.getStrings('vif') ?? []).map((v) => parseVif(v).bridge)).toEqual([
      'zc-isolated',
      'zc-isolated',
    ]);
    expect(lockedCloneConfig(text, 'web-clone.cfg', l).startsWith('# generated\n')).toBe(true);
  });
});

describe('clone metadata file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-meta-'));
  const paths = zynclonePaths(dir);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads back what it wrote', () => {
    mkdirSync(clonesDir(paths), { recursive: true });
    writeCloneMeta(paths, META);
    expect(readCloneMeta(paths, 'web-clone')).toEqual(META);
  });

  it.each([
    ['not JSON', '{', /cannot read the clone's metadata .*web-clone\.json/],
    ['an old version', JSON.stringify({ ...META, version: 1 }), /version is 1, not 2/],
    ['a bad VM name', JSON.stringify({ ...META, vm: '../etc' }), /vm is not a VM name/],
    [
      'a vif without its production spec',
      JSON.stringify({ ...META, cloneVifs: [{ devid: 0, name: 'zcv1.0' }] }),
      /cloneVifs\[0\]\.productionSpec is not a non-empty string/,
    ],
    [
      'a bad device id',
      JSON.stringify({ ...META, originalVifs: [{ devid: -1, vifname: null }] }),
      /originalVifs\[0\]\.devid is not a device id/,
    ],
    ['an unknown kind', JSON.stringify({ ...META, kind: 'weird' }), /kind is weird/],
  ])('refuses %s, naming the field', (_what, text, message) => {
    writeFileSync(cloneMetaFile(paths, 'web-clone'), text);
    expect(() => readCloneMeta(paths, 'web-clone')).toThrow(message);
  });
});
