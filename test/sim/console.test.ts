// A domain with vnc=1 gets a real VNC server (QEMU) whose port is in XenStore
// and whose desktop name is the domain's name.
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuBinary } from '../../src/sim/console/vnc.js';
import { XsClient } from '../../src/xenstore/index.js';
import { skipWithout } from '../prerequisites.js';
import { SimFixture } from './helpers.js';

/** RFB 3.8 handshake with security "None"; returns the server's desktop name. */
function vncDesktopName(port: number, host: string): Promise<string> {
  return new Promise((resolveName, reject) => {
    const sock = connect(port, host);
    let buf = Buffer.alloc(0);
    let step = 0;
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (step === 0 && buf.length >= 12) {
        buf = buf.subarray(12);
        sock.write('RFB 003.008\n');
        step = 1;
      }
      if (step === 1 && buf.length >= 1 && buf.length >= 1 + buf[0]!) {
        const types = [...buf.subarray(1, 1 + buf[0]!)];
        buf = buf.subarray(1 + buf[0]!);
        if (!types.includes(1)) reject(new Error(`no None security: ${types}`));
        sock.write(Buffer.from([1]));
        step = 2;
      }
      if (step === 2 && buf.length >= 4) {
        buf = buf.subarray(4);
        sock.write(Buffer.from([1]));
        step = 3;
      }
      if (step === 3 && buf.length >= 24) {
        const len = buf.readUInt32BE(20);
        if (buf.length >= 24 + len) {
          sock.destroy();
          resolveName(buf.subarray(24, 24 + len).toString('utf8'));
        }
      }
    });
  });
}

let fx: SimFixture;

describe.skipIf(skipWithout(qemuBinary() !== undefined, 'qemu-system-x86_64'))(
  'VNC consoles',
  () => {
    beforeAll(async () => {
      fx = await SimFixture.create('zc-sim-vnc-');
      expect((await fx.sim('up', '--no-network')).code).toBe(0);
    });

    afterAll(async () => {
      await fx?.dispose();
    });

    it('serves the console on the port written to console/vnc-port', async () => {
      writeFileSync(join(fx.root, 'win.cfg'), 'name = "win-console"\ntype = "hvm"\nmemory = 64\n');
      const r = await fx.xl('create', '-q', 'win.cfg');
      expect(r.code, r.stderr).toBe(0);
      const xs = await XsClient.connect({
        path: join(fx.root, 'run/xenstored/socket'),
        reconnect: false,
      });
      try {
        const port = Number(await xs.read('/local/domain/1/console/vnc-port'));
        const listen = await xs.read('/local/domain/1/console/vnc-listen');
        expect(listen).toBe('127.0.0.1');
        // QEMU names its desktop "QEMU (<name>)", as on a Xen host.
        expect(await vncDesktopName(port, listen)).toBe('QEMU (win-console)');
      } finally {
        await xs.close();
      }
      expect((await fx.xl('destroy', 'win-console')).code).toBe(0);
      expect(existsSync(join(fx.root, 'run/domains/1'))).toBe(false);
    });
  },
);
