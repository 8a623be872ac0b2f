// `arbor demo crdt`: placeholder until the CRDT lands (replaced by the crdt work).
import type { Command } from 'commander';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('demonstrations')
    .argument('<what>', 'what to demonstrate: crdt')
    .action((what: string) => {
      throw new Error(`no demo named '${what}'`);
    });
}
