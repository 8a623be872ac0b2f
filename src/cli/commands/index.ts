// Registers every replication/CLI command owned by the sync work (mount/unmount and demo register themselves).
import type { Command } from 'commander';
import { registerClone } from './clone.js';
import { registerFiles } from './files.js';
import { registerHistory } from './history.js';
import { registerInit } from './init.js';
import { registerMaintenance } from './maintenance.js';
import { registerPins } from './pins.js';
import { registerStatus } from './status.js';
import { registerSync } from './sync.js';

// The AWS SDK warns on every run under Node 20 (its support ends in 2027); one-line errors must stay one line.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// `arbor ls … | head` closes the pipe early: that is a normal end, not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

export function registerCommands(program: Command): void {
  registerInit(program);
  registerClone(program);
  registerSync(program);
  registerFiles(program);
  registerStatus(program);
  registerHistory(program);
  registerPins(program);
  registerMaintenance(program);
}
