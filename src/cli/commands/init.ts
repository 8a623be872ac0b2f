// `arbor init <dir> <remote> [max-local-MB]`: a new filesystem on an empty remote (DESIGN.md §8).
import type { Command } from 'commander';
import { initWorkspace } from '../workspace.js';
import { cacheBytesFrom } from './common.js';

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create a new arbor filesystem on an empty remote and a first replica in <dir>')
    .argument('<dir>', 'local arbor directory to create (config, state, cache)')
    .argument(
      '<remote>',
      'remote: a path, file:///abs, sftp://user@host[:port]/path or s3://bucket/prefix?endpoint=…',
    )
    .argument('[max-local-MB]', 'local cache bound in MB (like syncer); same as --cache-size')
    .option('--cache-size <size>', 'local cache bound, e.g. 10GiB (default 10GiB)')
    .option(
      '--passphrase-file <file>',
      'protect the secret with the passphrase in this file (default: a key file <dir>/key)',
    )
    .action(
      async (
        dir: string,
        remote: string,
        maxMb: string | undefined,
        o: { cacheSize?: string; passphraseFile?: string },
      ) => {
        const ws = await initWorkspace(dir, remote, {
          cacheBytes: cacheBytesFrom(maxMb, o.cacheSize),
          ...(o.passphraseFile !== undefined ? { passphraseFile: o.passphraseFile } : {}),
        });
        const keyNote =
          ws.config.key.mode === 'keyfile' ? `; key file ${ws.dir}/key (copy it to clone elsewhere)` : '';
        await ws.close();
        process.stderr.write(`arbor: initialized ${ws.dir} (replica ${ws.replicaId})${keyNote}\n`);
      },
    );
}
