// One entry for the simulator's processes: `bin.js sim <args>` and `bin.js xl <args>`.
import { runSim } from './main.js';
import { runXl } from './xl/main.js';

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'xl') process.exitCode = await runXl(rest);
else if (cmd === 'sim') process.exitCode = await runSim(rest);
else {
  process.stderr.write(
    'usage: bin.js sim <up|down|env|demo|daemon> --root DIR | bin.js xl <args>\n',
  );
  process.exitCode = 2;
}
