import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XsType, encodeFrame } from '../../../src/xenstore/wire.js';
import { RawClient, type TestServer, startTestServer } from './helpers.js';

let ts: TestServer;
let admin: RawClient;
let guest: RawClient;

const GUEST = 7;
const DOM0_ROOT = '/t';
const SHARED_ROOT = `/local/domain/${GUEST}/data`;
const HIDDEN_ROOT = '/hidden';
const ROOTS = [DOM0_ROOT, SHARED_ROOT, HIDDEN_ROOT];

beforeAll(async () => {
  ts = await startTestServer();
  admin = await RawClient.connect(ts.socketPath);
  await admin.call(XsType.INTRODUCE, `${GUEST}\0\x31\0\x31\0`);
  guest = await RawClient.connect(ts.server.domainSocketPath(GUEST));
});

afterAll(async () => {
  await guest?.close();
  await admin?.close();
  await ts?.stop();
});

/** The tree as the test expects it: node values and child names in creation order. */
class Model {
  values = new Map<string, string>();
  children = new Map<string, string[]>();

  constructor() {
    for (const r of ROOTS) this.add(r, '');
  }

  private add(p: string, v: string): void {
    this.values.set(p, v);
    this.children.set(p, []);
    const parent = p.slice(0, p.lastIndexOf('/'));
    this.children.get(parent)?.push(p.slice(p.lastIndexOf('/') + 1));
  }

  ensure(p: string, value: string | undefined): void {
    const parent = p.slice(0, p.lastIndexOf('/'));
    if (!this.values.has(parent)) this.ensure(parent, '');
    if (!this.values.has(p)) this.add(p, value ?? '');
    else if (value !== undefined) this.values.set(p, value);
  }

  remove(p: string): void {
    // A copy: each child's removal takes its name out of this very list.
    for (const c of [...(this.children.get(p) ?? [])]) this.remove(`${p}/${c}`);
    this.values.delete(p);
    this.children.delete(p);
    const parent = p.slice(0, p.lastIndexOf('/'));
    const list = this.children.get(parent);
    if (list) list.splice(list.indexOf(p.slice(p.lastIndexOf('/') + 1)), 1);
  }
}

type Op =
  | { kind: 'write'; path: string; value: string; asGuest: boolean }
  | { kind: 'mkdir' | 'rm' | 'read' | 'directory'; path: string; asGuest: boolean };

const segment = fc.constantFrom('a', 'b', 'c');
const pathArb = fc
  .tuple(fc.constantFrom(...ROOTS), fc.array(segment, { minLength: 1, maxLength: 3 }))
  .map(([root, segs]) => `${root}/${segs.join('/')}`);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('write' as const),
    path: pathArb,
    value: fc.string({ maxLength: 8 }),
    asGuest: fc.boolean(),
  }),
  fc.record({
    kind: fc.constantFrom('mkdir' as const, 'rm' as const, 'read' as const, 'directory' as const),
    path: pathArb,
    asGuest: fc.boolean(),
  }),
);

/** What the server must answer, according to the model (and updates the model). */
function expected(model: Model, op: Op): string {
  if (op.asGuest && op.path.startsWith(`${HIDDEN_ROOT}/`)) return 'EACCES';
  if (op.asGuest && op.path.startsWith(`${DOM0_ROOT}/`)) return 'EACCES';
  const exists = model.values.has(op.path);
  switch (op.kind) {
    case 'write':
      model.ensure(op.path, op.value);
      return 'OK';
    case 'mkdir':
      model.ensure(op.path, undefined);
      return 'OK';
    case 'rm':
      if (exists) model.remove(op.path);
      else if (!model.values.has(op.path.slice(0, op.path.lastIndexOf('/')))) return 'ENOENT';
      return 'OK';
    case 'read':
      return exists ? `=${model.values.get(op.path)}` : 'ENOENT';
    case 'directory':
      return exists ? `=${model.children.get(op.path)!.join(',')}` : 'ENOENT';
  }
}

async function perform(op: Op): Promise<string> {
  const c = op.asGuest ? guest : admin;
  const type = {
    write: XsType.WRITE,
    mkdir: XsType.MKDIR,
    rm: XsType.RM,
    read: XsType.READ,
    directory: XsType.DIRECTORY,
  }[op.kind];
  const payload = op.kind === 'write' ? `${op.path}\0${op.value}` : `${op.path}\0`;
  const f = await c.request(type, Buffer.from(payload, 'utf8'));
  const text = f.payload.toString('utf8');
  if (f.type === XsType.ERROR) return text.replace(/\0$/, '');
  if (op.kind === 'read') return `=${text}`;
  if (op.kind === 'directory') return `=${text.replace(/\0$/, '').split('\0').join(',')}`;
  return text === 'OK\0' ? 'OK' : `unexpected ${JSON.stringify(text)}`;
}

async function resetTree(): Promise<void> {
  for (const r of ROOTS) await admin.errno(XsType.RM, `${r}\0`);
  await admin.call(XsType.MKDIR, `${DOM0_ROOT}\0`);
  await admin.call(XsType.MKDIR, `${HIDDEN_ROOT}\0`);
  await admin.call(XsType.MKDIR, `${SHARED_ROOT}\0`);
  await admin.call(XsType.SET_PERMS, `${SHARED_ROOT}\0n0\0b${GUEST}\0`);
}

describe('random operation sequences', () => {
  it('match a model of the tree, for dom0 and a guest', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        await resetTree();
        const model = new Model();
        for (const op of ops) {
          const want = expected(model, op);
          expect(
            `${op.kind} ${op.path}${op.asGuest ? ' (guest)' : ''} -> ${await perform(op)}`,
          ).toBe(`${op.kind} ${op.path}${op.asGuest ? ' (guest)' : ''} -> ${want}`);
        }
      }),
      {
        numRuns: 40,
        examples: [
          // Removing a node with two children removes both (once missed by the model).
          [
            [
              { kind: 'write', path: `${SHARED_ROOT}/b/a`, value: '', asGuest: false },
              { kind: 'mkdir', path: `${SHARED_ROOT}/b/c`, asGuest: false },
              { kind: 'rm', path: `${SHARED_ROOT}/b`, asGuest: false },
              { kind: 'read', path: `${SHARED_ROOT}/b/c`, asGuest: false },
            ],
          ],
        ],
      },
    );
  });
});

const frameArb = fc.record({
  type: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 0xffffffff })),
  txId: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
  payload: fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc
      .array(
        fc.oneof(fc.constantFrom('/', '/a', 'a', '@x', '/a//b', 'T', 'F', '1', ''), fc.string()),
        {
          maxLength: 4,
        },
      )
      .map((parts) => Buffer.from(parts.join('\0'), 'utf8')),
  ),
});

const endingArb = fc.constantFrom('none', 'oversized', 'truncated', 'garbage');

describe('malformed frames', () => {
  it('get an answer when intact, and never disturb another connection', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(frameArb, { maxLength: 6 }), endingArb, async (frames, ending) => {
        const bad = await RawClient.connect(ts.socketPath);
        try {
          for (const f of frames) {
            if (f.type === XsType.RELEASE || f.type === XsType.INTRODUCE) continue;
            const reply = await bad.request(f.type, f.payload, f.txId);
            expect(reply.type === f.type || reply.type === XsType.ERROR).toBe(true);
          }
          if (ending === 'oversized') {
            const h = encodeFrame({
              type: XsType.READ,
              reqId: 9,
              txId: 0,
              payload: Buffer.alloc(0),
            });
            h.writeUInt32LE(4097, 12);
            bad.sendRaw(h);
            await bad.waitFor(() => (bad.closed ? true : undefined), 'close after oversized frame');
          } else if (ending === 'truncated') {
            const full = encodeFrame({
              type: XsType.READ,
              reqId: 9,
              txId: 0,
              payload: Buffer.from('/tool\0'),
            });
            bad.sendRaw(full.subarray(0, 19));
          } else if (ending === 'garbage') {
            bad.sendRaw(Buffer.from([1, 2, 3]));
          }
        } finally {
          await bad.close();
        }
        const good = await RawClient.connect(ts.socketPath);
        try {
          expect(await good.directory('/tool')).toEqual(['xenstored']);
        } finally {
          await good.close();
        }
      }),
      { numRuns: 60 },
    );
  });
});

/** A flat model: path -> value; parents implicit in the keys. */
function applyFlat(tree: Map<string, string>, op: TxOp): string {
  const parent = op.path.slice(0, op.path.lastIndexOf('/'));
  switch (op.kind) {
    case 'write': {
      for (let p = parent; p !== TX_ROOT && !tree.has(p); p = p.slice(0, p.lastIndexOf('/'))) {
        tree.set(p, '');
      }
      tree.set(op.path, op.value);
      return 'OK';
    }
    case 'rm':
      if (!tree.has(op.path)) return parent === TX_ROOT || tree.has(parent) ? 'OK' : 'ENOENT';
      for (const k of [...tree.keys()])
        if (k === op.path || k.startsWith(`${op.path}/`)) tree.delete(k);
      return 'OK';
    case 'read':
      return tree.has(op.path) ? `=${tree.get(op.path)}` : 'ENOENT';
  }
}

type TxOp = { kind: 'write'; path: string; value: string } | { kind: 'rm' | 'read'; path: string };
const TX_ROOT = '/s';
const txPathArb = fc
  .array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 2 })
  .map((segs) => `${TX_ROOT}/${segs.join('/')}`);
const txOpArb: fc.Arbitrary<TxOp> = fc.oneof(
  fc.record({
    kind: fc.constant('write' as const),
    path: txPathArb,
    value: fc.string({ maxLength: 4 }),
  }),
  fc.record({ kind: fc.constantFrom('rm' as const, 'read' as const), path: txPathArb }),
);

async function dumpTree(
  c: RawClient,
  root: string,
  out = new Map<string, string>(),
): Promise<Map<string, string>> {
  for (const name of await c.directory(root)) {
    const p = `${root}/${name}`;
    out.set(p, await c.read(p));
    await dumpTree(c, p, out);
  }
  return out;
}

async function runTxOp(c: RawClient, op: TxOp, txId: number): Promise<string> {
  const type = { write: XsType.WRITE, rm: XsType.RM, read: XsType.READ }[op.kind];
  const payload = op.kind === 'write' ? `${op.path}\0${op.value}` : `${op.path}\0`;
  const f = await c.request(type, Buffer.from(payload, 'utf8'), txId);
  const text = f.payload.toString('utf8');
  if (f.type === XsType.ERROR) return text.replace(/\0$/, '');
  return op.kind === 'read' ? `=${text}` : 'OK';
}

describe('transactions under concurrent writes', () => {
  it('commit as if run at commit time, or fail with EAGAIN and change nothing', async () => {
    const other = await RawClient.connect(ts.socketPath);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ inTx: fc.boolean(), op: txOpArb }), { maxLength: 12 }),
          async (steps) => {
            await admin.errno(XsType.RM, `${TX_ROOT}\0`);
            await admin.call(XsType.MKDIR, `${TX_ROOT}\0`);
            const outside = new Map<string, string>();
            const tx = Number.parseInt(
              (await admin.call(XsType.TRANSACTION_START, '\0')).toString(),
              10,
            );
            const txResults: string[] = [];
            for (const { inTx, op } of steps) {
              if (inTx) txResults.push(await runTxOp(admin, op, tx));
              else expect(await runTxOp(other, op, 0)).toBe(applyFlat(outside, op));
            }
            const end = await admin.errno(XsType.TRANSACTION_END, 'T\0', tx);
            const final = await dumpTree(admin, TX_ROOT);
            if (steps.every((s) => s.inTx)) expect(end).toBe('OK');
            if (end === 'OK') {
              const replay = new Map(outside);
              const replayed = steps.filter((s) => s.inTx).map((s) => applyFlat(replay, s.op));
              expect(txResults).toEqual(replayed);
              expect(final).toEqual(replay);
            } else {
              expect(end).toBe('EAGAIN');
              expect(final).toEqual(outside);
            }
          },
        ),
        { numRuns: 60 },
      );
    } finally {
      await other.close();
    }
  });
});
