// `zynclone sim demo`: three VMs like those on a small office host. Their
// configs are written to DIR/demo next to their disk files, so a user can
// read, edit and re-create them with the simulator's xl.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

export async function runDemo(paths: SimPaths): Promise<number> {
  const journal = new Journal(paths.journal);
  if (!existsSync(paths.demo)) {
    journal.made({ kind: 'dir', path: paths.demo });
    mkdirSync(paths.demo, { recursive: true });
  }
  let rc = 0;
  for (const vm of DEMO_VMS) {
    for (const disk of vm.disks) {
      const file = join(paths.demo, disk.file);
      if (existsSync(file)) continue;
      // Disk images are sparse: a real host's would be too, and only their size shows.
      const fd = openSync(file, 'w');
      ftruncateSync(fd, disk.sizeMiB * 1024 * 1024);
      closeSync(fd);
    }
    const cfg = join(paths.demo, `${vm.name}.cfg`);
    writeFileSync(cfg, vm.config(paths.demo));
    const r = await controlRequest(
      paths.control,
      { op: 'xl', argv: ['create', cfg], cwd: paths.demo },
      (chunk) => {
        if ('err' in chunk) process.stderr.write(chunk.err);
        if ('out' in chunk) process.stdout.write(chunk.out);
      },
    );
    const code = 'exit' in r ? r.exit : 1;
    if (code !== 0) rc = 1;
  }
  if (rc === 0) process.stdout.write(`demo VMs running; configs and disks in ${paths.demo}\n`);
  return rc;
}
