import { describe, expect, it } from 'vitest';
import {
  XenbusState,
  domId,
  parseXenbusState,
  vdevToDevid,
  vmUuid,
  xsPaths,
} from '../../src/xen/paths.js';

describe('libxl XenStore paths', () => {
  it('builds the frontend, backend and console paths libxl uses', () => {
    const d = domId(7);
    expect(xsPaths.domain(d)).toBe('/local/domain/7');
    expect(xsPaths.vifFrontend(d, 1)).toBe('/local/domain/7/device/vif/1');
    expect(xsPaths.vifBackend(domId(2), d, 1)).toBe('/local/domain/2/backend/vif/7/1');
    expect(xsPaths.vbdBackend(domId(0), d, 51712)).toBe('/local/domain/0/backend/vbd/7/51712');
    expect(xsPaths.state(xsPaths.vbdFrontend(d, 51712))).toBe(
      '/local/domain/7/device/vbd/51712/state',
    );
    expect(xsPaths.vncPort(d)).toBe('/local/domain/7/console/vnc-port');
    expect(xsPaths.vncListen(d)).toBe('/local/domain/7/console/vnc-listen');
    expect(xsPaths.controlShutdown(d)).toBe('/local/domain/7/control/shutdown');
    expect(xsPaths.vm(vmUuid('5F0B2C9E-1D2A-4E3B-9C4D-5E6F7A8B9C0D'))).toBe(
      '/vm/5f0b2c9e-1d2a-4e3b-9c4d-5e6f7a8b9c0d',
    );
  });

  it('checks domids, uuids and states', () => {
    expect(domId('12')).toBe(12);
    for (const bad of [-1, 1.5, 0x7ff0, '1x']) {
      expect(() => domId(bad)).toThrow(expect.objectContaining({ code: 'XEN_BAD_DOMID' }));
    }
    expect(() => vmUuid('nope')).toThrow(expect.objectContaining({ code: 'XEN_BAD_UUID' }));
    expect(parseXenbusState('4')).toBe(XenbusState.Connected);
    expect(XenbusState.Closed).toBe(6);
    expect(() => parseXenbusState('')).toThrow(expect.objectContaining({ code: 'XEN_BAD_STATE' }));
  });

  it('maps vdev names to the device ids xl block-list prints', () => {
    expect(vdevToDevid('xvda')).toBe(51712);
    expect(vdevToDevid('xvdb')).toBe(51728);
    expect(vdevToDevid('xvda1')).toBe(51713);
    expect(vdevToDevid('hda')).toBe(768);
    expect(vdevToDevid('hdc')).toBe(5632);
    expect(vdevToDevid('sda')).toBe(2048);
    expect(vdevToDevid('xvdq')).toBe((1 << 28) | (16 << 8));
    expect(() => vdevToDevid('vda')).toThrow(expect.objectContaining({ code: 'XEN_BAD_VDEV' }));
  });
});
