// `arbor sync <dir>`: push pending chunks and ops, pull others', exit non-zero if anything is left pending.
// When a mount owns <dir>, asks it over its control socket instead of opening the state.
import type { Command } from 'commander';
import { ArborError } from '../../errors.js';
import { Replicator } from '../../sync/replicator.js';
import { askMount } from '../../sync/control.js';
import { WorkspaceLockedError, lockOwner, paths } from '../workspace.js';
import { note, out, withWorkspace } from './common.js';

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description(
      "push pending chunks and ops, pull other replicas' ops, then exit (non-zero if anything is still pending)",
    )
    .argument('<dir>', 'arbor directory')
    .option('--checkpoint', 'also publish a checkpoint (fast clone) of this replica')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, o: { checkpoint?: boolean; json?: boolean }) => {
      const owner = lockOwner(dir);
      let report: {
        pushedBatches: number;
        pulledBatches: number;
        pulledOps: number;
        pending: { localBatches: number; chunks: number };
      };
      if (owner !== undefined) {
        const reply = await askMount(paths(dir).socket, o.checkpoint ? 'sync-checkpoint' : 'sync').catch(
          (err: unknown) => {
            // A mount that answered with an error reports it; no answer at all means another command holds the lock.
            throw err instanceof ArborError ? err : new WorkspaceLockedError(dir, owner);
          },
        );
        report = reply as typeof report;
      } else {
        report = await withWorkspace(dir, async (ws) => {
          const r = new Replicator(ws);
          const res = await r.sync({ checkpoint: o.checkpoint === true, announce: true });
          return res;
        });
      }
      if (o.json) out(JSON.stringify({ ...report, change: undefined }));
      else
        note(
          `pushed ${report.pushedBatches} batch(es), pulled ${report.pulledBatches} batch(es) (${report.pulledOps} ops)`,
        );
      const left = report.pending.localBatches + report.pending.chunks;
      if (left > 0) {
        note(
          `${report.pending.localBatches} op batch(es) and ${report.pending.chunks} chunk(s) still pending`,
        );
        process.exitCode = 3;
      }
    });
}
