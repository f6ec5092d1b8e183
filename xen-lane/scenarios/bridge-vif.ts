/**
 * A PV guest with a vif on a bridge in dom0: Debian's vif-bridge hotplug
 * script attaches vifN.0 to xenbr0 and dom0 reaches the guest by ping.
 */
import { readdir } from 'node:fs/promises';
import {
  BRIDGE,
  assertTrue,
  destroyQuietly,
  domainByName,
  ensureBridge,
  pingUntilReply,
  waitConsole,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';

const scenario: Scenario = {
  name: 'bridge-vif',
  title: 'guest with a vif on a bridge, pinged from dom0',
  timeoutMs: 150_000,
  async run(ctx) {
    const name = 'zc-net1';
    const ip = '10.0.0.2';
    const log = ctx.log;
    await ensureBridge(log);
    const cfg = await writeGuestConfig(ctx.workDir, { name, ip: `${ip}/24` });
    try {
      const created = await xl(['create', cfg], { timeoutMs: 90_000, log });
      ctx.note('create_ms', created.ms);
      const dom = await domainByName(name);
      assertTrue(dom, 'LANE_NO_DOMAIN', `xl list does not show ${name} after xl create`);
      const ports = await readdir(`/sys/class/net/${BRIDGE}/brif`);
      log(`${BRIDGE} ports: ${ports.join(' ')}`);
      assertTrue(
        ports.includes(`vif${dom.domid}.0`),
        'LANE_VIF_NOT_BRIDGED',
        `vif${dom.domid}.0 is not a port of ${BRIDGE} (ports: ${ports.join(' ') || 'none'})`,
      );
      await waitConsole(name, /ZC-GUEST-NET eth0/, { timeoutMs: 90_000, signal: ctx.signal });
      const t0 = Date.now();
      await pingUntilReply(ip, { timeoutMs: 60_000, signal: ctx.signal, log });
      ctx.note('ping_ms', Date.now() - t0);
      const destroyed = await xl(['destroy', name], { timeoutMs: 60_000, log });
      ctx.note('destroy_ms', destroyed.ms);
      assertTrue(
        !(await domainByName(name)),
        'LANE_DOMAIN_LINGERS',
        `${name} is still listed after xl destroy`,
      );
    } finally {
      await destroyQuietly(name, log);
    }
  },
};

export default scenario;
