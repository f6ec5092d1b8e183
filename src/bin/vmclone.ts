#!/usr/bin/env node
// `vmclone`: see src/cli/vmclone.ts; `vmclone --help` lists commands, examples and exit codes.
import { enableCompileCache } from 'node:module';

// Everything else is imported after the compile cache is on, so that V8 compiles
// it once, not at every start: the cache sits beside this file (where only its
// owner, root on a host, can write), unless NODE_COMPILE_CACHE names another place.
enableCompileCache(
  process.env.NODE_COMPILE_CACHE ?? new URL('.compile-cache', import.meta.url).pathname,
);
const { runVmclone } = await import('../cli/vmclone.js');

process.exitCode = await runVmclone(process.argv.slice(2));
