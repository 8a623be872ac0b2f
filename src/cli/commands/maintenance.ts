// `arbor gc <dir>` and `arbor fsck <dir>`.
import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { fsck } from '../../sync/fsck.js';
import { collectGarbage, type GcReport, type Retention } from '../../sync/gc.js';
import { retireReplica } from '../../sync/join.js';
import { Replicator } from '../../sync/replicator.js';
import { parseDuration } from '../size.js';
import { defineCommand, runOnWorkspace } from '../run.js';

function parseRetention(keep: string): Retention {
  if (keep === 'all') return { keep: 'all' };
  const v = /^(\d+)\s*(?:v|versions?)$/.exec(keep);
  if (v) return { versions: Math.max(1, Number(v[1])) };
  const d = /^(\d+)\s*(?:d|days?)$/.exec(keep);
  if (d) return { days: Number(d[1]) };
  throw new InvalidInputError(`--keep takes all, N versions (e.g. 10v) or D days (e.g. 30d), not '${keep}'`);
}

function gcSummary(r: GcReport, dryRun: boolean): string[] {
  const t = r.truncation;
  const progressed = t !== undefined && (t.logAfter < t.logBefore || t.purgedNodes + t.purgedInodes > 0);
  const lines = [
    r.threshold === undefined || (!progressed && !dryRun)
      ? `gc: log not truncated, trash not emptied: ${r.blocker ?? 'nothing is stable yet'}`
      : `gc: ops up to clock ${r.threshold.counter} are stable (${r.blocker ?? '?'})` +
        (t === undefined
          ? ''
          : `; log ${t.logBefore} -> ${t.logAfter} rows; ${t.purgedNodes} trash entries and ${t.purgedInodes} files emptied` +
            (t.deferredOpen > 0 ? `, ${t.deferredOpen} deferred (open or not yet stable)` : '')),
    `gc: ${r.batchesScanned} batches and ${r.checkpointsScanned} checkpoints scanned; ${r.retainedVersions}/${r.versions} versions kept` +
      (r.prunedVersions > 0 ? ` (${r.prunedVersions} pruned from history)` : '') +
      `; ${r.liveChunks} live chunks; ${r.unreferenced} of ${r.remoteChunks} remote chunks unreferenced; ` +
      `${r.deleted} ${dryRun ? 'would be ' : ''}deleted, ${r.waiting} waiting out the grace period`,
  ];
  return lines;
}

defineCommand(
  'gc',
  async (ws, args, io) => {
    const retire = typeof args.retire === 'string' && args.retire.length > 0 ? args.retire.split(',') : [];
    for (const id of retire) {
      const fresh = await retireReplica(ws, id);
      io.note(`replica ${id} ${fresh ? 'retired' : 'was already retired'}`);
    }
    const r = await collectGarbage(new Replicator(ws), {
      retention: parseRetention(String(args.keep)),
      graceMs: parseDuration(String(args.grace)),
      dryRun: args.dryRun === true,
    });
    if (args.json === true) io.out(JSON.stringify(r));
    else for (const line of gcSummary(r, args.dryRun === true)) io.note(line);
  },
  // gc syncs with its own replicator: inside a mount it would race the mount's sync loop.
  { inMount: false },
);

defineCommand('fsck', async (ws, args, io) => {
  const r = await fsck(ws, { skipBatches: args.skipBatches === true });
  if (args.json === true) io.out(JSON.stringify(r));
  else {
    for (const p of r.problems) io.out(p);
    io.note(
      `fsck: ${r.files} files, ${r.chunks} chunks, ${r.batches} batches checked; ${r.problems.length} problem(s)`,
    );
  }
  if (r.problems.length > 0) io.setExitCode(1);
});

export function registerMaintenance(program: Command): void {
  program
    .command('gc')
    .description(
      'delete remote chunks no replica references any more (after a grace period), pruning history by --keep; not while mounted',
    )
    .argument('<dir>', 'arbor directory')
    .option('--keep <policy>', 'history retention: all, N versions (10v) or D days (30d)', 'all')
    .option(
      '--grace <duration>',
      'delete a chunk only once it has been unreferenced this long (e.g. 24h, 0)',
      '24h',
    )
    .option('--dry-run', 'report without deleting or truncating')
    .option(
      '--retire <replica>',
      'first retire a replica that is gone for good (it stops holding log truncation back and can never publish again)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--json', 'machine-readable output')
    .action(
      async (
        dir: string,
        o: { keep: string; grace: string; dryRun?: boolean; json?: boolean; retire: string[] },
      ) => {
        // Checked here first, so a bad option is reported before anything is opened.
        parseRetention(o.keep);
        parseDuration(o.grace);
        await runOnWorkspace(dir, 'gc', {
          keep: o.keep,
          grace: o.grace,
          dryRun: o.dryRun === true,
          json: o.json === true,
          retire: o.retire.join(','),
        });
      },
    );

  program
    .command('fsck')
    .description(
      'check that every reference resolves and every chunk verifies; exits non-zero with a list of problems',
    )
    .argument('<dir>', 'arbor directory')
    .option('--skip-batches', "don't open every published op batch")
    .option('--json', 'machine-readable output')
    .action((dir: string, o: { skipBatches?: boolean; json?: boolean }) =>
      runOnWorkspace(dir, 'fsck', { skipBatches: o.skipBatches === true, json: o.json === true }),
    );
}
