import { runXl } from './main.js';

process.exitCode = await runXl(process.argv.slice(2));
