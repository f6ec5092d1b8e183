/**
 * A VM asks for a clone of itself from inside. The test guest's busybox
 * initramfs carries bash, xenstore-utils and zynclone-guest; with
 * zc.ask=create its /init waits until clone_guest_orchestrator serves it,
 * runs `zynclone-guest create --wait --json` (over /dev/xen/xenbus to the C
 * xenstored) and prints the answer on its console. The orchestrator runs in
 * dom0 on the real xl. The clone must run locked down: its vif masked on the
 * isolation bridge, the net monitor's ack of the clone's generation. The
 * clone boots the same command line, asks too, and is refused
 * (CLONE_REQUEST_REFUSED, exit 5). The reply nodes are dom0's: the guest's
 * attempt to write one fails.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureIsolationBridge } from '../../src/core/clones/bridge.js';
import {
  assertTrue,
  destroyQuietly,
  domainByName,
  ensureBridge,
  guestConfig,
  waitConsole,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import {
  type DaemonHandle,
  bridgePorts,
  makeRoot,
  startNetMonitor,
  startOrchestrator,
  vmclone,
  xsConnect,
} from '../runner/zynclone-tools.js';

const VM = 'zc-gr';
const CLONE = `${VM}-clone`;
const ISOLATION = 'zc-isolated';
const ANSWER = /ZC-GUEST-ASK rc=(\d+) json=(.*)/;

interface Answer {
  state?: string;
  cloneState?: string;
  cloneName?: string;
  error?: { code?: string };
}

/** What dom0 is doing while an answer is slow: xl, hotplug and qemu processes with all their descendants, domains, xl's logs. */
async function showDom0(log: (l: string) => void): Promise<void> {
  const procs = new Map<string, { ppid: string; argv: string; state: string; wchan: string }>();
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    procs.set(pid, {
      ppid: status.match(/^PPid:\s+(\d+)$/m)?.[1] ?? '',
      state: status.match(/^State:\s+(.*)$/m)?.[1] ?? '?',
      wchan: await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '?'),
      argv: (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''))
        .split('\0')
        .join(' ')
        .trim(),
    });
  }
  const shown = new Set<string>();
  const show = (pid: string, depth: number): void => {
    const p = procs.get(pid);
    if (!p || shown.has(pid)) return;
    shown.add(pid);
    log(`  ${'  '.repeat(depth)}pid ${pid} [${p.state} ${p.wchan}]: ${p.argv.slice(0, 200)}`);
    for (const [child, c] of procs) if (c.ppid === pid) show(child, depth + 1);
  };
  for (const [pid, p] of procs) if (/(^|\/)xl |scripts\/|qemu/.test(p.argv)) show(pid, 0);
  const q = { allowFail: true, timeoutMs: 30_000 };
  log(`  xl list: ${(await xl(['list'], q)).stdout.trim().replace(/\s+/g, ' ')}`);
  for (const f of await readdir('/var/log/xen').catch(() => [] as string[])) {
    if (!f.includes(CLONE) && !f.startsWith('xl')) continue;
    const text = await readFile(`/var/log/xen/${f}`, 'utf8').catch(() => '');
    for (const l of text.trim().split('\n').slice(-10)) log(`  ${f}: ${l}`);
  }
}

async function answerOf(
  name: string,
  signal: AbortSignal,
  log: (l: string) => void,
): Promise<{ rc: number; json: Answer }> {
  const slow = setInterval(() => void showDom0(log).catch(() => {}), 45_000);
  const m = await waitConsole(name, ANSWER, { timeoutMs: 600_000, signal }).finally(() =>
    clearInterval(slow),
  );
  let json: Answer = {};
  try {
    json = JSON.parse(m[2]!) as Answer;
  } catch {
    // An unparsable answer fails the checks below with the line shown.
  }
  return { rc: Number(m[1]), json };
}

const scenario: Scenario = {
  name: 'guest-request',
  title:
    'a busybox guest asks for its own clone through zynclone-guest; the clone runs locked down',
  timeoutMs: 720_000,
  async run(ctx) {
    const log = ctx.log;
    await ensureBridge(log);
    await ensureIsolationBridge(ISOLATION, 'zcv');
    const root = await makeRoot(ctx.workDir);
    await writeFile(
      join(root, 'etc/xen', `${VM}.cfg`),
      guestConfig({ name: VM, ip: '10.0.0.51/24', ask: 'create' }),
    );
    await vmclone(root, ['config', VM, '--set', 'guest_orchestration=true'], { log });
    await vmclone(root, ['config', VM, '--set', 'guest_allowed_operations=status,create'], {
      log,
    });
    let netmon: DaemonHandle | undefined;
    let orchestrator: DaemonHandle | undefined;
    const xs = await xsConnect();
    try {
      netmon = await startNetMonitor({ log, signal: ctx.signal });
      orchestrator = await startOrchestrator(root, { log, signal: ctx.signal });
      const t0 = Date.now();
      await xl(['create', join(root, 'etc/xen', `${VM}.cfg`)], { timeoutMs: 90_000, log });
      const domid = (await domainByName(VM))?.domid;
      assertTrue(domid !== undefined, 'LANE_NO_DOMAIN', `${VM} is not listed after xl create`);

      // The guest's own answer, as zynclone-guest printed it inside.
      const served = await waitConsole(VM, /ZC-GUEST-SERVED after=(\d+)s/, {
        timeoutMs: 300_000,
        signal: ctx.signal,
      });
      ctx.note('served_after_s', Number(served[1]));
      const asked = await answerOf(VM, ctx.signal, log);
      ctx.note('ask_to_ok_ms', Date.now() - t0);
      log(`${VM} got exit ${asked.rc}: ${JSON.stringify(asked.json)}`);
      assertTrue(
        asked.rc === 0 &&
          asked.json.state === 'ok' &&
          asked.json.cloneState === 'running' &&
          asked.json.cloneName === CLONE,
        'LANE_GUEST_ANSWER',
        `zynclone-guest create in ${VM} exited ${asked.rc}: ${JSON.stringify(asked.json)}`,
      );

      // The clone runs, on behalf of the guest, and locked down.
      const clone = await domainByName(CLONE);
      assertTrue(
        clone && !clone.state.includes('p'),
        'LANE_CLONE_DOM',
        `${CLONE}: ${clone?.state}`,
      );
      const st = JSON.parse((await vmclone(root, ['status', VM, '--json'], { log })).stdout) as {
        clone: { requestedBy: string; state: string } | null;
        lockdown: { generation: number | null; ack: number | null };
      };
      assertTrue(
        st.clone?.requestedBy === `guest:${domid}`,
        'LANE_REQUESTER',
        `the clone is recorded as requested by ${st.clone?.requestedBy}, not guest:${domid}`,
      );
      const { generation, ack } = st.lockdown;
      assertTrue(
        generation !== null && ack !== null && ack >= generation,
        'LANE_NO_ACK',
        `lockdown generation ${generation}, net monitor ack ${ack}`,
      );
      const vifNode = `/tool/zynclone/vm/${VM}/clone-vif/0`;
      const masked = await xs.tryRead(`${vifNode}/masked`);
      const vif = await xs.tryRead(`${vifNode}/name`);
      const iso = await bridgePorts(ISOLATION);
      log(`clone vif ${vif} masked=${masked}; ${ISOLATION}: ${iso.join(' ') || 'none'}`);
      assertTrue(masked === '1', 'LANE_VIF_UNMASKED', `${vifNode}/masked is ${masked}`);
      assertTrue(
        vif !== undefined && iso.includes(vif),
        'LANE_VIF_NOT_ISOLATED',
        `${vif} is not on ${ISOLATION}`,
      );

      // Replies are dom0's, readable by the guest only; its forgery fails.
      const forge = await waitConsole(VM, /ZC-GUEST-FORGE rc=(\d+)/, {
        timeoutMs: 60_000,
        signal: ctx.signal,
      });
      const home = `/local/domain/${domid}/zynclone`;
      const perms = await xs.getPerms(home);
      log(`${home} perms: ${JSON.stringify(perms)}`);
      assertTrue(
        Number(forge[1]) !== 0 && (await xs.tryRead(`${home}/forged`)) === undefined,
        'LANE_REPLY_FORGED',
        `the guest wrote ${home}/forged (xenstore-write exited ${forge[1]})`,
      );
      assertTrue(
        perms[0]?.domid === 0 &&
          perms[0].access === 'none' &&
          perms.some((p) => p.domid === domid && p.access === 'read'),
        'LANE_REPLY_PERMS',
        `${home} perms ${JSON.stringify(perms)}`,
      );

      // The clone runs the same /init and asks too: refused.
      const again = await answerOf(CLONE, ctx.signal, log);
      log(`${CLONE} got exit ${again.rc}: ${JSON.stringify(again.json)}`);
      assertTrue(
        again.rc === 5 && again.json.error?.code === 'CLONE_REQUEST_REFUSED',
        'LANE_CLONE_ASKED',
        `zynclone-guest create in ${CLONE} exited ${again.rc}: ${JSON.stringify(again.json)}`,
      );
      assertTrue(
        !(await domainByName(`${CLONE}-clone`)),
        'LANE_CLONE_OF_CLONE',
        `${CLONE}-clone exists`,
      );

      await vmclone(root, ['remove', VM], { log });
      assertTrue(!(await domainByName(CLONE)), 'LANE_REMOVE_DOM', `${CLONE} still exists`);
      const outside = orchestrator.lines
        .map((l) => {
          try {
            return JSON.parse(l) as { msg?: string; domid?: number; vm?: string };
          } catch {
            return {};
          }
        })
        .filter((r) => r.msg === 'request accepted' && r.vm !== VM && r.vm !== CLONE);
      assertTrue(
        outside.length === 0,
        'LANE_FOREIGN_OP',
        `operations for other VMs: ${JSON.stringify(outside)}`,
      );
    } finally {
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await orchestrator?.stop();
      await netmon?.stop();
      await xs.close().catch(() => {});
    }
  },
};

export default scenario;
