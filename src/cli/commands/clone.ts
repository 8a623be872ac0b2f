// `arbor clone <dir> <remote> [max-local-MB]`: a new replica of an existing filesystem, filled from the newest
// checkpoint and the op batches after it, with a progress bar on stderr.
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { Replicator, type Progress } from '../../sync/replicator.js';
import { cloneWorkspace } from '../workspace.js';
import { cacheBytesFrom, note } from './common.js';

interface CloneFlags {
  cacheSize?: string;
  keyFile?: string;
  passphraseFile?: string;
  readOnly?: boolean;
  checkpoint?: boolean;
}

export function registerClone(program: Command): void {
  program
    .command('clone')
    .description('make <dir> a new replica of the arbor filesystem on <remote> and pull its current state')
    .argument('<dir>', 'local arbor directory to create')
    .argument('<remote>', 'remote URL of an existing arbor filesystem')
    .argument('[max-local-MB]', 'local cache bound in MB; same as --cache-size')
    .option('--cache-size <size>', 'local cache bound, e.g. 10GiB (default 10GiB)')
    .option('--key-file <file>', "a copy of another replica's key file (<dir>/key), for key-file filesystems")
    .option('--passphrase-file <file>', 'the passphrase, for passphrase-protected filesystems')
    .option('--read-only', 'a satellite replica: pulls other replicas’ changes, never pushes')
    .option('--no-checkpoint', 'replay every op batch instead of starting from the newest checkpoint')
    .action(async (dir: string, remote: string, maxMb: string | undefined, o: CloneFlags) => {
      const ws = await cloneWorkspace(dir, remote, {
        cacheBytes: cacheBytesFrom(maxMb, o.cacheSize),
        ...(o.keyFile !== undefined ? { keyFile: o.keyFile } : {}),
        ...(o.passphraseFile !== undefined ? { passphraseFile: o.passphraseFile } : {}),
        readOnly: o.readOnly === true,
      });
      const bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: 'arbor clone: {phase} [{bar}] {value}/{total}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      let started = false;
      const onProgress = (p: Progress): void => {
        if (p.phase !== 'pull' && p.phase !== 'checkpoint') return;
        if (!started) {
          bar.start(p.total, p.done, { phase: p.phase });
          started = true;
        }
        bar.setTotal(p.total);
        bar.update(p.done, { phase: p.phase });
      };
      try {
        const r = new Replicator(ws);
        const cp =
          o.checkpoint === false ? { loaded: 0, failed: [] } : await r.restoreLatestCheckpoint(onProgress);
        // An unusable checkpoint is not fatal: the pull below replays the batches instead. Say so, once each.
        for (const f of cp.failed) note(`clone: skipped checkpoint ${f}; replaying op batches instead`);
        const pulled = await r.pull(onProgress);
        if (started) bar.stop();
        note(
          `cloned into ${ws.dir} (replica ${ws.replicaId}${ws.readOnly ? ', read-only' : ''}): ` +
            (cp.loaded > 0 ? `checkpoint (${cp.loaded} entries) + ` : '') +
            `${pulled.batches} batch(es), ${pulled.ops} ops`,
        );
      } finally {
        if (started) bar.stop();
        await ws.close();
      }
    });
}
