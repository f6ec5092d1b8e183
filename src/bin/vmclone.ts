#!/usr/bin/env node
// `vmclone`: see src/cli/vmclone.ts; `vmclone --help` lists commands, examples and exit codes.
import { runVmclone } from '../cli/vmclone.js';

process.exitCode = await runVmclone(process.argv.slice(2));
