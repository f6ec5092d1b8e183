// A domain's VNC console, served by real QEMU as on a Xen HVM guest. QEMU
// boots a 512-byte boot sector that clears the VGA text screen, writes the
// domain's name and its boot count and halts the CPU until an interrupt, so
// the console shows the name, costs no CPU while idle (TCG or KVM, whichever
// is usable) and reboots on Ctrl-Alt-Del. The name is also the VNC desktop
// name (-name).
import { spawn } from 'node:child_process';
import { constants, accessSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Journal } from '../journal.js';
import { SimError, isAlive, sleep, terminate } from '../proc.js';

export interface VncConsole {
  pid: number;
  display: number;
  port: number;
  listen: string;
  pidfile: string;
  image: string;
}

/**
 * Real-mode code: set text mode 3 (clears the screen), hide the cursor, count
 * the boots in CMOS byte 0x34 (kept across a reset), print the text and the
 * count mod 10, then idle with interrupts on, so the BIOS keyboard handler
 * sees Ctrl-Alt-Del and resets the machine: the next boot shows the next count.
 */
export function bootSector(text: string): Buffer {
  const msg = Buffer.from(`${text.replace(/[^\x20-\x7e]/g, '?').slice(0, 70)} boot `, 'latin1');
  const row = 12;
  const col = Math.max(0, Math.floor((80 - msg.length - 1) / 2));
  const di = (row * 80 + col) * 2;
  // biome-ignore format: one instruction per line
  const head: number[] = [
    0xb8, 0x03, 0x00, 0xcd, 0x10, //  mov ax,0x0003 ; int 0x10
    0xb4, 0x01, 0xb9, 0x00, 0x20, //  mov ah,1 ; mov cx,0x2000
    0xcd, 0x10, //                    int 0x10 (cursor off)
    0x31, 0xc0, 0x8e, 0xd8, //        xor ax,ax ; mov ds,ax
    0xb0, 0x34, 0xe6, 0x70, //        mov al,0x34 ; out 0x70,al
    0xe4, 0x71, 0xfe, 0xc0, //        in al,0x71 ; inc al
    0x88, 0xc3, //                    mov bl,al
    0xb0, 0x34, 0xe6, 0x70, //        mov al,0x34 ; out 0x70,al
    0x88, 0xd8, 0xe6, 0x71, //        mov al,bl ; out 0x71,al
    0xb8, 0x00, 0xb8, 0x8e, 0xc0, //  mov ax,0xb800 ; mov es,ax
    0xbf, di & 0xff, di >> 8, //      mov di,imm16
  ];
  // biome-ignore format: one instruction per line
  const tail: number[] = [
    0xb4, 0x1f, //                    mov ah,0x1f (white on blue)
    0xac, 0x84, 0xc0, 0x74, 0x03, //  lodsb ; test al,al ; jz +3
    0xab, 0xeb, 0xf8, //              stosw ; jmp lodsb
    0x88, 0xd8, 0x30, 0xe4, //        mov al,bl ; xor ah,ah
    0xb1, 0x0a, 0xf6, 0xf1, //        mov cl,10 ; div cl
    0x88, 0xe0, 0x04, 0x30, //        mov al,ah ; add al,'0'
    0xb4, 0x1f, 0xab, //              mov ah,0x1f ; stosw
    0xfb, 0xf4, 0xeb, 0xfd, //        sti ; hlt ; jmp hlt
  ];
  // mov si,imm16: the text follows the code.
  const si = 0x7c00 + head.length + 3 + tail.length;
  const code = [...head, 0xbe, si & 0xff, si >> 8, ...tail];
  const msgAt = code.length;
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector, 0);
  msg.copy(sector, msgAt);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen(port, host, () => srv.close(() => resolveFree(true)));
  });
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function qemuBinary(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(`${dir}/qemu-system-x86_64`)) return `${dir}/qemu-system-x86_64`;
  }
  return undefined;
}

/**
 * Starts QEMU serving VNC on 127.0.0.1 at the first free display at or above
 * `firstDisplay` (xl's vncunused behaviour). The journal learns the process
 * (by its pidfile path on the command line) before it is spawned.
 */
export async function startVnc(opts: {
  name: string;
  domid: number;
  dir: string;
  journal: Journal;
  listen?: string;
  firstDisplay?: number;
  log?: (msg: string) => void;
}): Promise<VncConsole> {
  const qemu = qemuBinary();
  if (!qemu) {
    throw new SimError(
      'SIM_NO_QEMU',
      'qemu-system-x86_64 is not installed (Debian package qemu-system-x86): no VNC console',
    );
  }
  const listen = opts.listen ?? '127.0.0.1';
  const image = `${opts.dir}/console.img`;
  const pidfile = `${opts.dir}/qemu.pid`;
  opts.journal.made({ kind: 'file', path: image });
  writeFileSync(image, bootSector(`${opts.name} (domain ${opts.domid})`));
  let display = opts.firstDisplay ?? opts.domid;
  for (let attempt = 0; attempt < 50; attempt++, display++) {
    if (!(await portFree(5900 + display, listen))) continue;
    const args = [
      '-name',
      opts.name,
      '-nodefaults',
      '-no-user-config',
      '-machine',
      'pc',
      // TCG by default: a halted TCG guest costs no CPU, while nested KVM
      // without hardware support can spin; ZYNCLONE_SIM_KVM=1 opts in.
      ...(process.env.ZYNCLONE_SIM_KVM === '1' && kvmUsable()
        ? ['-accel', 'kvm', '-accel', 'tcg']
        : ['-accel', 'tcg']),
      '-m',
      '8',
      '-vga',
      'std',
      '-drive',
      `file=${image},format=raw,if=floppy,readonly=on`,
      '-boot',
      'a',
      '-vnc',
      `${listen}:${display}`,
      '-monitor',
      'none',
      '-serial',
      'none',
      '-parallel',
      'none',
      '-pidfile',
      pidfile,
    ];
    opts.journal.made({ kind: 'proc', match: `-pidfile ${pidfile} ` });
    const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    const exited = new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    child.unref();
    // Ready when the VNC port is taken (by this QEMU) or QEMU has exited.
    const deadline = Date.now() + 10_000;
    let ready = false;
    while (Date.now() < deadline) {
      const gone = await Promise.race([exited.then(() => true), sleep(25).then(() => false)]);
      if (gone) break;
      if (!(await portFree(5900 + display, listen))) {
        ready = true;
        break;
      }
    }
    child.stderr?.destroy();
    if (ready && child.pid !== undefined) {
      return { pid: child.pid, display, port: 5900 + display, listen, pidfile, image };
    }
    if (child.pid !== undefined && isAlive(child.pid)) await terminate(child.pid);
    opts.journal.gone({ kind: 'proc', match: `-pidfile ${pidfile} ` });
    if (!/Address already in use|Failed to find an available port/i.test(stderr)) {
      throw new SimError('SIM_QEMU', `QEMU failed to start for ${opts.name}: ${stderr.trim()}`);
    }
    opts.log?.(`VNC display ${display} was taken meanwhile, trying the next`);
  }
  throw new SimError(
    'SIM_VNC_PORTS',
    `no free VNC display from ${opts.firstDisplay ?? opts.domid}`,
  );
}

export async function stopVnc(vnc: VncConsole, journal: Journal): Promise<void> {
  let pid = vnc.pid;
  try {
    pid = Number(readFileSync(vnc.pidfile, 'utf8').trim()) || vnc.pid;
  } catch {
    // QEMU removes its pidfile on a clean exit; the spawn pid is the same process.
  }
  await terminate(pid);
  journal.gone({ kind: 'proc', match: `-pidfile ${vnc.pidfile} ` });
}
