// clone_guest_orchestrator against the simulator's xenstored: guests write
// requests through their own domain sockets, so every check a real guest
// would meet (permissions, quotas) applies to them.
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateVmName } from '../../../src/core/paths.js';
import { flood } from '../../../src/sim/host/hostile-guest.js';
import { isXsErrno } from '../../../src/xenstore/index.js';
import { Lab, uuidFor } from './lab.js';

const REQ = 'data/zynclone/request';

describe('clone_guest_orchestrator', () => {
  let lab: Lab;

  beforeEach(async () => {
    lab = await Lab.start();
    lab.configure('web01', { guest_orchestration: 'true' });
    lab.configure('db01', { guest_allowed_operations: 'status,create' });
    await lab.addDomain(1, 'web01');
    await lab.addDomain(2, 'db01');
  });

  afterEach(async () => {
    await lab.close();
  });

  it('serves only VMs with guest_orchestration, in a node the guest can read but not write', async () => {
    await lab.startOrchestrator();
    expect(lab.orchestrator.served()).toEqual([1]);
    const web = await lab.guest(1);
    expect(await web.read('zynclone/protocol')).toBe('1');
    expect(await lab.dom0.getPerms('/local/domain/1/zynclone')).toEqual([
      { domid: 0, access: 'none' },
      { domid: 1, access: 'read' },
    ]);
    // A guest cannot forge a reply or a protocol node.
    for (const path of ['zynclone/protocol', 'zynclone/reply/x/state']) {
      const err = await web.write(path, 'ok').catch((e: unknown) => e);
      expect(isXsErrno(err, 'EACCES')).toBe(true);
    }
    // db01 (orchestration off) has no reply node at all.
    const db = await lab.guest(2);
    expect(await db.tryRead('zynclone/protocol').catch((e: unknown) => e)).toBeUndefined();
  });

  it('carries out a request for the requesting VM only: accepted, progress, ok', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    lab.behave = async (req, progress) => {
      progress('snapshotting disks');
      await gate;
      return {
        message: 'clone web01-clone is running',
        cloneState: 'running',
        cloneName: `${req.vm}-clone`,
      };
    };
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    await web.write(REQ, 'r1 create kind=memory start=no');
    expect(await lab.waitReply(1, 'r1', ['progress'])).toEqual({
      state: 'progress',
      op: 'create',
      message: 'snapshotting disks',
    });
    release();
    const done = await lab.waitReply(1, 'r1');
    expect(done).toEqual({
      state: 'ok',
      op: 'create',
      message: 'clone web01-clone is running',
      'clone-state': 'running',
      'clone-name': 'web01-clone',
    });
    expect(lab.calls).toEqual([
      {
        domid: 1,
        vm: 'web01',
        requestId: 'r1',
        op: 'create',
        args: { kind: 'memory', start: 'no' },
      },
    ]);
    // The guest reads its reply with relative paths, as xenstore-read does inside a VM.
    expect(await web.read('zynclone/reply/r1/state')).toBe('ok');
    // The operator's log tells the same story.
    expect(
      lab.logLines.filter((l) => l.id === 'r1').map((l) => [l.msg, l.message ?? l.result]),
    ).toEqual([
      ['request accepted', undefined],
      ['request progress', 'snapshotting disks'],
      ['request done', 'clone web01-clone is running'],
    ]);
  });

  it('is idempotent per id: a rewritten or repeated request is never carried out twice', async () => {
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    await web.write(REQ, 'a1 status');
    await lab.waitReply(1, 'a1');
    await web.write(REQ, 'a2 status');
    await lab.waitReply(1, 'a2');
    await web.write(REQ, 'a1 status');
    await web.write(REQ, 'a1 create');
    await web.write(REQ, 'a3 status');
    await lab.waitReply(1, 'a3');
    expect(lab.calls.map((c) => c.requestId)).toEqual(['a1', 'a2', 'a3']);
    expect((await lab.reply(1, 'a1'))?.op).toBe('status');
  });

  it('refuses what the VM may not ask, naming why', async () => {
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    const cases: [string, string, string][] = [
      ['b1 activate', 'OP_NOT_ALLOWED', 'guest_allowed_operations'],
      ['b2 migrate', 'UNKNOWN_OP', 'unknown operation'],
      ['b6 switch-volume vdev=xvdb to=clone', 'OP_NOT_ALLOWED', 'guest_allowed_operations'],
      ['b7 switch-volume vdev=/dev/xvdb to=clone', 'BAD_REQUEST', 'vdev must be'],
      ['b8 switch-volume vdev=xvdb', 'BAD_REQUEST', 'needs to'],
      ['b3 create vm=db01', 'BAD_REQUEST', 'not "vm"'],
      ['b4 create kind=sideways', 'BAD_REQUEST', 'kind must be'],
      ['b5 stop  force=yes', 'BAD_REQUEST', 'not key=value'],
    ];
    for (const [request, code, text] of cases) {
      await web.write(REQ, request);
      const id = request.split(' ')[0]!;
      const r = await lab.waitReply(1, id);
      expect(r.state).toBe('error');
      expect(r.code).toBe(code);
      expect(r.message).toContain(text);
    }
    expect(lab.calls).toEqual([]);
  });

  it('carries out switch-volume for the requesting VM once allowed, never forced, and passes its errors on', async () => {
    lab.configure('web01', { guest_allowed_operations: 'status,switch-volume' });
    lab.behave = async (req) => {
      if (req.args.vdev === 'xvdc') {
        throw Object.assign(new Error('xvdc is not a shared volume of web01'), {
          code: 'VOLUME_NOT_SHARED',
        });
      }
      return { message: 'xvdb is now held by the clone (attached now)', cloneState: 'running' };
    };
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    await web.write(REQ, 's1 switch-volume vdev=xvdb to=clone');
    expect(await lab.waitReply(1, 's1')).toEqual({
      state: 'ok',
      op: 'switch-volume',
      message: 'xvdb is now held by the clone (attached now)',
      'clone-state': 'running',
    });
    await web.write(REQ, 's2 switch-volume vdev=xvdc to=clone');
    expect(await lab.waitReply(1, 's2')).toEqual({
      state: 'error',
      op: 'switch-volume',
      code: 'VOLUME_NOT_SHARED',
      message: 'xvdc is not a shared volume of web01',
    });
    // A forced switch cannot even be asked for.
    await web.write(REQ, 's3 switch-volume vdev=xvdb to=original force=yes');
    expect((await lab.waitReply(1, 's3')).code).toBe('BAD_REQUEST');
    expect(lab.calls).toEqual([
      {
        domid: 1,
        vm: 'web01',
        requestId: 's1',
        op: 'switch-volume',
        args: { vdev: 'xvdb', to: 'clone' },
      },
      {
        domid: 1,
        vm: 'web01',
        requestId: 's2',
        op: 'switch-volume',
        args: { vdev: 'xvdc', to: 'clone' },
      },
    ]);
  });

  it('answers requests without a readable id in zynclone/rejected, and binary ones too', async () => {
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    await web.write(REQ, Buffer.from([0xff, 0xfe, 0x00, 0x41]));
    await expect
      .poll(() => web.tryRead('zynclone/rejected'))
      .toMatch(/^BAD_REQUEST .*printable ASCII/);
    await web.write(REQ, 'x'.repeat(300));
    await expect.poll(() => web.tryRead('zynclone/rejected')).toMatch(/^BAD_REQUEST .*256 bytes/);
    await web.write(REQ, '../../0 create');
    await expect.poll(() => web.tryRead('zynclone/rejected')).toMatch(/^BAD_REQUEST .*id of 1-40/);
    expect(lab.calls).toEqual([]);
  });

  it("answers with the configuration error when the VM's config file is broken", async () => {
    await lab.startOrchestrator();
    writeFileSync(lab.paths.overrideFile(validateVmName('web01')), '{"guest_orchestration": tru');
    const web = await lab.guest(1);
    await web.write(REQ, 'k1 status');
    const r = await lab.waitReply(1, 'k1');
    expect(r).toMatchObject({ state: 'error', code: expect.stringMatching(/^CONFIG_/) });
    expect(r.message).toContain('web01.json');
    expect(lab.calls).toEqual([]);
  });

  it('refuses requests from a clone unless guest_clone_requests is on', async () => {
    await lab.addCloneOfWeb01(3);
    await lab.startOrchestrator();
    const clone = await lab.guest(3);
    await clone.write(REQ, 'c1 create');
    expect(await lab.waitReply(3, 'c1')).toMatchObject({
      state: 'error',
      code: 'CLONE_REQUEST_REFUSED',
    });
    lab.configure('web01', { guest_clone_requests: 'true' });
    await clone.write(REQ, 'c2 status');
    expect(await lab.waitReply(3, 'c2')).toMatchObject({ state: 'ok' });
    expect(lab.calls).toEqual([
      { domid: 3, vm: 'web01-clone', cloneOf: 'web01', requestId: 'c2', op: 'status', args: {} },
    ]);
  });

  it('runs one operation per VM at a time, with a bounded queue behind it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    lab.behave = async () => {
      await gate;
      return { message: 'done', cloneState: 'running' };
    };
    await lab.startOrchestrator({ queueLength: 2, minReadIntervalMs: 0 });
    const web = await lab.guest(1);
    for (const id of ['q1', 'q2', 'q3', 'q4']) {
      await web.write(REQ, `${id} status`);
      await lab.waitReply(1, id, ['accepted', 'error']);
    }
    expect((await lab.reply(1, 'q4'))?.code).toBe('BUSY');
    expect((await lab.reply(1, 'q3'))?.message).toBe('accepted; 2 operation(s) ahead');
    release();
    for (const id of ['q1', 'q2', 'q3']) expect((await lab.waitReply(1, id)).state).toBe('ok');
    expect(lab.maxInFlightPerVm).toBe(1);
  });

  it('rate-limits new requests per domain, and other domains are not affected', async () => {
    lab.configure('db01', { guest_orchestration: 'true' });
    await lab.startOrchestrator({ requestBurst: 3, requestRefillMs: 60_000, minReadIntervalMs: 0 });
    const web = await lab.guest(1);
    for (let i = 1; i <= 4; i++) {
      await web.write(REQ, `l${i} status`);
      await lab.waitReply(1, `l${i}`);
    }
    expect((await lab.reply(1, 'l3'))?.state).toBe('ok');
    expect(await lab.reply(1, 'l4')).toMatchObject({ state: 'error', code: 'RATE_LIMITED' });
    const db = await lab.guest(2);
    await db.write(REQ, 'd1 status');
    expect((await lab.waitReply(2, 'd1')).state).toBe('ok');
  });

  it('reads a flooding domain within its read budget, spent before any read, and answers it after', async () => {
    await lab.startOrchestrator({ minReadIntervalMs: 0, readBurst: 5, readRefillMs: 200 });
    const web = await lab.guest(1);
    const started = Date.now();
    const writes = Array.from({ length: 500 }, (_, i) => ({
      kind: 'write' as const,
      path: REQ,
      value: Buffer.from(`f${i} status`),
    }));
    expect((await flood(web, writes, 32)).ops).toBe(500);
    const elapsed = Date.now() - started;
    // Every write fired a watch event; the node was read at most once per token.
    expect(lab.orchestrator.stats.reads).toBeLessThanOrEqual(5 + Math.ceil(elapsed / 200) + 1);
    await web.write(REQ, 'after status');
    expect((await lab.waitReply(1, 'after')).state).toMatch(/ok|error/);
  });

  it('keeps a bounded window of replies, dropping the oldest finished one', async () => {
    await lab.startOrchestrator({ replyWindow: 4, minReadIntervalMs: 0, requestBurst: 100 });
    const web = await lab.guest(1);
    for (let i = 1; i <= 7; i++) {
      await web.write(REQ, `w${i} status`);
      await lab.waitReply(1, `w${i}`);
    }
    expect((await web.directory('zynclone/reply')).sort()).toEqual(['w4', 'w5', 'w6', 'w7']);
  });

  it('follows domains appearing and vanishing; a reused domain id starts clean', async () => {
    await lab.startOrchestrator();
    await lab.addDomain(5, 'web02');
    lab.configure('web02', { guest_orchestration: 'true' });
    await lab.orchestrator.rescan();
    expect(lab.orchestrator.served().sort()).toEqual([1, 5]);
    const g5 = await lab.guest(5);
    await g5.write(REQ, 'v1 status');
    await lab.waitReply(5, 'v1');
    await lab.destroyDomain(5);
    await expect.poll(() => lab.orchestrator.served()).toEqual([1]);
    // Domain id 5 comes back as another VM (after a wrap): old ids mean nothing to it.
    lab.configure('web03', { guest_orchestration: 'true' });
    await lab.addDomain(5, 'web03', uuidFor(55));
    await expect.poll(() => lab.orchestrator.served().sort()).toEqual([1, 5]);
    const again = await lab.guest(5);
    await again.write(REQ, 'v1 status');
    expect((await lab.waitReply(5, 'v1')).state).toBe('ok');
    expect(lab.calls.map((c) => `${c.domid}:${c.vm}`)).toEqual(['5:web02', '5:web03']);
  });

  it('turning guest_orchestration off removes the reply node and stops serving', async () => {
    await lab.startOrchestrator();
    lab.configure('web01', { guest_orchestration: 'false' });
    await lab.orchestrator.rescan();
    expect(lab.orchestrator.served()).toEqual([]);
    expect(await lab.dom0.tryRead('/local/domain/1/zynclone/protocol')).toBeUndefined();
  });

  it('after a restart, finished replies stay final and an unfinished one says INTERRUPTED', async () => {
    lab.behave = () => new Promise(() => {});
    await lab.startOrchestrator();
    const web = await lab.guest(1);
    await web.write(REQ, 's1 status');
    await lab.waitReply(1, 's1', ['accepted']);
    // A new orchestrator process (the old one died without a word).
    lab.behave = async () => ({ message: 'ok', cloneState: 'none' });
    const old = lab.orchestrator;
    void old.stop();
    await lab.startOrchestrator();
    expect(await lab.waitReply(1, 's1')).toMatchObject({ state: 'error', code: 'INTERRUPTED' });
    await web.write(REQ, 's1 status');
    await web.write(REQ, 's2 status');
    await lab.waitReply(1, 's2');
    expect(lab.calls.map((c) => c.requestId)).toEqual(['s1', 's2']);
  });
});
