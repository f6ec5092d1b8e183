// The simulator's `xl`: forwards argv to the simulator daemon, which owns the
// domains, and prints what xl would print, with xl's exit code.
import { type ControlReply, controlRequest } from '../control.js';
import { simPaths } from '../paths.js';

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((r) => {
    if (stream.write(text)) r();
    else stream.once('drain', () => r());
  });
}

export async function runXl(argv: string[]): Promise<number> {
  const root = process.env.ZYNCLONE_SIM_ROOT ?? process.env.ZYNCLONE_ROOT;
  if (!root) {
    await write(
      process.stderr,
      'xl: no simulator root: set ZYNCLONE_ROOT (eval "$(zynclone sim env --root DIR)")\n',
    );
    return 1;
  }
  const paths = simPaths(root);
  const pending: Promise<void>[] = [];
  let final: ControlReply;
  try {
    const fault = process.env.ZYNCLONE_SIM_XL_FAULT;
    const req = { op: 'xl' as const, argv, cwd: process.cwd(), ...(fault ? { fault } : {}) };
    final = await controlRequest(paths.control, req, (r) => {
      if ('out' in r) pending.push(write(process.stdout, r.out));
      else if ('err' in r) pending.push(write(process.stderr, r.err));
    });
  } catch (err) {
    await write(
      process.stderr,
      `xl: cannot reach the Xen simulator at ${paths.control} (${(err as Error).message}); start it with: zynclone sim up --root ${paths.root}\n`,
    );
    return 1;
  }
  await Promise.all(pending);
  if ('exit' in final) return final.exit;
  if ('error' in final) await write(process.stderr, `xl: ${final.error}\n`);
  return 1;
}
