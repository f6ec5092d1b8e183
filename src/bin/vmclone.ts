#!/usr/bin/env node
// `vmclone`: see src/cli/vmclone.ts; `vmclone --help` lists commands, examples and exit codes.
import { runVmclone } from '../cli/vmclone.js';

// `vmclone list | head`: a closed pipe ends the output, not the process with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

process.exitCode = await runVmclone(process.argv.slice(2));
