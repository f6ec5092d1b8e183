// DIR/bin/xl: what ZynClone runs as `xl` in the simulator. The command itself
// runs in the daemon; the launcher only forwards argv and relays the output.
// Node takes ~90 ms to start, which every xl call would pay (an online clone
// makes seven), so where Debian's python3 exists the launcher is a small
// Python client of the control socket (~25 ms), else a Node one.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Journal } from '../journal.js';
import type { SimPaths } from '../paths.js';
import { shq } from '../proc.js';

const PYTHON = '/usr/bin/python3';

/** JSON string literals are valid Python string literals. */
const pyStr = (s: string) => JSON.stringify(s);

/** How one Python client of the control socket differs from the other. */
interface PythonClient {
  /** The program's name, in its own messages. */
  name: string;
  /** The daemon's operation that runs it. */
  op: 'xl' | 'livesave';
  /** Python statements run first. */
  prelude: string;
  /** Python statements for a daemon that cannot be reached (the OSError is `e`). */
  unreachable: string;
  /** Python statements that add to the request `req`. */
  request: string;
  /** Python statements run after the output message `r` is written. */
  afterOut: string;
}

/** A client that sends argv to the daemon and relays what it answers, line by line. */
function pythonClient(paths: SimPaths, c: PythonClient): string {
  const indent = (code: string, spaces: number) =>
    code
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => `${' '.repeat(spaces)}${line}\n`)
      .join('');
  return `#!${PYTHON} -IS
# ${c.name} of the ZynClone simulator at ${paths.root}; the simulator daemon runs it.
import json, os, socket, sys

CONTROL = ${pyStr(paths.control)}
ROOT = ${pyStr(paths.root)}


def main():
${indent(c.prelude, 4)}    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(CONTROL)
    except OSError as e:
${indent(c.unreachable, 8)}        return 1
    req = {"op": ${pyStr(c.op)}, "argv": sys.argv[1:], "cwd": os.getcwd()}
${indent(c.request, 4)}    s.sendall((json.dumps(req) + "\\n").encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            sys.stderr.write("${c.name}: the simulator closed the connection\\n")
            return 1
        buf += chunk
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            if not line:
                continue
            r = json.loads(line)
            if "out" in r:
                sys.stdout.buffer.write(r["out"].encode())
                sys.stdout.flush()
${indent(c.afterOut, 16)}            elif "err" in r:
                sys.stderr.buffer.write(r["err"].encode())
                sys.stderr.flush()
            elif "exit" in r:
                return r["exit"]
            elif "error" in r:
                sys.stderr.write("${c.name}: %s\\n" % r["error"])
                return 1


sys.exit(main())
`;
}

const pythonLauncher = (paths: SimPaths): string =>
  pythonClient(paths, {
    name: 'xl',
    op: 'xl',
    prelude: '',
    unreachable:
      'sys.stderr.write("xl: cannot reach the Xen simulator at %s (%s); start it with: zynclone sim up --root %s\\n" % (CONTROL, e.strerror, ROOT))',
    request:
      'if os.environ.get("ZYNCLONE_SIM_XL_FAULT"):\n    req["fault"] = os.environ["ZYNCLONE_SIM_XL_FAULT"]',
    afterOut: '',
  });

function nodeLauncher(paths: SimPaths, nodePath: string, entry: string): string {
  return `#!/bin/sh\n# xl of the ZynClone simulator at ${paths.root}\nZYNCLONE_SIM_ROOT=${shq(paths.root)}\nexport ZYNCLONE_SIM_ROOT\nexec ${shq(nodePath)} ${shq(entry)} xl "$@"\n`;
}

export function xlLauncher(
  paths: SimPaths,
  nodePath: string,
  entry: string,
  hasPython = existsSync(PYTHON),
): string {
  return hasPython ? pythonLauncher(paths) : nodeLauncher(paths, nodePath, entry);
}

/**
 * zynclone-livesave of the simulator (src/sim/host/live-save.ts runs it in
 * the daemon). After the `suspended` event it reads one line (or the end) of
 * its stdin and passes the go-ahead on. Like the real helper it dies with its
 * parent (PR_SET_PDEATHSIG), and its death ends the live save.
 */
const pythonLiveSaveLauncher = (paths: SimPaths): string =>
  pythonClient(paths, {
    name: 'zynclone-livesave',
    op: 'livesave',
    prelude: `import ctypes, signal
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass`,
    unreachable:
      'print(json.dumps({"event": "error", "code": "LIBXL", "message": "cannot reach the Xen simulator (%s)" % e.strerror}))',
    request: '',
    afterOut: `if r["out"].startswith('{"event":"suspended"'):
    sys.stdin.buffer.readline()
    s.sendall(b'{"go":true}\\n')`,
  });

/**
 * Installs the simulator's zynclone-livesave where the product looks for it.
 * Without python3 it is left out: the product then falls back to xl save -p,
 * as on a host without the helper.
 */
export function writeLiveSaveLauncher(
  paths: SimPaths,
  journal: Journal,
  hasPython = existsSync(PYTHON),
): void {
  if (!hasPython) return;
  let top = dirname(paths.liveSaveHelper);
  while (!existsSync(dirname(top))) top = dirname(top);
  if (!existsSync(top)) journal.made({ kind: 'dir', path: top });
  mkdirSync(dirname(paths.liveSaveHelper), { recursive: true });
  journal.made({ kind: 'file', path: paths.liveSaveHelper });
  writeFileSync(paths.liveSaveHelper, pythonLiveSaveLauncher(paths));
  chmodSync(paths.liveSaveHelper, 0o755);
}
