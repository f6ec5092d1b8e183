import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { XlConfig, type XlPlain, toPlain } from '../../src/xen/xl-config/index.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/xl');
const files = readdirSync(FIXTURES).filter((f) => f.startsWith('xlexample') || f.endsWith('.cfg'));

describe('xl config: real files', () => {
  it('has fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });
  for (const f of files) {
    it(`${f}: prints back byte-identical, and re-parses to the same values`, () => {
      const text = readFileSync(join(FIXTURES, f), 'utf8');
      const doc = XlConfig.parse(text, f);
      expect(doc.print()).toBe(text);
      expect(XlConfig.parse(doc.print()).toObject()).toEqual(doc.toObject());
    });
  }

  it('reads the Debian HVM example', () => {
    const doc = XlConfig.parse(readFileSync(join(FIXTURES, 'xlexample.hvm'), 'utf8'));
    expect(doc.getString('type')).toBe('hvm');
    expect(doc.getString('name')).toBe('example.hvm');
    expect(doc.getNumber('memory')).toBe(128);
    expect(doc.getNumber('vcpus')).toBe(2);
    expect(doc.getStrings('vif')).toEqual(['']);
    expect(doc.getStrings('disk')).toEqual(['/dev/vg/guest-volume,raw,xvda,rw']);
    expect(doc.has('uuid')).toBe(false);
  });

  it('reads the Windows-like HVM config with passthrough devices', () => {
    const doc = XlConfig.parse(readFileSync(join(FIXTURES, 'win-hvm.cfg'), 'utf8'));
    expect(doc.getStrings('pci')).toEqual(['0000:03:00.0,permissive=1', '0000:04:00.1']);
    expect(doc.getStrings('usbdev')).toEqual(['hostbus=1, hostaddr=3']);
    expect(doc.getStrings('vtpm')).toEqual([
      'backend=vtpmmgr,uuid=b6ee0b12-23a4-4ba1-8d43-6a1bcd01f8e4',
    ]);
    expect(doc.getNumber('vnc')).toBe(1);
    expect(doc.getNumber('spice')).toBe(1);
    expect(doc.getString('serial')).toBe('pty');
    expect(doc.getStrings('vif')).toHaveLength(2);
  });
});

describe('xl config: syntax', () => {
  it('accepts ; separators, += , trailing commas, comments and newlines inside lists', () => {
    const doc = XlConfig.parse(
      [
        'name = "a"; memory = 0x100;',
        "extra = 'root=/dev/xvda1'",
        'extra += " quiet"',
        'disk = [ # first disk',
        "  'x,raw,xvda,rw',",
        '  # a comment',
        "  'y,,xvdb' ,",
        ']',
        'disk += [ "z,,xvdc" ]',
        'cpus = [ [ 1, 2 ], [] ]',
      ].join('\n'),
    );
    expect(doc.getString('name')).toBe('a');
    expect(doc.getNumber('memory')).toBe(256);
    expect(doc.getString('extra')).toBe('root=/dev/xvda1 quiet');
    expect(doc.getStrings('disk')).toEqual(['x,raw,xvda,rw', 'y,,xvdb', 'z,,xvdc']);
    expect(toPlain(doc.get('cpus')!)).toEqual([['1', '2'], []]);
  });

  it('decodes the escapes xl decodes', () => {
    const doc = XlConfig.parse(String.raw`a = "q\"s\'b\\n\tx"` + '\n');
    expect(doc.getString('a')).toBe('q"s\'b\\n\tx');
  });

  it('the last plain assignment wins, as in xl', () => {
    expect(XlConfig.parse('m = 1\nm = 2\n').getNumber('m')).toBe(2);
  });

  const bad: Array<[string, string, number, number]> = [
    ['name = "x\nmemory = 1\n', 'unterminated string', 1, 8],
    ['Name = "x"\n', 'lowercase', 1, 1],
    ['memory 128\n', "expected '='", 1, 8],
    ['memory = 1.5\n', 'integers', 1, 11],
    ['disk = [ "a" "b" ]\n', "expected ',' or ']'", 1, 14],
    ['ok = 1\ndisk = [ "a",\n', 'unterminated list', 2, 8],
    ['a = 1 b = 2\n', 'end of line', 1, 7],
    ['a = \n', 'expected a value', 1, 5],
    ['a = "x\\x41"\n', 'numeric escape', 1, 7],
    ['a = 1\r\n', 'carriage return', 1, 6],
  ];
  for (const [text, msg, line, column] of bad) {
    it(`rejects ${JSON.stringify(text)} at ${line}:${column}`, () => {
      expect(() => XlConfig.parse(text, 'g.cfg')).toThrow(
        expect.objectContaining({ code: 'XL_CONFIG_SYNTAX', line, column }),
      );
      try {
        XlConfig.parse(text, 'g.cfg');
      } catch (e) {
        expect((e as Error).message).toContain(msg);
        expect((e as Error).message).toMatch(new RegExp(`^g\\.cfg:${line}:${column}: `));
      }
    });
  }
});

describe('xl config: editing', () => {
  const text = [
    '# guest',
    'name = "web1" # the name',
    'memory = 512',
    'uuid = "5f0b2c9e-0000-4000-8000-000000000001"',
    "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]",
    'pci = [ "0000:03:00.0" ]',
    '',
    '# end',
    '',
  ].join('\n');

  it('set keeps comments and order, rewriting only that statement', () => {
    const doc = XlConfig.parse(text);
    doc.set('name', 'web1-clone').set('memory', 1024);
    expect(doc.print()).toBe(
      text.replace('name = "web1"', 'name = "web1-clone"').replace('memory = 512', 'memory = 1024'),
    );
  });

  it('delete removes the whole line; new keys are appended', () => {
    const doc = XlConfig.parse(text);
    expect(doc.delete('pci')).toBe(true);
    expect(doc.delete('pci')).toBe(false);
    doc.set('on_crash', 'preserve');
    const out = doc.print();
    expect(out).not.toContain('pci');
    expect(out).toContain('\n\n# end\non_crash = "preserve"\n');
    expect(XlConfig.parse(out).keys()).toEqual(['name', 'memory', 'uuid', 'vif', 'on_crash']);
  });

  it('set replaces += chains with one value', () => {
    const doc = XlConfig.parse('extra = "a"\nextra += "b"\nx = 1\n');
    doc.set('extra', 'c');
    expect(doc.print()).toBe('extra = "c"\nx = 1\n');
  });

  it('long lists print one item per line with a trailing comma, and parse back', () => {
    const doc = XlConfig.empty();
    const disks = [
      'format=raw, vdev=xvda, access=rw, target=/srv/xen/web1-clone/disk0.img',
      'format=qcow2, vdev=xvdb, access=ro, target=/srv/xen/web1-clone/data.qcow2',
    ];
    doc.set('disk', disks);
    expect(doc.print()).toBe(`disk = [\n    "${disks[0]}",\n    "${disks[1]}",\n]\n`);
    expect(XlConfig.parse(doc.print()).getStrings('disk')).toEqual(disks);
  });

  it('refuses keys and values xl cannot read', () => {
    const doc = XlConfig.empty();
    expect(() => doc.set('Bad', 1)).toThrow(expect.objectContaining({ code: 'XL_CONFIG_KEY' }));
    expect(() => doc.set('n', -1)).toThrow(expect.objectContaining({ code: 'XL_CONFIG_VALUE' }));
    expect(() => doc.set('s', 'a\u0001')).toThrow(
      expect.objectContaining({ code: 'XL_CONFIG_VALUE' }),
    );
  });

  it('property: any edited document prints to text that parses to the same values', () => {
    const key = fc.stringMatching(/^[a-z][._0-9a-z]{0,8}$/);
    const str = fc.string({
      unit: fc.constantFrom('a', ' ', '"', "'", '\\', '\n', '\t', ',', '=', '#', 'é', ']'),
    });
    const plain: fc.Arbitrary<XlPlain> = fc.letrec<{ v: XlPlain }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, str, fc.nat(), fc.array(tie('v'), { maxLength: 4 })),
    })).v;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, plain), { maxLength: 8 }),
        fc.boolean(),
        (edits, start) => {
          const doc = XlConfig.parse(start ? text : '');
          for (const [k, v] of edits) doc.set(k, v);
          const again = XlConfig.parse(doc.print());
          expect(again.toObject()).toEqual(doc.toObject());
          expect(again.print()).toBe(doc.print());
        },
      ),
      { numRuns: 200 },
    );
  });
});
