// What a simulated guest does with its disks, for tests and the demo:
// `zynclone sim guest <domain> mount|umount|write|read <vdev> [...]`. A
// guest sees only disks attached to it and connected; it writes only those
// attached writable; a mounted disk is in use, so its frontend refuses to
// close (see DomainManager.detachDisk).
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import type { Domain, DomainManager } from './domains.js';
import { diskDevid } from './spec.js';

export interface GuestIo {
  out(text: string): void;
  err(text: string): void;
}

/** Largest marker a guest writes or reads at once. */
const MAX_BYTES = 4096;

export const GUEST_USAGE =
  'usage: zynclone sim guest <domain> mount|umount <vdev> | write <vdev> <text> | read <vdev> <bytes>\n';

export async function runGuestCommand(
  dm: DomainManager,
  argv: readonly string[],
  io: GuestIo,
): Promise<number> {
  const [q, action, vdev, arg] = argv;
  if (q === undefined || action === undefined || vdev === undefined) {
    io.err(GUEST_USAGE);
    return 2;
  }
  const d: Domain | undefined = /^\d+$/.test(q) ? dm.get(Number(q)) : dm.byName(q);
  if (d === undefined) {
    io.err(`guest: no domain ${q}\n`);
    return 1;
  }
  let devid: number;
  try {
    devid = diskDevid(vdev);
  } catch (e) {
    io.err(`guest: ${(e as Error).message}\n`);
    return 2;
  }
  const disk = d.spec.disks.find((x) => x.devid === devid);
  if (disk === undefined || !d.connected || d.state !== 'running') {
    io.err(`guest ${d.spec.name}: /dev/${vdev}: No such device\n`);
    return 1;
  }
  switch (action) {
    case 'mount':
      d.busy.add(devid);
      return 0;
    case 'umount':
      d.busy.delete(devid);
      return 0;
    case 'write': {
      if (arg === undefined || Buffer.byteLength(arg) > MAX_BYTES) {
        io.err(`guest: write needs a text of at most ${MAX_BYTES} bytes\n${GUEST_USAGE}`);
        return 2;
      }
      if (disk.access !== 'w') {
        io.err(`guest ${d.spec.name}: /dev/${vdev}: Read-only file system\n`);
        return 1;
      }
      if (disk.format !== 'raw') {
        io.err(`guest: the simulator writes raw disks only, ${vdev} is ${disk.format}\n`);
        return 1;
      }
      const fd = openSync(disk.target, 'r+');
      try {
        writeSync(fd, Buffer.from(arg), 0, Buffer.byteLength(arg), 0);
      } finally {
        closeSync(fd);
      }
      return 0;
    }
    case 'read': {
      const n = Number(arg);
      if (!Number.isInteger(n) || n < 1 || n > MAX_BYTES) {
        io.err(`guest: read needs a byte count of 1-${MAX_BYTES}\n${GUEST_USAGE}`);
        return 2;
      }
      const buf = Buffer.alloc(n);
      const fd = openSync(disk.target, 'r');
      try {
        const got = readSync(fd, buf, 0, n, 0);
        io.out(buf.subarray(0, got).toString('latin1'));
      } finally {
        closeSync(fd);
      }
      return 0;
    }
    default:
      io.err(`guest: unknown action ${action}\n${GUEST_USAGE}`);
      return 2;
  }
}
