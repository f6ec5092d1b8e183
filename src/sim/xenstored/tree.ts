import type { XsPerm } from '../../xenstore/wire.js';
import { XsdError, fail } from './errors.js';
import { baseName, childPath, isUnder, parentOf } from './paths.js';
import { PERM_OWNER, PERM_READ, PERM_WRITE, type Principal, permFor } from './perms.js';
import type { Quotas } from './quotas.js';

/** One node; records are immutable, a change replaces the record. */
export interface NodeData {
  readonly value: Buffer;
  readonly perms: readonly XsPerm[];
  /** Child names in creation order, as C xenstored keeps them. */
  readonly children: readonly string[];
  /** Bumped whenever the record is replaced; DIRECTORY_PART and transactions rely on it. */
  readonly generation: number;
}

export type NodeInit = Omit<NodeData, 'generation'>;

/** A modification that may fire watches; perms are captured when it happened. */
export interface ChangeEvent {
  path: string;
  /** `exact`: only watches on this very path; `subtree`: watches on it or an ancestor. */
  match: 'exact' | 'subtree';
  perms: readonly XsPerm[] | undefined;
  parentPerms: readonly XsPerm[] | undefined;
  oldPerms?: readonly XsPerm[] | undefined;
}

/** What the request handlers see: the live store, or a transaction's view of it. */
export interface NodeView {
  get(path: string): NodeData | undefined;
  put(path: string, data: NodeInit): void;
  remove(path: string): void;
  /** Nodes whose first permission entry names this domain. */
  ownedCount(domid: number): number;
}

export function ownerOf(node: NodeInit): number {
  return node.perms[0]?.domid ?? 0;
}

/** The committed tree. */
export class Store implements NodeView {
  private readonly nodes = new Map<string, NodeData>();
  private readonly owned = new Map<number, number>();
  private generation = 0;

  get(path: string): NodeData | undefined {
    return this.nodes.get(path);
  }

  put(path: string, data: NodeInit): void {
    const old = this.nodes.get(path);
    if (old) this.count(ownerOf(old), -1);
    this.nodes.set(path, { ...data, generation: ++this.generation });
    this.count(ownerOf(data), 1);
  }

  remove(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.nodes.delete(path);
    this.count(ownerOf(old), -1);
  }

  ownedCount(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  nextGeneration(): number {
    return ++this.generation;
  }

  paths(): IterableIterator<string> {
    return this.nodes.keys();
  }

  get size(): number {
    return this.nodes.size;
  }

  private count(domid: number, delta: number): void {
    const n = (this.owned.get(domid) ?? 0) + delta;
    if (n === 0) this.owned.delete(domid);
    else this.owned.set(domid, n);
  }
}

/**
 * A transaction, as C xenstored keeps one: changes go to an overlay, and every
 * node read or written is copied into the transaction as it was first seen
 * (absent nodes included), so later reads inside it keep that value even after
 * a write outside it. The commit fails with EAGAIN when any of those nodes
 * changed in the store meanwhile.
 */
export class TxView implements NodeView {
  private readonly overlay = new Map<string, NodeData | null>();
  /** The committed node as the transaction first saw it (null: absent). */
  private readonly seen = new Map<string, NodeData | null>();
  private readonly ownedDelta = new Map<number, number>();
  readonly events: ChangeEvent[] = [];
  private readonly generation: number;

  constructor(private readonly store: Store) {
    this.generation = store.nextGeneration();
  }

  get(path: string): NodeData | undefined {
    const local = this.overlay.get(path);
    if (local !== undefined) return local ?? undefined;
    const first = this.seen.get(path);
    if (first !== undefined) return first ?? undefined;
    const node = this.store.get(path);
    this.seen.set(path, node ?? null);
    return node;
  }

  put(path: string, data: NodeInit): void {
    const old = this.get(path);
    if (old) this.count(ownerOf(old), -1);
    this.overlay.set(path, { ...data, generation: this.generation });
    this.count(ownerOf(data), 1);
  }

  remove(path: string): void {
    const old = this.get(path);
    if (old) this.count(ownerOf(old), -1);
    this.overlay.set(path, null);
  }

  ownedCount(domid: number): number {
    return this.store.ownedCount(domid) + (this.ownedDelta.get(domid) ?? 0);
  }

  conflicts(): boolean {
    for (const [path, first] of this.seen) {
      if ((this.store.get(path)?.generation ?? -1) !== (first?.generation ?? -1)) return true;
    }
    return false;
  }

  /** Applies the overlay; the caller checked conflicts() first. */
  apply(): void {
    for (const [path, data] of this.overlay) {
      if (data === null) this.store.remove(path);
      else this.store.put(path, data);
    }
  }

  private count(domid: number, delta: number): void {
    this.ownedDelta.set(domid, (this.ownedDelta.get(domid) ?? 0) + delta);
  }
}

/** The tree operations of C xenstored's core, over any view. */
export class TreeOps {
  constructor(
    private readonly view: NodeView,
    private readonly who: Principal,
    private readonly quotas: Quotas,
    private readonly events: ChangeEvent[],
  ) {}

  read(path: string): Buffer {
    return this.lookup(path, PERM_READ).value;
  }

  directory(path: string): NodeData {
    return this.lookup(path, PERM_READ);
  }

  getPerms(path: string): readonly XsPerm[] {
    return this.lookup(path, PERM_READ).perms;
  }

  write(path: string, value: Buffer): void {
    this.checkValueSize(value);
    const node = this.find(path, PERM_WRITE);
    if (node) this.view.put(path, { ...node, value });
    else this.create(path, value);
    this.changed(path, 'subtree');
  }

  mkdir(path: string): void {
    if (this.find(path, PERM_WRITE)) return;
    this.create(path, Buffer.alloc(0));
    this.changed(path, 'subtree');
  }

  rm(path: string): void {
    let node: NodeData | undefined;
    try {
      node = this.lookup(path, PERM_WRITE);
    } catch (err) {
      // A missing node is fine as long as its parent exists.
      if (err instanceof XsdError && err.errno === 'ENOENT') {
        if (this.view.get(parentOf(path))) return;
      }
      throw err;
    }
    if (path === '/') fail('EINVAL', 'cannot remove /');
    this.removeSubtree(path, node, path);
    const parentPath = parentOf(path);
    const parent = this.view.get(parentPath);
    if (parent) {
      const name = baseName(path);
      this.view.put(parentPath, { ...parent, children: parent.children.filter((c) => c !== name) });
    }
  }

  setPerms(path: string, perms: XsPerm[]): void {
    if (!this.who.privileged && perms.length > this.quotas.permsPerNode) {
      fail('ENOSPC', `${perms.length} permissions exceed the quota of ${this.quotas.permsPerNode}`);
    }
    const node = this.lookup(path, PERM_WRITE | PERM_OWNER);
    if (!this.who.privileged && perms[0]?.domid !== ownerOf(node)) {
      fail('EPERM', 'unprivileged domains may not change the owner');
    }
    this.view.put(path, { ...node, perms });
    this.changed(path, 'subtree', node.perms);
  }

  /** get_node(): the node if permitted; errors say ENOENT only if the parents would let you know. */
  lookup(path: string, perm: number): NodeData {
    const node = this.find(path, perm);
    if (!node) fail(this.errnoFromParents(path, perm, 'ENOENT'));
    return node;
  }

  private find(path: string, perm: number): NodeData | undefined {
    const node = this.view.get(path);
    if (!node) {
      if (this.errnoFromParents(path, perm, 'ENOENT') !== 'ENOENT') fail('EACCES');
      return undefined;
    }
    if ((permFor(this.who, node.perms) & perm) !== perm) fail('EACCES');
    return node;
  }

  private errnoFromParents(path: string, perm: number, errno: 'ENOENT'): 'ENOENT' | 'EACCES' {
    let p = path;
    while (p !== '/') {
      p = parentOf(p);
      const node = this.view.get(p);
      if (node) return permFor(this.who, node.perms) & perm ? errno : 'EACCES';
    }
    return 'EACCES';
  }

  private checkValueSize(value: Buffer): void {
    if (!this.who.privileged && value.length > this.quotas.maxValueSize) {
      fail(
        'ENOSPC',
        `value of ${value.length} bytes exceeds the quota of ${this.quotas.maxValueSize}`,
      );
    }
  }

  /** construct_node(): missing parents appear with their parent's permissions. */
  private create(path: string, value: Buffer): void {
    const missing: string[] = [];
    let p = path;
    let parent: NodeData | undefined;
    for (;;) {
      missing.push(p);
      p = parentOf(p);
      parent = this.view.get(p);
      if (parent) break;
      if (p === '/') fail('ENOENT', 'root node missing');
    }
    // Checked up front so that a refused request leaves no half-built path behind.
    if (
      !this.who.privileged &&
      this.view.ownedCount(this.who.domid) + missing.length > this.quotas.nodesPerDomain
    ) {
      fail(
        'ENOSPC',
        `domain ${this.who.domid} may own at most ${this.quotas.nodesPerDomain} nodes`,
      );
    }
    let parentPath = p;
    for (let i = missing.length - 1; i >= 0; i--) {
      const name = missing[i]!;
      const perms = parent!.perms.map((x) => ({ ...x }));
      // Unprivileged domains own what they create.
      if (!this.who.privileged && perms[0]) perms[0] = { ...perms[0], domid: this.who.domid };
      this.view.put(parentPath, { ...parent!, children: [...parent!.children, baseName(name)] });
      const node: NodeInit = { value: i === 0 ? value : Buffer.alloc(0), perms, children: [] };
      this.view.put(name, node);
      parent = this.view.get(name);
      parentPath = name;
    }
  }

  private removeSubtree(path: string, node: NodeData, root: string): void {
    for (const child of node.children) {
      const cp = childPath(path, child);
      const c = this.view.get(cp);
      if (c) this.removeSubtree(cp, c, root);
    }
    this.events.push({
      path,
      match: path === root ? 'subtree' : 'exact',
      perms: node.perms,
      parentPerms: this.view.get(parentOf(path))?.perms,
    });
    this.view.remove(path);
  }

  private changed(path: string, match: 'exact' | 'subtree', oldPerms?: readonly XsPerm[]): void {
    this.events.push({
      path,
      match,
      perms: this.view.get(path)?.perms,
      parentPerms: this.view.get(parentOf(path))?.perms,
      oldPerms,
    });
  }
}

/** A watch registered on `watchPath` sees this event (xenstored's is_child/streq). */
export function eventMatches(event: ChangeEvent, watchPath: string): boolean {
  return event.match === 'exact' ? event.path === watchPath : isUnder(event.path, watchPath);
}
