#!/usr/bin/env node
// The arbor command line: the only place that wires all parts together. Each command lives in its own module.
import { Command, CommanderError } from 'commander';
import { ArborError } from '../errors.js';
import { registerDemo } from './commands/demo.js';
import { registerCommands } from './commands/index.js';
import { registerMount } from './commands/mount.js';

const program = new Command();
program
  .name('arbor')
  .description('A caching, replicated filesystem: a tree CRDT over deduplicated, encrypted chunks')
  .version('0.1.0')
  .showHelpAfterError(false)
  .configureOutput({ writeErr: () => {} })
  .exitOverride();

registerDemo(program);
registerCommands(program);
registerMount(program);
program.addHelpText(
  'after',
  '\nCommands on <dir> work with or without a mount: while `arbor mount` owns <dir> they run inside it\n' +
    '(through <dir>/command.sock) and the mount shows their changes at once; only gc refuses while mounted.',
);

function fail(message: string, code = 1): never {
  process.stderr.write(`arbor: ${message}\n`);
  process.exit(code);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
      process.exit(0);
    }
    fail(err.message.replace(/^error: /, ''), 2);
  }
  if (err instanceof ArborError) fail(err.message, 1);
  fail(err instanceof Error ? err.message : String(err), 1);
}
