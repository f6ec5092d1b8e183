// guest/linux/zynclone-guest, run as a guest runs it: Debian's xenstore-read,
// -write and -watch on the guest's own XenStore socket (XENSTORED_PATH), so
// it can touch only what that domain may.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Lab } from '../daemons/orchestrator/lab.js';
import { skipWithout } from '../prerequisites.js';
import { vectors } from './vectors.js';

const CLIENT = resolve(__dirname, '../../guest/linux/zynclone-guest');
const haveTools = ['xenstore-read', 'xenstore-write', 'xenstore-watch'].every((t) =>
  existsSync(`/usr/bin/${t}`),
);

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function client(socket: string, args: string[], timeoutMs = 20_000): Promise<Out> {
  return new Promise((r) => {
    execFile(
      'bash',
      [CLIENT, ...args],
      { env: { PATH: process.env.PATH, XENSTORED_PATH: socket }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        r({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

describe.skipIf(skipWithout(haveTools, 'xenstore-utils'))('zynclone-guest (bash)', () => {
  let lab: Lab;

  beforeEach(async () => {
    lab = await Lab.start();
    lab.configure('web01', { guest_orchestration: 'true' });
    await lab.addDomain(1, 'web01');
    await lab.addDomain(2, 'db01');
  });

  afterEach(async () => {
    await lab.close();
  });

  /** dom0 answering by hand, as the orchestrator would (for the vectors). */
  async function serveByHand(domid: number): Promise<void> {
    const root = `/local/domain/${domid}/zynclone`;
    await lab.dom0.mkdir(root);
    await lab.dom0.setPerms(root, [
      { domid: 0, access: 'none' },
      { domid, access: 'read' },
    ]);
    await lab.dom0.write(`${root}/protocol`, '1');
  }

  async function awaitRequest(domid: number, expected: string): Promise<void> {
    await expect
      .poll(() => lab.dom0.tryRead(`/local/domain/${domid}/data/zynclone/request`), {
        timeout: 10_000,
      })
      .toBe(expected);
  }

  async function answer(domid: number, id: string, nodes: Record<string, string>): Promise<void> {
    const base = `/local/domain/${domid}/zynclone/reply/${id}`;
    await lab.dom0.transaction(async (tx) => {
      for (const [k, v] of Object.entries(nodes)) await tx.write(`${base}/${k}`, v);
    });
  }

  it('writes each request of the vectors exactly', async () => {
    await serveByHand(1);
    const socket = lab.server.domainSocketPath(1);
    let n = 0;
    for (const v of vectors.clientRequests) {
      const id = `vec${++n}`;
      const running = client(socket, [...v.argv, '--id', id, '--timeout', '10']);
      await awaitRequest(1, v.request.replace('ID', id));
      await answer(1, id, { state: v.argv[0] === 'status' ? 'ok' : 'accepted', op: v.argv[0]! });
      const out = await running;
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
    }
  });

  it('reports each final reply of the vectors with its exit status, as text and JSON', async () => {
    await serveByHand(1);
    const socket = lab.server.domainSocketPath(1);
    let n = 0;
    for (const v of vectors.replies.filter((r) => r.final)) {
      for (const json of [false, true]) {
        const id = `rep${++n}`;
        const running = client(socket, ['status', '--id', id, ...(json ? ['--json'] : [])]);
        await awaitRequest(1, `${id} status`);
        await answer(1, id, v.nodes);
        const out = await running;
        expect(out.code, JSON.stringify(v.nodes)).toBe(v.exit);
        if (json) {
          const parsed = JSON.parse(out.stdout);
          if (v.nodes.state === 'ok') {
            expect(parsed).toEqual({
              id,
              op: 'status',
              state: 'ok',
              message: v.nodes.message,
              cloneState: v.nodes['clone-state'] ?? null,
              cloneName: v.nodes['clone-name'] ?? null,
            });
          } else {
            expect(parsed.error).toEqual({
              code: v.nodes.code,
              message: v.nodes.message,
              exitCode: v.exit,
            });
          }
        } else if (v.nodes.state === 'ok') {
          expect(out.stdout).toBe(`${v.nodes.message}\n`);
        } else {
          expect(out.stderr).toBe(`zynclone-guest: ${v.nodes.message} [${v.nodes.code}]\n`);
        }
      }
    }
  });

  it('asks the orchestrator for a clone of its own VM and waits for ok', async () => {
    await lab.startOrchestrator();
    const out = await client(lab.server.domainSocketPath(1), ['create', '--wait', '--json']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({
      op: 'create',
      state: 'ok',
      cloneState: 'running',
      cloneName: 'web01-clone',
    });
    expect(lab.calls).toMatchObject([{ domid: 1, vm: 'web01', op: 'create' }]);
  });

  it('a clone asking for a clone is refused with exit status 5', async () => {
    await lab.addCloneOfWeb01(3);
    await lab.startOrchestrator();
    const out = await client(lab.server.domainSocketPath(3), ['create', '--wait']);
    expect(out.code).toBe(5);
    expect(out.stderr).toMatch(/requests from clones are refused.*\[CLONE_REQUEST_REFUSED\]/);
    expect(lab.calls).toEqual([]);
  });

  it('without --wait it returns once accepted; with --wait it times out with exit status 8', async () => {
    lab.behave = () => new Promise(() => {});
    await lab.startOrchestrator();
    const socket = lab.server.domainSocketPath(1);
    const accepted = await client(socket, ['create', '--id', 'w1']);
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toMatch(/request w1 \(create\) accepted/);
    const waited = await client(socket, ['remove', '--wait', '--timeout', '2']);
    expect(waited.code).toBe(vectors.noAnswerExit);
    expect(waited.stderr).toMatch(
      /no final answer to request .* within 2s \(last state: accepted\)/,
    );
  });

  it('says so at once when this VM is not served (exit 8), and refuses bad usage (exit 2)', async () => {
    await lab.startOrchestrator();
    const off = await client(lab.server.domainSocketPath(2), ['status']);
    expect(off.code).toBe(vectors.noAnswerExit);
    expect(off.stderr).toMatch(/guest orchestration is not available for this VM/);
    for (const args of [
      [],
      ['clone'],
      ['create', '--kind', 'warm'],
      ['stop', '--kind', 'online'],
      ['status', '--id', 'a/b'],
    ]) {
      expect((await client(lab.server.domainSocketPath(1), args)).code).toBe(2);
    }
  });

  it('switch-volume runs --before before the request and --after on ok, as argv without a shell', async () => {
    await serveByHand(1);
    const socket = lab.server.domainSocketPath(1);
    const dir = mkdtempSync(join(tmpdir(), 'zc-hooks-'));
    try {
      const hook = join(dir, 'hook');
      writeFileSync(
        hook,
        `#!/bin/sh\nprintf '%s %s %s\\n' "$ZYNCLONE_VDEV" "$ZYNCLONE_TO" "$1" >${dir}/after\n`,
        { mode: 0o755 },
      );
      const running = client(socket, [
        'switch-volume',
        'xvdb',
        '--to',
        'clone',
        '--id',
        'h1',
        '--json',
        // Shell syntax and globs are passed on as literal words, never run.
        '--before',
        `touch ${dir}/before ${dir}/;reboot ${dir}/$(id) ${dir}/*`,
        '--after',
        `${hook} mounted`,
      ]);
      await awaitRequest(1, 'h1 switch-volume vdev=xvdb to=clone');
      expect(readdirSync(dir).sort()).toEqual(['$(id)', '*', ';reboot', 'before', 'hook'].sort());
      await answer(1, 'h1', { state: 'progress', op: 'switch-volume', message: 'detach xvdb' });
      expect(existsSync(join(dir, 'after'))).toBe(false);
      await answer(1, 'h1', {
        state: 'ok',
        op: 'switch-volume',
        message: 'xvdb is now held by the clone (attached now)',
        'clone-state': 'running',
      });
      const out = await running;
      expect(out.code).toBe(0);
      // --after implies --wait; the hook saw the volume and side, JSON stayed clean.
      expect(JSON.parse(out.stdout)).toMatchObject({ id: 'h1', op: 'switch-volume', state: 'ok' });
      expect(readFileSync(join(dir, 'after'), 'utf8')).toBe('xvdb clone mounted\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('switch-volume: a failing --before sends nothing; an error reply skips --after', async () => {
    await serveByHand(1);
    const socket = lab.server.domainSocketPath(1);
    const dir = mkdtempSync(join(tmpdir(), 'zc-hooks-'));
    try {
      const failed = await client(socket, [
        'switch-volume',
        'xvdb',
        '--to',
        'clone',
        '--before',
        'false',
      ]);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/--before command false exited with status 1/);
      expect(failed.stderr).toMatch(/nothing was requested/);
      // A hook is always a program: not the client's own shell (exit, eval, its functions).
      for (const hook of ['exit 0', 'run_hook --before true']) {
        const builtin = await client(socket, [
          'switch-volume',
          'xvdb',
          '--to',
          'clone',
          '--before',
          hook,
        ]);
        expect(builtin.code, hook).toBe(1);
        expect(builtin.stderr).toMatch(/nothing was requested/);
      }
      expect(await lab.dom0.tryRead('/local/domain/1/data/zynclone/request')).toBeUndefined();

      const after = join(dir, 'after');
      const running = client(socket, [
        'switch-volume',
        'xvdb',
        '--to',
        'original',
        '--id',
        'h2',
        '--after',
        `touch ${after}`,
      ]);
      await awaitRequest(1, 'h2 switch-volume vdev=xvdb to=original');
      const refused = vectors.replies.find((r) => r.nodes.code === 'VOLUME_GUEST_REFUSED')!;
      await answer(1, 'h2', refused.nodes);
      const out = await running;
      expect(out.code).toBe(refused.exit);
      expect(out.stderr).toBe(`zynclone-guest: ${refused.nodes.message} [VOLUME_GUEST_REFUSED]\n`);
      expect(existsSync(after)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('switch-volume is refused by the orchestrator unless guest_allowed_operations has it', async () => {
    await lab.startOrchestrator();
    const socket = lab.server.domainSocketPath(1);
    const refused = await client(socket, ['switch-volume', 'xvdb', '--to', 'clone', '--wait']);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/switch-volume is not allowed.*\[OP_NOT_ALLOWED\]/);
    lab.configure('web01', { guest_allowed_operations: 'status,switch-volume' });
    const ok = await client(socket, ['switch-volume', 'xvdb', '--to', 'clone', '--wait']);
    expect(ok.code).toBe(0);
    expect(lab.calls).toMatchObject([
      { domid: 1, vm: 'web01', op: 'switch-volume', args: { vdev: 'xvdb', to: 'clone' } },
    ]);
  });

  it('switch-volume refuses bad usage with exit status 2, sending nothing', async () => {
    await serveByHand(1);
    const socket = lab.server.domainSocketPath(1);
    for (const args of [
      ['switch-volume'],
      ['switch-volume', 'xvdb'],
      ['switch-volume', '/dev/xvdb', '--to', 'clone'],
      ['switch-volume', 'xvdb;reboot', '--to', 'clone'],
      ['switch-volume', 'xvdb', '--to', 'db01'],
      ['switch-volume', 'xvdb', '--to', 'clone', '--before', ' '],
      ['switch-volume', 'xvdb', '--to', 'clone', '--force'],
      ['create', '--to', 'clone'],
      ['create', '--before', 'true'],
    ]) {
      const out = await client(socket, args);
      expect(out.code, args.join(' ')).toBe(2);
    }
    expect(await lab.dom0.tryRead('/local/domain/1/data/zynclone/request')).toBeUndefined();
  });

  it.skipIf(skipWithout(existsSync('/usr/bin/shellcheck'), 'shellcheck'))(
    'passes shellcheck',
    async () => {
      const out = await new Promise<Out>((r) =>
        execFile('shellcheck', [CLIENT], (err, stdout, stderr) =>
          r({ code: err ? 1 : 0, stdout, stderr }),
        ),
      );
      expect(out.stdout).toBe('');
      expect(out.code).toBe(0);
    },
  );
});
