import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  classifyXlStderr,
  parseXlBlockList,
  parseXlInfo,
  parseXlList,
  parseXlListLong,
  parseXlNetworkList,
} from '../../src/xen/xl-output.js';

const fx = (name: string) =>
  readFileSync(join(import.meta.dirname, '../fixtures/xl', name), 'utf8');

describe('xl list', () => {
  it('parses every line, names longer than the column included', () => {
    const list = parseXlList(fx('list.txt'));
    expect(list.map((d) => [d.name, d.domid, d.state])).toEqual([
      ['Domain-0', 0, 'r-----'],
      ['web1', 3, '-b----'],
      ['web1-clone-20240101', 7, '--p---'],
      ['a-very-long-domain-name-that-exceeds-forty-columns', 12, '---sc-'],
      ['(null)', 13, '---s-d'],
    ]);
    expect(list[0]).toMatchObject({ memMiB: 1024, vcpus: 2, cpuSeconds: 1234.5 });
    expect(list[2]!.flags).toEqual({
      running: false,
      blocked: false,
      paused: true,
      shutdown: false,
      dying: false,
    });
    expect(list[3]!.flags).toMatchObject({ shutdown: true, shutdownReason: 'c' });
    expect(list[4]!.flags.dying).toBe(true);
  });

  it('parses a header-only table and the -v columns', () => {
    expect(parseXlList(fx('list.txt').split('\n')[0]!)).toEqual([]);
    const v =
      'Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label\n' +
      'web1                                         3   512     1     -b----      12.0 5f0b2c9e-1d2a-4e3b-9c4d-5e6f7a8b9c0d        -                -\n';
    expect(parseXlList(v)[0]).toMatchObject({
      name: 'web1',
      domid: 3,
      uuid: '5f0b2c9e-1d2a-4e3b-9c4d-5e6f7a8b9c0d',
    });
    expect(parseXlList(fx('list.txt'))[1]).not.toHaveProperty('uuid');
  });

  it('refuses output that is not an xl list table', () => {
    expect(() => parseXlList('hello\n')).toThrow(expect.objectContaining({ code: 'XL_PARSE' }));
    expect(() => parseXlList(`${fx('list.txt')}garbage line\n`)).toThrow(
      expect.objectContaining({ code: 'XL_PARSE' }),
    );
  });
});

describe('xl list -l', () => {
  it('reads name, uuid, disks and nics from libxl JSON', () => {
    const [web1, win] = parseXlListLong(fx('list-long.json'));
    expect(web1).toMatchObject({
      domid: 3,
      name: 'web1',
      uuid: '5f0b2c9e-1d2a-4e3b-9c4d-5e6f7a8b9c0d',
      type: 'pv',
    });
    expect(web1!.disks).toEqual([
      {
        target: '/srv/xen/web1.img',
        vdev: 'xvda',
        format: 'raw',
        backend: 'qdisk',
        readwrite: true,
        isCdrom: false,
      },
      {
        target: '/srv/iso/tools.iso',
        vdev: 'xvdc',
        format: 'raw',
        backend: 'qdisk',
        readwrite: false,
        isCdrom: true,
      },
    ]);
    expect(web1!.nics[1]).toEqual({
      devid: 1,
      mac: '00:16:3e:aa:bb:cc',
      bridge: 'isolated0',
      vifname: 'zc-web1.1',
      script: 'vif-bridge',
      nictype: 'vif',
      backendDomname: 'znetdd',
    });
    expect(win).toMatchObject({
      domid: 5,
      type: 'hvm',
      uuid: '3c1f5a0e-9b7d-4e52-a1c4-2f6d8e9b0a11',
    });
    expect(win!.pcidevs).toHaveLength(1);
    expect(win!.usbdevs).toHaveLength(1);
    expect(win!.nics).toEqual([]);
  });

  it('takes Domain-0 as real xl prints it: c_info with only type and name', () => {
    const [dom0] = parseXlListLong(
      '[{"domid":0,"config":{"c_info":{"type":"pv","name":"Domain-0"},"b_info":{}}}]',
    );
    expect(dom0).toMatchObject({
      domid: 0,
      name: 'Domain-0',
      uuid: '00000000-0000-0000-0000-000000000000',
    });
  });

  it('refuses JSON without the libxl shape', () => {
    for (const bad of [
      '{',
      '{}',
      '[{"domid":1}]',
      '[{"domid":1,"config":{"c_info":{"name":"a","uuid":"x"}}}]',
    ]) {
      expect(() => parseXlListLong(bad), bad).toThrow(
        expect.objectContaining({ code: 'XL_PARSE' }),
      );
    }
  });
});

describe('xl info, network-list, block-list', () => {
  it('xl info', () => {
    const info = parseXlInfo(fx('info.txt'));
    expect(info.xen_version).toBe('4.17.3-pre');
    expect(info.virt_caps).toBe('pv');
    expect(info.xen_changeset).toBe('');
    expect(info.cc_compile_date).toBe('Mon Feb  5 10:00:00 UTC 2024');
  });

  it('xl network-list', () => {
    expect(parseXlNetworkList(fx('network-list.txt'))).toEqual([
      {
        idx: 0,
        backendId: 0,
        mac: '00:16:3e:11:22:33',
        handle: 0,
        state: 4,
        evtch: 19,
        txRingRef: 1280,
        rxRingRef: 1281,
        backendPath: '/local/domain/0/backend/vif/3/0',
      },
      {
        idx: 1,
        backendId: 2,
        mac: '00:16:3e:aa:bb:cc',
        handle: 1,
        state: 1,
        evtch: -1,
        txRingRef: -1,
        rxRingRef: -1,
        backendPath: '/local/domain/2/backend/vif/3/1',
      },
    ]);
  });

  it('xl block-list', () => {
    expect(parseXlBlockList(fx('block-list.txt'))).toEqual([
      {
        vdev: 51712,
        backendId: 0,
        handle: 3,
        state: 4,
        evtch: 18,
        ringRef: 8,
        backendPath: '/local/domain/0/backend/qdisk/3/51712',
      },
      {
        vdev: 51728,
        backendId: 0,
        handle: 3,
        state: 4,
        evtch: 20,
        ringRef: 9,
        backendPath: '/local/domain/0/backend/vbd/3/51728',
      },
    ]);
    expect(parseXlBlockList(fx('block-list-empty.txt'))).toEqual([]);
  });
});

describe('xl error messages', () => {
  const cases: Array<[string, string]> = [
    ['nosuch is an invalid domain identifier (rc=-6)\n', 'XL_NO_SUCH_DOMAIN'],
    ["Error: Domain '99' does not exist.\n", 'XL_NO_SUCH_DOMAIN'],
    [
      'libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 99:Non-existant domain\ndestroy failed (rc=-21)\n',
      'XL_NO_SUCH_DOMAIN',
    ],
    [
      "Can't get domid of domain name 'x', maybe this domain does not exist.\n",
      'XL_NO_SUCH_DOMAIN',
    ],
    [
      'libxl: error: libxl_domain.c:587:libxl_domain_pause: Domain 99:Pausing domain: No such process\n',
      'XL_NO_SUCH_DOMAIN',
    ],
    [
      'Parsing config from a.cfg\nlibxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 7:Domain with name "web1" already exists.\nlibxl: error: libxl_create.c:1294:initiate_domain_create: Domain 7:cannot make domain: -6\n',
      'XL_DUPLICATE_NAME',
    ],
    [
      "a.cfg:3: config parsing error near `1.5': lexical error\nFailed to parse config: Invalid argument\n",
      'XL_BAD_CONFIG',
    ],
    ['libxl_device_nic_add failed.\n', 'XL_FAILED'],
  ];
  for (const [stderr, code] of cases) {
    it(`${JSON.stringify(stderr.slice(0, 50))} -> ${code}`, () => {
      expect(classifyXlStderr(stderr)).toBe(code);
    });
  }
});
