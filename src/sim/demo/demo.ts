// `zynclone sim demo`: three VMs like those on a small office host, laid out
// as on a Xen host: configs in DIR/etc/xen/<vm>.cfg (where ZynClone looks for
// a VM's config), disks in DIR/var/lib/xen/images, on the same filesystem as
// ZynClone's storage_dir (DIR/var/lib/zynclone/volumes) so clones are reflinks.
// A user can read, edit and re-create them with the simulator's xl.
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { controlRequest } from '../control.js';
import { Journal } from '../journal.js';
import type { SimPaths } from '../paths.js';

export interface DemoVm {
  name: string;
  disks: Array<{ file: string; sizeMiB: number }>;
  config: (dir: string) => string;
}

export const DEMO_VMS: DemoVm[] = [
  {
    name: 'web01',
    disks: [
      { file: 'web01-root.img', sizeMiB: 256 },
      { file: 'web01-www.img', sizeMiB: 64 },
    ],
    config: (dir) => `# Linux web server: production and backend networks, system and content disks.
name = "web01"
type = "pv"
kernel = "/boot/vmlinuz"
cmdline = "root=/dev/xvda1 ro console=hvc0"
memory = 64
vcpus = 2
vif = [ 'mac=00:16:3e:5a:00:01,bridge=xenbr0', 'mac=00:16:3e:5a:01:01,bridge=xenbr1' ]
sim_ip = [ "10.77.0.10/24", "10.78.0.10/24" ]
disk = [ 'format=raw,vdev=xvda,access=rw,target=${dir}/web01-root.img',
         'format=raw,vdev=xvdb,access=rw,target=${dir}/web01-www.img' ]
on_reboot = "restart"
`,
  },
  {
    name: 'win01',
    disks: [{ file: 'win01-c.img', sizeMiB: 512 }],
    config: (dir) => `# Windows-like desktop: VNC console, a USB dongle and a passthrough PCI card.
name = "win01"
type = "hvm"
memory = 128
vcpus = 2
vnc = 1
vnclisten = "127.0.0.1"
usb = 1
usbdevice = [ "tablet" ]
usbctrl = [ 'version=2,ports=4' ]
usbdev = [ 'hostbus=1,hostaddr=4,controller=0,port=1' ]
pci = [ '0000:03:00.0' ]
vif = [ 'mac=00:16:3e:5a:00:02,bridge=xenbr0' ]
sim_ip = [ "10.77.0.20/24" ]
disk = [ 'file:${dir}/win01-c.img,hda,w' ]
`,
  },
  {
    name: 'db01',
    disks: [
      { file: 'db01-root.img', sizeMiB: 128 },
      { file: 'shared-data.img', sizeMiB: 128 },
    ],
    config: (dir) => `# Database server on the backend network with a shared data volume.
name = "db01"
type = "pv"
kernel = "/boot/vmlinuz"
memory = 96
vcpus = 1
vif = [ 'mac=00:16:3e:5a:01:03,bridge=xenbr1' ]
sim_ip = [ "10.78.0.30/24" ]
disk = [ 'phy:${dir}/db01-root.img,xvda,w',
         'format=raw,vdev=xvdb,access=w,target=${dir}/shared-data.img' ]
`,
  },
];

const DISK_HEADER_BYTES = 1024 * 1024;

function diskHeader(vm: string, file: string): Buffer {
  const buf = Buffer.alloc(DISK_HEADER_BYTES);
  const line = Buffer.from(`ZynClone simulator demo disk ${file} of ${vm}\n`);
  for (let off = 0; off + line.length <= buf.length; off += line.length) line.copy(buf, off);
  return buf;
}

/** Makes `dir`, journaling (before) the topmost directory it creates, so `sim down` removes it. */
function mkdirJournaled(dir: string, journal: Journal): void {
  if (existsSync(dir)) return;
  let top = dir;
  while (!existsSync(dirname(top))) top = dirname(top);
  journal.made({ kind: 'dir', path: top });
  mkdirSync(dir, { recursive: true });
}

export async function runDemo(paths: SimPaths): Promise<number> {
  const journal = new Journal(paths.journal);
  mkdirJournaled(paths.xenConfigDir, journal);
  mkdirJournaled(paths.images, journal);
  let rc = 0;
  for (const vm of DEMO_VMS) {
    for (const disk of vm.disks) {
      const file = join(paths.images, disk.file);
      if (existsSync(file)) continue;
      // Disk images are sparse, as a real host's would be, except for their
      // first MiB: a reflink clone shares those blocks, so `filefrag -v` can show it.
      const fd = openSync(file, 'w');
      try {
        writeSync(fd, diskHeader(vm.name, disk.file), 0, DISK_HEADER_BYTES, 0);
        ftruncateSync(fd, disk.sizeMiB * 1024 * 1024);
      } finally {
        closeSync(fd);
      }
    }
    const cfg = join(paths.xenConfigDir, `${vm.name}.cfg`);
    writeFileSync(cfg, vm.config(paths.images));
    const r = await controlRequest(
      paths.control,
      { op: 'xl', argv: ['create', cfg], cwd: paths.xenConfigDir },
      (chunk) => {
        if ('err' in chunk) process.stderr.write(chunk.err);
        if ('out' in chunk) process.stdout.write(chunk.out);
      },
    );
    const code = 'exit' in r ? r.exit : 1;
    if (code !== 0) rc = 1;
  }
  if (rc === 0) {
    process.stdout.write(
      `demo VMs running; configs in ${paths.xenConfigDir}, disks in ${paths.images}\n`,
    );
  }
  return rc;
}
