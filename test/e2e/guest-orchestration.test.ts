// A VM asks for its own clone from inside: the bash guest client runs in the
// simulated guest's network namespace on its own XenStore socket, the real
// orchestrator carries the request out through the real clone lifecycle, and
// the clone runs locked down.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleDaemon } from '../bundle.js';
import { skipWithout } from '../prerequisites.js';
import { CloneHost, E2E_NEEDS, canRunE2e, run } from './clone-helpers.js';

const repo = resolve(__dirname, '../..');
const CLIENT = join(repo, 'guest/linux/zynclone-guest');

describe.skipIf(skipWithout(canRunE2e, E2E_NEEDS))(
  'guest-requested clones in the simulator',
  () => {
    let host: CloneHost;
    let orchestrator: ChildProcess | undefined;
    let entry: string;
    let logFile: string;

    beforeAll(async () => {
      host = await CloneHost.create();
      process.stderr.write(
        `guest e2e: lockdown acknowledged by the ${host.netMonitor} net monitor\n`,
      );
      const cfg = await host.vmclone(['config', 'web01', '--set', 'guest_orchestration=true']);
      expect(cfg.code).toBe(0);
      entry = join(repo, `node_modules/.cache/zynclone-e2e/orchestrator-${process.pid}.mjs`);
      await bundleDaemon('runOrchestrator', 'orchestrator', entry);
      logFile = join(host.fs.dir, 'orchestrator.log');
      const out = openSync(logFile, 'a');
      orchestrator = spawn(
        process.execPath,
        [entry, '--root', host.root, '--scan-ms', '500', '--heartbeat-ms', '1000'],
        { env: host.env, stdio: ['ignore', out, out] },
      );
      closeSync(out);
      const deadline = Date.now() + 15_000;
      while (!/"msg":"serving domain".*"vm":"web01"/.test(readFileSync(logFile, 'utf8'))) {
        if (Date.now() > deadline || orchestrator.exitCode !== null) {
          throw new Error(
            `the orchestrator did not serve web01:\n${readFileSync(logFile, 'utf8')}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }, 180_000);

    afterAll(async () => {
      if (orchestrator && orchestrator.exitCode === null) {
        const exited = new Promise((r) => orchestrator!.once('exit', r));
        orchestrator.kill('SIGTERM');
        await exited;
      }
      if (entry) rmSync(entry, { force: true });
      await host?.dispose();
    }, 60_000);

    /** Runs the bash client inside domain `name`: its namespace and its XenStore socket. */
    async function inGuest(name: string, ...args: string[]) {
      const domid = (await host.domains()).get(name)!.domid;
      return run(
        'ip',
        [
          'netns',
          'exec',
          `${host.netPrefix}-d${domid}`,
          'env',
          `XENSTORED_PATH=${join(host.root, `run/xenstored/domains/dom${domid}.sock`)}`,
          'bash',
          CLIENT,
          ...args,
        ],
        host.env,
        180_000,
      );
    }

    it('web01 asks for its own clone, waits for ok, and the clone runs locked down', async () => {
      const r = await inGuest('web01', 'create', '--wait', '--json', '--timeout', '150');
      expect(r.stderr).not.toMatch(/zynclone-guest:/);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        op: 'create',
        state: 'ok',
        cloneState: 'running',
        cloneName: 'web01-clone',
      });
      const doms = await host.domains();
      const web01 = doms.get('web01')!.domid;
      expect(doms.get('web01-clone')!.state).not.toContain('p');
      const status = JSON.parse((await host.vmclone(['status', 'web01', '--json'])).stdout);
      expect(status.clone.requestedBy).toBe(`guest:${web01}`);
      // Locked down: every clone vif masked, the generation acknowledged, on the isolation bridge.
      const gen = Number(await host.xsRead('/tool/zynclone/vm/web01/generation'));
      expect(Number(await host.xsRead('/tool/zynclone/net/ack/web01'))).toBeGreaterThanOrEqual(gen);
      for (const devid of [0, 1]) {
        expect(await host.xsRead(`/tool/zynclone/vm/web01/clone-vif/${devid}/masked`)).toBe('1');
        const name = await host.xsRead(`/tool/zynclone/vm/web01/clone-vif/${devid}/name`);
        const link = await run(
          'ip',
          ['-n', `${host.netPrefix}-netdd`, '-o', 'link', 'show', name!],
          host.env,
        );
        expect(link.stdout).toContain('master zc-isolated');
      }
      expect(await host.xsRead(`/local/domain/${web01}/zynclone/protocol`)).toBe('1');
    }, 200_000);

    it('the clone runs the same client and is refused: no clone of a clone', async () => {
      // Served since before web01's ok: the orchestrator looked at the domains again.
      const clone = (await host.domains()).get('web01-clone')!.domid;
      expect(await host.xsRead(`/local/domain/${clone}/zynclone/protocol`)).toBe('1');
      const r = await inGuest('web01-clone', 'create', '--wait', '--timeout', '30');
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/\[CLONE_REQUEST_REFUSED\]/);
      expect([...(await host.domains()).keys()].filter((n) => n.startsWith('web01-clone'))).toEqual(
        ['web01-clone'],
      );
    }, 60_000);

    it('refusals come back with their codes: a second clone, a VM without orchestration', async () => {
      const again = await inGuest('web01', 'create', '--wait', '--timeout', '60');
      expect(again.code).toBe(5);
      expect(again.stderr).toMatch(/\[CLONE_EXISTS\]/);
      const db01 = await inGuest('db01', 'status', '--timeout', '5');
      expect(db01.code).toBe(8);
      expect(db01.stderr).toMatch(/guest orchestration is not available/);
    }, 90_000);

    it('status and remove from inside; nothing is left behind; the log tells the story', async () => {
      const st = await inGuest('web01', 'status');
      expect(st.code).toBe(0);
      expect(st.stdout).toBe('clone web01-clone is running\n');
      const rm = await inGuest('web01', 'remove', '--wait', '--timeout', '120');
      expect(rm.code).toBe(0);
      expect(await host.leftovers('web01')).toEqual([]);
      const log = readFileSync(logFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const msgs = log.filter((l) => l.vm === 'web01' || l.vm === 'web01-clone').map((l) => l.msg);
      expect(msgs).toEqual(
        expect.arrayContaining(['request accepted', 'request done', 'request refused']),
      );
    }, 150_000);
  },
);
