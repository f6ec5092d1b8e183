#!/usr/bin/env node
import { Command } from 'commander';
import { packageVersion } from '../cli/version.js';

const program = new Command()
  .name('vmclone')
  .description('Create and manage clones of Xen virtual machines.')
  .version(packageVersion(), '-V, --version')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Examples:
  vmclone --version          print the version
  vmclone help               this help`,
  );

await program.parseAsync(process.argv);
