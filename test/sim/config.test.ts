import { describe, expect, it } from 'vitest';
import { specFromConfig } from '../../src/sim/host/spec.js';
import {
  XlConfigError,
  parseDiskSpec,
  parseVifSpec,
  parseXlConfig,
  vdevToDevid,
} from '../../src/sim/xl/config.js';

describe('xl config syntax', () => {
  it('reads strings, numbers and multi-line lists with comments', () => {
    const cfg = parseXlConfig(
      'name = "web"  # the name\nmemory=512\nvif = [ \'mac=00:16:3e:00:00:01,bridge=xenbr0\',\n  "bridge=xenbr1" ]\n',
      'web.cfg',
    );
    expect(cfg.get('name')).toBe('web');
    expect(cfg.get('memory')).toBe(512);
    expect(cfg.get('vif')).toEqual(['mac=00:16:3e:00:00:01,bridge=xenbr0', 'bridge=xenbr1']);
  });

  it('reports a syntax error with file and line like libxlu', () => {
    expect(() => parseXlConfig('name = "a"\nmemory = = 3\n', 'x.cfg')).toThrow(
      "x.cfg:2: config parsing error near `=': syntax error",
    );
  });

  it('requires a name', () => {
    expect(() => specFromConfig(parseXlConfig('memory = 64', 'c'))).toThrow(XlConfigError);
  });
});

describe('device specs', () => {
  it('parses legacy and keyed disk specs', () => {
    expect(parseDiskSpec('file:/srv/a.img,xvda,w')).toMatchObject({
      target: '/srv/a.img',
      vdev: 'xvda',
      access: 'w',
      backendtype: 'qdisk',
    });
    expect(parseDiskSpec('phy:/dev/vg/b,xvdb,r')).toMatchObject({
      target: '/dev/vg/b',
      access: 'r',
      backendtype: 'phy',
    });
    expect(parseDiskSpec('format=qcow2,vdev=xvdc,access=rw,target=/x,y.qcow2')).toMatchObject({
      target: '/x,y.qcow2',
      vdev: 'xvdc',
      format: 'qcow2',
      access: 'w',
    });
  });

  it('numbers virtual disks like libxl', () => {
    expect(vdevToDevid('xvda')).toBe(51712);
    expect(vdevToDevid('xvdb')).toBe(51728);
    expect(vdevToDevid('hda')).toBe(768);
    expect(vdevToDevid('sda')).toBe(2048);
  });

  it('parses vif specs and refuses over-long vifnames', () => {
    expect(parseVifSpec('mac=00:16:3E:AA:BB:CC,bridge=br1,vifname=clone1.0')).toEqual({
      mac: '00:16:3e:aa:bb:cc',
      bridge: 'br1',
      vifname: 'clone1.0',
    });
    expect(() => parseVifSpec('vifname=a-name-over-15-chars')).toThrow(/interface name/);
  });
});
