import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XsType } from '../../../src/xenstore/wire.js';
import { RawClient, type TestServer, isAlive, runTool, startTestServer } from './helpers.js';

// Interop with Debian's real clients (xenstore-utils, python3-pyxs).
let ts: TestServer;
const children: ChildProcess[] = [];
const clients: RawClient[] = [];

beforeEach(async () => {
  ts = await startTestServer();
});

afterEach(async () => {
  for (const c of children.splice(0)) if (isAlive(c)) c.kill('SIGKILL');
  for (const c of clients.splice(0)) await c.close();
  await ts.stop();
});

async function dom0(): Promise<RawClient> {
  const c = await RawClient.connect(ts.socketPath);
  clients.push(c);
  return c;
}

const tool = (name: string, args: string[], socket = ts.socketPath) =>
  runTool(socket, `/usr/bin/xenstore-${name}`, args);

async function introduce(domid: number): Promise<string> {
  const c = await dom0();
  await c.call(XsType.INTRODUCE, `${domid}\0${1000 + domid}\0${10 + domid}\0`);
  return ts.server.domainSocketPath(domid);
}

describe('xenstore-utils against the simulated xenstored', () => {
  it('writes, reads, lists, checks and removes nodes', async () => {
    expect((await tool('write', ['/a/b/c', 'hello', '/a/d', 'x y'])).code).toBe(0);
    const read = await tool('read', ['/a/b/c', '/a/d']);
    expect(read).toMatchObject({ code: 0, stdout: 'hello\nx y\n' });
    expect((await tool('list', ['/a'])).stdout).toBe('b\nd\n');
    const ls = await tool('ls', ['/a']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toContain('b = ""');
    expect(ls.stdout).toContain(' c = "hello"');
    expect(ls.stdout).toContain('d = "x y"');
    expect((await tool('exists', ['/a/b/c'])).code).toBe(0);
    expect((await tool('exists', ['/a/nope'])).code).not.toBe(0);
    expect((await tool('rm', ['/a/b'])).code).toBe(0);
    expect((await tool('exists', ['/a/b/c'])).code).not.toBe(0);
    expect((await tool('list', ['/a'])).stdout).toBe('d\n');
    const missing = await tool('read', ['/a/b/c']);
    expect(missing.code).not.toBe(0);
  });

  it('shows the tree C xenstored and a booted dom0 start with', async () => {
    expect((await tool('list', ['/'])).stdout.split('\n')).toEqual(
      expect.arrayContaining(['tool', 'local']),
    );
    expect((await tool('read', ['/local/domain/0/name'])).stdout).toBe('Domain-0\n');
    // Relative paths of a dom0 client resolve under /local/domain/0.
    expect((await tool('read', ['domid'])).stdout).toBe('0\n');
  });

  it('sets and shows permissions with xenstore-chmod and xenstore-ls -p', async () => {
    await tool('write', ['/perm/node', 'v']);
    expect((await tool('chmod', ['/perm/node', 'n0', 'r5', 'w7'])).code).toBe(0);
    const c = await dom0();
    expect((await c.call(XsType.GET_PERMS, '/perm/node\0')).toString()).toBe('n0\0r5\0w7\0');
    const ls = await tool('ls', ['-p', '/perm']);
    expect(ls.stdout).toMatch(/node = "v".*\(n0,r5,w7\)/);
  });

  it('lets a guest read and write only what the permissions allow', async () => {
    const guest = await introduce(5);
    expect(existsSync(guest)).toBe(true);
    await tool('write', ['/local/domain/5/data/greeting', 'hi', '/secret', 's']);
    await tool('chmod', ['/local/domain/5/data', 'b5']);
    await tool('chmod', ['-r', '/local/domain/5/data', 'b5']);
    await tool('chmod', ['/local/domain/5', 'n0', 'r5']);

    // Allowed: its own writable area, by relative and absolute path.
    expect(await tool('read', ['data/greeting'], guest)).toMatchObject({ code: 0, stdout: 'hi\n' });
    expect((await tool('write', ['data/answer', '42'], guest)).code).toBe(0);
    expect((await tool('read', ['/local/domain/5/data/answer'])).stdout).toBe('42\n');
    // A node a guest creates is owned by it.
    const c = await dom0();
    expect((await c.call(XsType.GET_PERMS, '/local/domain/5/data/answer\0')).toString()).toBe(
      'b5\0',
    );

    // Denied: dom0's nodes, writing its read-only home, introducing domains.
    const denied = await tool('read', ['/secret'], guest);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain("couldn't read path /secret");
    expect((await tool('write', ['/local/domain/5/name', 'evil'], guest)).code).not.toBe(0);
    expect((await tool('read', ['/local/domain/0/name'], guest)).code).not.toBe(0);
    const g = await RawClient.connect(guest);
    clients.push(g);
    expect(await g.errno(XsType.READ, '/secret\0')).toBe('EACCES');
    // Not even whether a node exists leaks through an unreadable parent.
    expect(await g.errno(XsType.READ, '/nothing/here\0')).toBe('EACCES');
    expect(await g.errno(XsType.READ, 'data/nothing\0')).toBe('ENOENT');
    expect(await g.errno(XsType.INTRODUCE, '6\0\x31\0\x31\0')).toBe('EACCES');
    expect(await g.errno(XsType.RELEASE, '5\0')).toBe('EACCES');
    expect((await g.call(XsType.GET_DOMAIN_PATH, '5\0')).toString()).toBe('/local/domain/5\0');
  });

  it('delivers watch events to xenstore-watch', async () => {
    await tool('write', ['/w/x', '1']);
    const child = spawn('/usr/bin/xenstore-watch', ['/w'], {
      env: { ...process.env, XENSTORED_PATH: ts.socketPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const lines: string[] = [];
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
    });
    const waitLine = async (line: string) => {
      const deadline = Date.now() + 5000;
      while (!lines.includes(line)) {
        if (Date.now() > deadline) throw new Error(`no '${line}' from xenstore-watch: ${lines}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await waitLine('/w');
    await tool('write', ['/w/x/y', '2']);
    await waitLine('/w/x/y');
    await tool('rm', ['/w/x']);
    await waitLine('/w/x');
    await tool('write', ['/elsewhere', '3']);
    await tool('write', ['/w/z', '4']);
    await waitLine('/w/z');
    expect(lines).not.toContain('/elsewhere');
  });
});

const PY = '/usr/bin/python3';

describe('python3-pyxs against the simulated xenstored', () => {
  it('reads, writes, lists, commits a transaction and receives watch events', async () => {
    const script = `
import sys
from pyxs import Client
with Client(unix_socket_path=sys.argv[1]) as c:
    c.write(b"/py/a", b"1")
    c.mkdir(b"/py/dir")
    print(c.read(b"/py/a").decode())
    print(",".join(sorted(x.decode() for x in c.list(b"/py"))))
    print(",".join(p.decode() for p in c.get_perms(b"/py/a")))
    c.transaction()
    c.write(b"/py/t", b"in-tx")
    c.write(b"/py/a", b"2")
    print(c.commit())
    print(c.read(b"/py/t").decode(), c.read(b"/py/a").decode())
    m = c.monitor()
    m.watch(b"/py", b"tok")
    events = m.wait()
    print("event", *[x.decode() for x in next(events)])
    c.write(b"/py/dir/new", b"x")
    print("event", *[x.decode() for x in next(events)])
    m.close()
`;
    const r = await runTool(ts.socketPath, PY, ['-c', script, ts.socketPath]);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual([
      '1',
      'a,dir',
      'n0',
      'True',
      'in-tx 2',
      'event /py tok',
      'event /py/dir/new tok',
      '',
    ]);
  });

  it('reports a transaction conflict as a failed commit (EAGAIN)', async () => {
    const script = `
import sys
from pyxs import Client
with Client(unix_socket_path=sys.argv[1]) as a, Client(unix_socket_path=sys.argv[1]) as b:
    a.write(b"/c/x", b"0")
    a.transaction()
    print(a.read(b"/c/x").decode())
    b.write(b"/c/x", b"other")
    a.write(b"/c/x", b"mine")
    print(a.commit())
    print(a.read(b"/c/x").decode())
`;
    const r = await runTool(ts.socketPath, PY, ['-c', script, ts.socketPath]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('0\nFalse\nother\n');
  });
});
