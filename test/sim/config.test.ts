// The simulator reads configs with the product's parser (src/xen/xl-config);
// these check what it adds: libxlu's error wording, command-line settings,
// libxl's defaults and the simulator-only keys.
import { describe, expect, it } from 'vitest';
import { DEMO_VMS } from '../../src/sim/demo/demo.js';
import { diskFromSpec, nicFromSpec, specFromConfig } from '../../src/sim/host/spec.js';
import { readConfig } from '../../src/sim/xl/load.js';

const spec = (text: string, extra: string[] = []) =>
  specFromConfig(readConfig(text, 'test.cfg', extra));

describe('reading a config like xl', () => {
  it('reports a syntax error with file, line and token like libxlu', () => {
    expect(() => readConfig('name = "a"\nmemory = = 3\n', 'x.cfg', [])).toThrow(
      "x.cfg:2: config parsing error near `=': syntax error",
    );
    expect(() => readConfig('name = "a"\nName = "b"\n', 'x.cfg', [])).toThrow(
      "x.cfg:2: config parsing error near `Name': syntax error",
    );
    expect(() => readConfig('memory = 64\nname = "a\n', 'x.cfg', [])).toThrow(
      'x.cfg:2: config parsing error near `"a\': syntax error',
    );
    expect(() => readConfig('name = "a"\nmemory =\n', 'x.cfg', [])).toThrow(
      expect.objectContaining({
        code: 'XL_BAD_CONFIG',
        message: "x.cfg:2: config parsing error near `': syntax error",
      }),
    );
  });

  it('applies key=value arguments after the file, += included, with errors naming the file', () => {
    const s = spec('name = "a"\nmemory = 64\nvif = [ "bridge=xenbr0" ]\n', [
      'memory=128',
      'vif+=[ "bridge=xenbr1" ]',
    ]);
    expect(s.memoryMiB).toBe(128);
    expect(s.nics.map((n) => n.bridge)).toEqual(['xenbr0', 'xenbr1']);
    expect(() => readConfig('name = "a"\n', 'a.cfg', ['memory=64', 'vcpus=='])).toThrow(
      "a.cfg:2: config parsing error near `=': syntax error",
    );
  });

  it('refuses configs xl refuses for their meaning, with xl code XL_BAD_CONFIG', () => {
    expect(() => spec('memory = 64\n')).toThrow(
      expect.objectContaining({ code: 'XL_BAD_CONFIG', message: 'Domain name must be specified.' }),
    );
    expect(() => spec('name = "a"\non_poweroff = "explode"\n')).toThrow(
      'Unknown on_poweroff action "explode" specified',
    );
    expect(() => spec('name = "a"\nvif = [ "bridge=b0", "devid=0,bridge=b1" ]\n')).toThrow(
      'duplicate vif devid 0',
    );
  });
});

describe('vifs and the simulator-only sim_ip', () => {
  it('gives each vif its sim_ip entry, else its ip=, and libxl defaults', () => {
    const s = spec(
      'name = "a"\nvif = [ "mac=00:16:3E:a:BB:CC,bridge=br1,vifname=clone1.0", "ip=10.1.0.5", "" ]\nsim_ip = [ "10.0.0.2/16 10.0.1.2" ]\n',
    );
    expect(s.nics[0]).toEqual({
      devid: 0,
      mac: '00:16:3e:0a:bb:cc',
      bridge: 'br1',
      script: 'vif-bridge',
      vifname: 'clone1.0',
      simIps: ['10.0.0.2/16', '10.0.1.2/24'],
    });
    expect(s.nics[1]).toMatchObject({ devid: 1, bridge: 'xenbr0', ip: '10.1.0.5' });
    expect(s.nics[1]!.simIps).toEqual(['10.1.0.5/24']);
    expect(s.nics[1]!.mac).toMatch(/^00:16:3e(:[0-9a-f]{2}){3}$/);
    expect(s.nics[2]!.simIps).toEqual([]);
  });

  it('refuses names Linux cannot give an interface and addresses that are not IPv4', () => {
    expect(() => nicFromSpec('vifname=a-name-over-15-chars', undefined, 'vif 0')).toThrow(
      /not a valid interface name/,
    );
    expect(() => spec('name = "a"\nvif = [ "" ]\nsim_ip = [ "10.0.0.300" ]\n')).toThrow(
      "sim_ip[0]: '10.0.0.300' is not an IPv4 address",
    );
    expect(() => nicFromSpec('mac=00:16:3e:zz:00:01', undefined, 'vif 0')).toThrow(
      expect.objectContaining({ code: 'XL_VIF_SPEC' }),
    );
  });
});

describe('disks', () => {
  it('resolves legacy and keyed specs with libxl defaults', () => {
    expect(diskFromSpec('file:/srv/a.img,xvda,w')).toEqual({
      devid: 51712,
      target: '/srv/a.img',
      vdev: 'xvda',
      format: 'raw',
      access: 'w',
      devtype: 'disk',
      backendtype: 'qdisk',
    });
    expect(diskFromSpec('phy:/dev/vg/b,xvdb,r')).toMatchObject({
      target: '/dev/vg/b',
      access: 'r',
      backendtype: 'phy',
    });
    expect(diskFromSpec('format=qcow2,vdev=xvdc,access=rw,target=/x,y.qcow2')).toMatchObject({
      devid: 51744,
      target: '/x,y.qcow2',
      format: 'qcow2',
      access: 'w',
      backendtype: 'qdisk',
    });
    expect(diskFromSpec('vdev=sda,backendtype=phy,target=/dev/sdz')).toMatchObject({
      devid: 2048,
      backendtype: 'phy',
    });
    // target= is literal: a phy: inside it is part of the path.
    expect(diskFromSpec('vdev=xvda,target=phy:/x')).toMatchObject({
      target: 'phy:/x',
      backendtype: 'qdisk',
    });
    expect(diskFromSpec(',,hdc:cdrom,r')).toMatchObject({
      devid: 5632,
      target: '',
      format: 'empty',
      devtype: 'cdrom',
      access: 'r',
    });
  });

  it('refuses specs without a vdev or target and unknown vdevs', () => {
    expect(() => diskFromSpec('/srv/a.img')).toThrow("no vdev specified in disk spec '/srv/a.img'");
    expect(() => diskFromSpec('vdev=xvda')).toThrow("no target specified in disk spec 'vdev=xvda'");
    expect(() => diskFromSpec('/srv/a.img,raw,vda,w')).toThrow(
      "Invalid virtual disk identifier vda in '/srv/a.img,raw,vda,w'",
    );
    expect(() => diskFromSpec('/srv/a.img,xvda,rx')).toThrow(
      expect.objectContaining({ code: 'XL_DISK_SPEC' }),
    );
    expect(() =>
      spec('name = "a"\ndisk = [ "/a,raw,xvda,w", "format=raw,vdev=xvda,target=/b" ]\n'),
    ).toThrow('duplicate disk vdev xvda');
  });
});

describe('demo configs', () => {
  it('parse with the product parser into the domains the demo shows', () => {
    const specs = DEMO_VMS.map((vm) => spec(vm.config('/demo')));
    expect(specs.map((s) => [s.name, s.type, s.nics.length, s.disks.length])).toEqual([
      ['web01', 'pv', 2, 2],
      ['win01', 'hvm', 1, 1],
      ['db01', 'pv', 1, 2],
    ]);
    expect(specs[0]!.nics[1]!.simIps).toEqual(['10.78.0.10/24']);
    expect(specs[1]!.vnc).toEqual({ listen: '127.0.0.1', unused: true });
    expect(specs[1]!.disks[0]).toMatchObject({ vdev: 'hda', devid: 768, backendtype: 'qdisk' });
    expect(specs[2]!.disks.map((d) => [d.target, d.backendtype])).toEqual([
      ['/demo/db01-root.img', 'phy'],
      ['/demo/shared-data.img', 'qdisk'],
    ]);
  });
});
