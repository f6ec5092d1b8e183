import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DiskSpec,
  type VifSpec,
  isReadOnly,
  normalizeMac,
  parseDisk,
  parseVif,
  printDisk,
  printVif,
} from '../../src/xen/xl-config/index.js';

describe('vif spec', () => {
  it('parses the xl-network-configuration keys', () => {
    expect(
      parseVif(
        'mac=00:16:3e:5a:01:01, bridge=xenbr0,vifname=zc-web1.0,script=vif-bridge,backend=znetdd,ip=10.0.0.2 10.0.0.3,model=e1000,type=ioemu,rate=10Mb/s@20ms,,mtu=9000,trusted,colo_checkpoint_host=h',
      ),
    ).toEqual({
      mac: '00:16:3e:5a:01:01',
      bridge: 'xenbr0',
      vifname: 'zc-web1.0',
      script: 'vif-bridge',
      backend: 'znetdd',
      ip: '10.0.0.2 10.0.0.3',
      model: 'e1000',
      type: 'ioemu',
      rate: '10Mb/s@20ms',
      mtu: 9000,
      trusted: true,
      extra: [['colo_checkpoint_host', 'h']],
    });
    expect(parseVif('')).toEqual({ extra: [] });
    expect(parseVif('bridge=a,bridge=b').bridge).toBe('b');
    expect(parseVif('netdev=eth1').gatewaydev).toBe('eth1');
  });

  it('refuses what xl refuses', () => {
    for (const bad of ['mac=00:16:3e', 'type=bogus', 'bridge', 'mtu=big']) {
      expect(() => parseVif(bad)).toThrow(expect.objectContaining({ code: 'XL_VIF_SPEC' }));
    }
    expect(() => printVif({ bridge: 'a,b', extra: [] })).toThrow(
      expect.objectContaining({ code: 'XL_VIF_SPEC' }),
    );
  });

  it('normalizes MACs like libxl prints them', () => {
    expect(normalizeMac('0:16:3E:a:b:C')).toBe('00:16:3e:0a:0b:0c');
  });

  it('property: printVif then parseVif gives the same spec', () => {
    const val = fc.stringMatching(/^[^,]*$/);
    const mac = fc
      .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
      .map((b) => b.map((x) => x.toString(16).padStart(2, '0')).join(':'));
    const spec: fc.Arbitrary<VifSpec> = fc.record(
      {
        mac,
        bridge: val,
        vifname: val,
        script: val,
        backend: val,
        ip: val,
        model: val,
        type: fc.constantFrom('vif' as const, 'ioemu' as const),
        rate: val,
        gatewaydev: val,
        mtu: fc.nat(),
        devid: fc.nat(),
        trusted: fc.boolean(),
        extra: fc.uniqueArray(fc.tuple(fc.constantFrom('forwarddev', 'colo_sock_mirror_id'), val), {
          selector: ([k]) => k,
        }),
      },
      { requiredKeys: ['extra'] },
    );
    fc.assert(
      fc.property(spec, (v) => {
        expect(parseVif(printVif(v))).toEqual(v);
      }),
    );
  });
});

describe('disk spec', () => {
  const equivalent: Array<[string, DiskSpec]> = [
    ['/dev/vg/guest-volume,,hda', { target: '/dev/vg/guest-volume', vdev: 'hda' }],
    [
      '/dev/vg/guest-volume,raw,hda,rw',
      { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', access: 'rw' },
    ],
    [
      'format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume',
      { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', access: 'rw' },
    ],
    [
      'raw:/dev/vg/guest-volume,hda,w',
      { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', access: 'rw' },
    ],
    ['/root/image.iso,,hdc,cdrom', { target: '/root/image.iso', vdev: 'hdc', devtype: 'cdrom' }],
    [
      '/root/image.iso,raw,hdc,devtype=cdrom',
      { target: '/root/image.iso', format: 'raw', vdev: 'hdc', devtype: 'cdrom' },
    ],
    [
      'raw:/root/image.iso,hdc:cdrom,ro',
      { target: '/root/image.iso', format: 'raw', vdev: 'hdc', devtype: 'cdrom', access: 'ro' },
    ],
    ['file:/srv/web1.img,xvda,w', { target: '/srv/web1.img', vdev: 'xvda', access: 'rw' }],
    ['phy:/dev/vg/lv,xvdb,w', { target: '/dev/vg/lv', vdev: 'xvdb', access: 'rw' }],
    ['tap:aio:/srv/a.img,xvdc,r', { target: '/srv/a.img', vdev: 'xvdc', access: 'ro' }],
    [
      'iscsi:iqn.2001-05.com.example:disk1,xvdd,w',
      {
        target: 'iqn.2001-05.com.example:disk1',
        script: 'block-iscsi',
        vdev: 'xvdd',
        access: 'rw',
      },
    ],
    [
      'vdev=xvde, backendtype=qdisk, backend=zstor, script=block-drbd, no-discard, direct-io-safe, untrusted, target=/x,y:z',
      {
        vdev: 'xvde',
        backendtype: 'qdisk',
        backend: 'zstor',
        script: 'block-drbd',
        discard: false,
        directIoSafe: true,
        trusted: false,
        target: '/x,y:z',
      },
    ],
    [',,hdc:cdrom,r', { vdev: 'hdc', devtype: 'cdrom', access: 'ro' }],
  ];
  for (const [spec, want] of equivalent) {
    it(`parses '${spec}'`, () => {
      expect(parseDisk(spec)).toEqual(want);
      expect(parseDisk(printDisk(want))).toEqual(want);
    });
  }

  it('refuses to print a target xl would read differently', () => {
    expect(() => printDisk({ target: '/srv/a,', vdev: 'xvda' })).toThrow(
      expect.objectContaining({ code: 'XL_DISK_SPEC' }),
    );
  });

  it('cdroms default to read-only', () => {
    expect(isReadOnly(parseDisk('/root/a.iso,,hdc,cdrom'))).toBe(true);
    expect(isReadOnly(parseDisk('/srv/a.img,,xvda'))).toBe(false);
    expect(isReadOnly(parseDisk('/srv/a.img,,xvda,r'))).toBe(true);
  });

  it('refuses what xl refuses', () => {
    for (const bad of [
      '/a,raw,xvda,rw,extra',
      'format=zip, vdev=xvda, target=/a',
      'access=maybe,vdev=xvda,target=/a',
      'colour=red,target=/a',
      'bogus:/a,xvda,w',
      'vdev=xvda,vdev=xvdb,target=/a',
      '/a,,hdc:floppy',
    ]) {
      expect(() => parseDisk(bad), bad).toThrow(expect.objectContaining({ code: 'XL_DISK_SPEC' }));
    }
  });

  it('property: printDisk then parseDisk gives the same spec', () => {
    const val = fc.stringMatching(/^[a-z0-9/._-]+$/);
    const spec: fc.Arbitrary<DiskSpec> = fc.record(
      {
        target: fc.stringMatching(/^[^\s,]([^\n]*[^,\n])?$/),
        format: fc.constantFrom('raw' as const, 'qcow2' as const, 'vhd' as const, 'empty' as const),
        vdev: fc.stringMatching(/^xvd[a-z]$/),
        access: fc.constantFrom('ro' as const, 'rw' as const),
        devtype: fc.constantFrom('cdrom' as const, 'disk' as const),
        backend: val,
        backendtype: fc.constantFrom('phy' as const, 'qdisk' as const),
        specification: fc.constantFrom('xen' as const, 'virtio' as const),
        script: val,
        directIoSafe: fc.constant(true),
        discard: fc.boolean(),
        trusted: fc.boolean(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(spec, (d) => {
        expect(parseDisk(printDisk(d))).toEqual(d);
      }),
    );
  });
});
