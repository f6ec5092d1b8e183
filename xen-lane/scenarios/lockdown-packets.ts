/**
 * The lockdown with real netback vifs. A memory clone keeps its original's
 * MAC and IP; with the default masks its vif is born locked. Frontend layer:
 * the clone vif sits on the isolation bridge. Backend layer: even when the
 * vif is put on the production bridge by hand (as if the frontend had
 * failed), the net monitor's nftables table lets no frame reach it while dom0
 * keeps pinging the original. Allowing the vif in XenStore (masked = 0 and a
 * new generation, per the contract) makes its counters move; masking it again
 * stops them. Then the clone is restarted after its mask was loosened (it
 * comes up on the production bridge) and again after it was tightened (issue
 * 9: it must come up on the isolation bridge, its counters still): each start
 * takes its lockdown from the configuration of now. Then vmclone remove.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureIsolationBridge } from '../../src/core/clones/bridge.js';
import { ackNode, vmNode, waitForAck } from '../../src/core/clones/publish.js';
import {
  BRIDGE,
  assertTrue,
  destroyQuietly,
  domainByName,
  ensureBridge,
  guestConfig,
  pingUntilReply,
  run,
  sleep,
  waitConsole,
  waitFor,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';
import {
  type NetMonitorHandle,
  bridgePorts,
  ifPackets,
  makeRoot,
  nftDropCounters,
  startNetMonitor,
  vmclone,
  xsConnect,
} from '../runner/zynclone-tools.js';

const VM = 'zc-lk';
const CLONE = `${VM}-clone`;
const IP = '10.0.0.41';
const ISOLATION = 'zc-isolated';

/** Pings `count` times after forgetting the neighbour, so ARP is broadcast again. */
async function pingBurst(ctx: ScenarioContext, count: number): Promise<number> {
  await run('ip', ['neigh', 'flush', 'dev', BRIDGE], { allowFail: true });
  const r = await run('ping', ['-c', String(count), '-i', '0.3', '-W', '2', IP], {
    allowFail: true,
    timeoutMs: 60_000,
    log: ctx.log,
  });
  const got = Number(r.stdout.match(/(\d+) packets received/)?.[1] ?? 0);
  ctx.log(`  ${r.stdout.trim().split('\n').slice(-2).join(' | ')}`);
  return got;
}

async function setCloneVifMasked(vm: string, masked: boolean): Promise<number> {
  const xs = await xsConnect();
  try {
    const base = vmNode(vm);
    const generation = await xs.transaction(async (tx) => {
      const g = Number(await tx.read(`${base}/generation`)) + 1;
      await tx.write(`${base}/clone-vif/0/masked`, masked ? '1' : '0');
      await tx.write(`${base}/clone-vif-mask`, masked ? 'all' : 'none');
      await tx.write(`${base}/generation`, String(g));
      return g;
    });
    await waitForAck(xs, vm, generation, 30_000);
    return generation;
  } finally {
    await xs.close().catch(() => {});
  }
}

const scenario: Scenario = {
  name: 'lockdown-packets',
  title: 'memory clone with the same MAC/IP: no frame crosses its vif until allowed',
  timeoutMs: 360_000,
  async run(ctx) {
    const log = ctx.log;
    await ensureBridge(log);
    await ensureIsolationBridge(ISOLATION, 'zcv');
    const root = await makeRoot(ctx.workDir);
    const cfg = join(root, 'etc/xen', `${VM}.cfg`);
    await writeFile(cfg, guestConfig({ name: VM, ip: `${IP}/24` }));
    let netmon: NetMonitorHandle | undefined;
    let pinger: ChildProcess | undefined;
    let pingOut = '';
    try {
      await xl(['create', cfg], { timeoutMs: 90_000, log });
      await waitConsole(VM, /ZC-GUEST-NET eth0/, { timeoutMs: 120_000, signal: ctx.signal });
      await pingUntilReply(IP, { timeoutMs: 60_000, signal: ctx.signal, log });
      netmon = await startNetMonitor({ log, signal: ctx.signal });
      // dom0 pings the original all along; the summary comes at SIGINT.
      pinger = spawn('ping', ['-i', '0.5', '-W', '1', IP], { stdio: ['ignore', 'pipe', 'pipe'] });
      pinger.stdout?.on('data', (b: Buffer) => {
        pingOut += b.toString();
      });

      const created = await vmclone(root, ['create', VM, '--memory', '--json'], { log });
      const r = JSON.parse(created.stdout) as {
        originalPauseMs: number | null;
        vifs: { name: string; masked: boolean; mac: string | null }[];
      };
      ctx.note('pause_ms', Math.round(r.originalPauseMs ?? Number.NaN));
      const vif = r.vifs[0];
      assertTrue(vif?.masked, 'LANE_VIF_UNMASKED', `clone vifs: ${JSON.stringify(r.vifs)}`);
      const zcv = vif.name;
      const dom = await domainByName(CLONE);
      assertTrue(dom && !dom.state.includes('p'), 'LANE_CLONE_DOM', `${CLONE}: ${dom?.state}`);

      // Frontend layer: the clone vif is on the isolation bridge only.
      const iso = await bridgePorts(ISOLATION);
      const prod = await bridgePorts(BRIDGE);
      log(`${ISOLATION}: ${iso.join(' ')}; ${BRIDGE}: ${prod.join(' ')}`);
      assertTrue(iso.includes(zcv), 'LANE_VIF_NOT_ISOLATED', `${zcv} not on ${ISOLATION}`);
      assertTrue(!prod.includes(zcv), 'LANE_VIF_ON_PROD', `${zcv} is on ${BRIDGE}`);

      // Backend layer alone: the vif on the production bridge, next to its
      // original with the same MAC and IP.
      await run('ip', ['link', 'set', zcv, 'nomaster'], { log });
      await run('ip', ['link', 'set', zcv, 'master', BRIDGE], { log });
      await sleep(1000, ctx.signal);
      const c0 = await nftDropCounters('bridge');
      const s0 = await ifPackets(zcv);
      const got = await pingBurst(ctx, 10);
      // Vif counters first: a frame the vif counted has passed the bridge
      // hooks by the time the table is read.
      const s1 = await ifPackets(zcv);
      const c1 = await nftDropCounters('bridge');
      log(
        `locked: ${zcv} rx ${s0.rx}->${s1.rx} tx ${s0.tx}->${s1.tx}; drops ${JSON.stringify(c0)} -> ${JSON.stringify(c1)}`,
      );
      ctx.note('locked_replies', `${got}/10`);
      ctx.note('locked_drops_out', c1.outPrefix - c0.outPrefix);
      assertTrue(got >= 8, 'LANE_ORIGINAL_UNREACHABLE', `only ${got}/10 replies from ${IP}`);
      assertTrue(
        s1.tx === s0.tx,
        'LANE_FRAMES_REACHED_CLONE',
        `${s1.tx - s0.tx} frame(s) reached the locked clone vif ${zcv}`,
      );
      assertTrue(
        s1.rx - s0.rx <= c1.inPrefix - c0.inPrefix,
        'LANE_FRAMES_FROM_CLONE',
        `the clone sent ${s1.rx - s0.rx} frame(s) but only ${c1.inPrefix - c0.inPrefix} were dropped`,
      );
      ctx.note('locked_clone_frames_dropped', c1.inPrefix - c0.inPrefix);
      assertTrue(
        c1.outPrefix > c0.outPrefix,
        'LANE_NO_DROPS',
        'the standing rule dropped nothing although ARP was flooded to the clone vif',
      );

      // Allowed: frames reach the clone vif.
      const gAllow = await setCloneVifMasked(VM, false);
      const allowed = (await run('nft', ['list', 'set', 'bridge', 'zynclone', 'clone_allowed']))
        .stdout;
      assertTrue(allowed.includes(zcv), 'LANE_NOT_ALLOWED', `${zcv} not in clone_allowed`);
      const s2 = await ifPackets(zcv);
      const got2 = await pingBurst(ctx, 5);
      const s3 = await ifPackets(zcv);
      log(`allowed (generation ${gAllow}): ${zcv} rx ${s2.rx}->${s3.rx} tx ${s2.tx}->${s3.tx}`);
      ctx.note('allowed_tx', s3.tx - s2.tx);
      ctx.note('allowed_replies', `${got2}/5`);
      assertTrue(s3.tx > s2.tx, 'LANE_ALLOWED_NO_FRAMES', `no frame reached ${zcv} once allowed`);

      // Masked again: the counters stop.
      await setCloneVifMasked(VM, true);
      const s4 = await ifPackets(zcv);
      await pingBurst(ctx, 5);
      const s5 = await ifPackets(zcv);
      log(`masked again: ${zcv} tx ${s4.tx}->${s5.tx}`);
      assertTrue(s5.tx === s4.tx, 'LANE_REMASK', `${s5.tx - s4.tx} frame(s) after masking again`);

      // Restarts follow the configuration of now, whatever it was at creation.
      const restartWithMask = async (mask: string) => {
        await vmclone(root, ['stop', VM, '--force'], { log });
        await vmclone(root, ['config', VM, '--set', `clone_vif_mask=${mask}`], { log });
        await vmclone(root, ['start', VM], { log });
        const isoPorts = await bridgePorts(ISOLATION);
        const prodPorts = await bridgePorts(BRIDGE);
        log(
          `after start with mask ${mask}: ${ISOLATION}: ${isoPorts.join(' ')}; ${BRIDGE}: ${prodPorts.join(' ')}`,
        );
        return { iso: isoPorts.includes(zcv), prod: prodPorts.includes(zcv) };
      };
      const loose = await restartWithMask('none');
      assertTrue(
        loose.prod && !loose.iso,
        'LANE_START_LOOSE',
        `${zcv} not on ${BRIDGE} with mask none`,
      );
      const tight = await restartWithMask('all');
      assertTrue(
        tight.iso && !tight.prod,
        'LANE_START_TIGHTENED',
        `${zcv} is not (only) on ${ISOLATION} after its mask was tightened`,
      );
      const s6 = await ifPackets(zcv);
      await pingBurst(ctx, 5);
      const s7 = await ifPackets(zcv);
      log(`restarted after tightening: ${zcv} tx ${s6.tx}->${s7.tx}`);
      ctx.note('tightened_restart_tx', s7.tx - s6.tx);
      assertTrue(
        s7.tx === s6.tx,
        'LANE_TIGHTENED_FRAMES',
        `${s7.tx - s6.tx} frame(s) reached ${zcv} after a start with a tightened mask`,
      );

      await vmclone(root, ['remove', VM], { log });
      assertTrue(!(await domainByName(CLONE)), 'LANE_REMOVE_DOM', `${CLONE} still exists`);
      assertTrue(await domainByName(VM), 'LANE_REMOVE_ORIG', `${VM} is gone`);
      const xs = await xsConnect();
      try {
        await waitFor(
          `the net monitor to drop ${ackNode(VM)}`,
          async () => ((await xs.tryRead(ackNode(VM))) === undefined ? true : undefined),
          { timeoutMs: 30_000, signal: ctx.signal },
        );
      } finally {
        await xs.close().catch(() => {});
      }
    } finally {
      if (pinger && pinger.exitCode === null) {
        const done = new Promise((res) => pinger?.once('exit', res));
        pinger.kill('SIGINT');
        await Promise.race([done, sleep(3000)]);
        const sum = pingOut.match(/(\d+) packets transmitted, (\d+) packets received/);
        if (sum) ctx.note('ping_throughout', `${sum[2]}/${sum[1]}`);
      }
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await netmon?.stop();
    }
  },
};

export default scenario;
