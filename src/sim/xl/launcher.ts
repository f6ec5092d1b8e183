// DIR/bin/xl: what ZynClone runs as `xl` in the simulator. The command itself
// runs in the daemon; the launcher only forwards argv and relays the output.
// Node takes ~90 ms to start, which every xl call would pay (an online clone
// makes seven), so where Debian's python3 exists the launcher is a small
// Python client of the control socket (~25 ms), else a Node one.
import { existsSync } from 'node:fs';
import type { SimPaths } from '../paths.js';
import { shq } from '../proc.js';

const PYTHON = '/usr/bin/python3';

/** JSON string literals are valid Python string literals. */
const pyStr = (s: string) => JSON.stringify(s);

function pythonLauncher(paths: SimPaths): string {
  return `#!${PYTHON} -IS
# xl of the ZynClone simulator at ${paths.root}; the simulator daemon runs the command.
import json, os, socket, sys

CONTROL = ${pyStr(paths.control)}
ROOT = ${pyStr(paths.root)}


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(CONTROL)
    except OSError as e:
        sys.stderr.write("xl: cannot reach the Xen simulator at %s (%s); start it with: zynclone sim up --root %s\\n" % (CONTROL, e.strerror, ROOT))
        return 1
    req = {"op": "xl", "argv": sys.argv[1:], "cwd": os.getcwd()}
    if os.environ.get("ZYNCLONE_SIM_XL_FAULT"):
        req["fault"] = os.environ["ZYNCLONE_SIM_XL_FAULT"]
    s.sendall((json.dumps(req) + "\\n").encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            sys.stderr.write("xl: the simulator closed the connection\\n")
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
            elif "err" in r:
                sys.stderr.buffer.write(r["err"].encode())
                sys.stderr.flush()
            elif "exit" in r:
                return r["exit"]
            elif "error" in r:
                sys.stderr.write("xl: %s\\n" % r["error"])
                return 1


sys.exit(main())
`;
}

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
