// The simulator's record of what it made. An entry is appended BEFORE the
// thing is made and a removal entry after it is gone, so after any crash
// (SIGKILL included) `sim down` knows every namespace, process, mount, loop
// device, file and directory that may exist and removes exactly those.
import { appendFileSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import type { SimPaths } from './paths.js';
import { readCmdline, run, terminate } from './proc.js';
import { detachLoops, isMountPoint, mountsUnder, unmount } from './storage.js';

export type Made =
  /** A network namespace; its veths and bridges go with it. */
  | { kind: 'netns'; name: string }
  /** A process, found by a string unique to its command line. */
  | { kind: 'proc'; match: string }
  | { kind: 'file'; path: string }
  /** A directory, removed with its content. */
  | { kind: 'dir'; path: string }
  /**
   * Loop devices backed by an image file. The device name is only known once
   * attached, so the image identifies them (`losetup -j IMAGE`).
   */
  | { kind: 'loop'; image: string }
  /** A filesystem mounted at a path. */
  | { kind: 'mount'; path: string };

type Line = { op: 'mk' | 'rm' } & Made;

function keyOf(m: Made): string {
  switch (m.kind) {
    case 'netns':
      return `netns:${m.name}`;
    case 'proc':
      return `proc:${m.match}`;
    case 'file':
      return `file:${m.path}`;
    case 'dir':
      return `dir:${m.path}`;
    case 'loop':
      return `loop:${m.image}`;
    case 'mount':
      return `mount:${m.path}`;
  }
}

export class Journal {
  constructor(readonly path: string) {}

  /** Call before making the thing. */
  made(m: Made): void {
    appendFileSync(this.path, `${JSON.stringify({ op: 'mk', ...m })}\n`);
  }

  /** Call after the thing is gone. */
  gone(m: Made): void {
    appendFileSync(this.path, `${JSON.stringify({ op: 'rm', ...m })}\n`);
  }

  /** What may still exist, oldest first. */
  live(): Made[] {
    if (!existsSync(this.path)) return [];
    const live = new Map<string, Made>();
    for (const text of readFileSync(this.path, 'utf8').split('\n')) {
      if (text.trim() === '') continue;
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        // A torn last line from a crash mid-append: the thing was not made yet.
        continue;
      }
      const { op, ...made } = line;
      const key = keyOf(made as Made);
      if (op === 'mk') {
        live.delete(key);
        live.set(key, made as Made);
      } else live.delete(key);
    }
    return [...live.values()];
  }
}

export function findProcesses(match: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const cmd = readCmdline(pid);
    if (cmd !== undefined && `${cmd} `.includes(match)) pids.push(pid);
  }
  return pids;
}

/**
 * Removes everything the journal says may exist, newest first, then the journal
 * itself. Idempotent; reports what it removed.
 */
export async function undoJournal(paths: SimPaths): Promise<string[]> {
  const journal = new Journal(paths.journal);
  const done: string[] = [];
  let kept = false;
  const live = journal.live().reverse();
  // Processes first: a process inside a namespace keeps it alive, and QEMU holds files open.
  for (const m of live.filter((x) => x.kind === 'proc')) {
    for (const pid of findProcesses(m.match)) {
      await terminate(pid);
      done.push(`process ${pid}`);
    }
  }
  // Newest first keeps the order safe: a mount goes before its loop device,
  // the loop device before its image file, both before the mount point's directory.
  for (const m of live) {
    if (m.kind === 'mount') {
      if (isMountPoint(m.path)) {
        try {
          await unmount(m.path);
          done.push(`mount ${m.path}`);
        } catch {
          // Still mounted: the directory below and the journal are kept, so `sim down` can retry.
          kept = true;
        }
      }
    } else if (m.kind === 'loop') {
      for (const dev of await detachLoops(m.image)) done.push(`loop device ${dev}`);
    } else if (m.kind === 'netns') {
      const r = await run('ip', ['netns', 'delete', m.name]);
      if (r.code === 0) done.push(`netns ${m.name}`);
    } else if (m.kind === 'file' || m.kind === 'dir') {
      // Never delete through a filesystem that is still mounted (its unmount failed above).
      if (m.kind === 'dir' && mountsUnder(m.path).length > 0) {
        kept = true;
        continue;
      }
      if (existsSync(m.path)) {
        rmSync(m.path, { recursive: true, force: true });
        done.push(`${m.kind} ${m.path}`);
      }
    }
  }
  // Namespaces made by a simulator whose journal line was torn still carry the prefix.
  const list = await run('ip', ['netns', 'list']);
  if (list.code === 0) {
    for (const line of list.stdout.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      if (name.startsWith(`${paths.prefix}-`)) {
        const r = await run('ip', ['netns', 'delete', name]);
        if (r.code === 0) done.push(`netns ${name}`);
      }
    }
  }
  if (!kept) rmSync(paths.journal, { force: true });
  return done;
}
