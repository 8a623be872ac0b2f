// `arbor log <dir> <path>` (versions of a file) and `arbor restore <dir> <path> --at <time|version> [--to <path>]`,
// run here or inside the mount that owns the directory (src/cli/run.ts).
import type { Command } from 'commander';
import { isHole } from '../../chunks/types.js';
import { InvalidInputError, fsError } from '../../errors.js';
import { Arbor, type ContentVersion } from '../../index.js';
import { formatBytes } from '../size.js';
import { restorePathAt } from '../../tree/restore.js';
import { defineCommand, runOnWorkspace } from '../run.js';
import type { Workspace } from '../workspace.js';
import { innerPath, onPath, requireWritable } from './common.js';

function isoOf(v: ContentVersion): string {
  return new Date(Number(BigInt(v.timeNs) / 1_000_000n)).toISOString();
}

/** `--at`: a version id ("123.abcd"), a number from `arbor log` (1 = oldest), or a time (the version current then). */
export function pickVersion(versions: readonly ContentVersion[], at: string): ContentVersion {
  const byId = versions.find((v) => v.id === at);
  if (byId) return byId;
  if (/^#?\d+$/.test(at) && !/^\d{4}-/.test(at)) {
    const n = Number(at.replace('#', ''));
    const v = versions[n - 1];
    if (v === undefined)
      throw new InvalidInputError(`no version number ${n} (this file has ${versions.length})`);
    return v;
  }
  const t = Date.parse(at);
  if (Number.isNaN(t))
    throw new InvalidInputError(`--at takes a version id, a version number or a time, not '${at}'`);
  const limit = BigInt(t) * 1_000_000n;
  let best: ContentVersion | undefined;
  for (const v of versions)
    if (BigInt(v.timeNs) <= limit && (best === undefined || BigInt(v.timeNs) >= BigInt(best.timeNs)))
      best = v;
  if (best === undefined) throw new InvalidInputError(`the file has no version as old as ${at}`);
  return best;
}

/** `--at` names a version (id or number from `arbor log`) rather than a time. */
function isVersionRef(versions: readonly ContentVersion[], at: string): boolean {
  return versions.some((v) => v.id === at) || (/^#?\d+$/.test(at) && !/^\d{4}-/.test(at));
}

function timeNsOf(at: string): bigint {
  const t = Date.parse(at);
  if (Number.isNaN(t))
    throw new InvalidInputError(`--at takes a version id, a version number or a time, not '${at}'`);
  return BigInt(t) * 1_000_000n;
}

defineCommand('log', async (ws, args, io) => {
  const vs = await new Arbor(ws.tree).versions(innerPath(String(args.path)));
  if (args.json === true) {
    io.out(
      JSON.stringify(
        vs.map((v, i) => ({
          n: i + 1,
          id: v.id,
          time: isoOf(v),
          replica: v.replica,
          size: v.size,
          current: i === vs.length - 1,
        })),
      ),
    );
    return;
  }
  vs.forEach((v, i) => {
    io.out(
      `${String(i + 1).padStart(4)}  ${isoOf(v)}  ${v.replica}  ${formatBytes(v.size).padStart(10)}  ${v.id}${i === vs.length - 1 ? '  (current)' : ''}`,
    );
  });
});

/** A version of a file that exists now, in place or copied to `to` (the pre-existing behaviour of `--at <version>`). */
async function restoreVersionRef(
  ws: Workspace,
  path: string,
  at: string,
  to: string | undefined,
): Promise<void> {
  const a = new Arbor(ws.tree);
  const v = pickVersion(await a.versions(path), at);
  if (to === undefined) {
    await a.restoreVersion(path, v.id);
    return;
  }
  const h = await a.open(to, 'w');
  try {
    let pos = 0;
    for (const c of v.chunks) {
      if (isHole(c)) {
        // A hole: nothing stored; left unwritten (the next write or the truncate below extends the file).
        pos += c.size;
        continue;
      }
      const bytes = await ws.store.get(c);
      await h.write(bytes, pos);
      pos += bytes.length;
    }
    if (v.size > 0) await h.truncate(v.size);
  } finally {
    await h.close();
  }
}

defineCommand('restore', async (ws, args, io) => {
  requireWritable(ws);
  const path = innerPath(String(args.path));
  const at = String(args.at);
  const to = args.to === undefined ? undefined : innerPath(String(args.to));
  const a = new Arbor(ws.tree);
  const existing = (await a.exists(path)) && !(await a.stat(path)).isDirectory();
  if (isVersionRef(existing ? await a.versions(path) : [], at)) {
    if (!existing) throw fsError('ENOENT', `${path} does not exist now: give --at a time to bring it back`);
    await restoreVersionRef(ws, path, at, to);
    return;
  }
  const r = restorePathAt(ws.tree, path, timeNsOf(at), to);
  io.note(
    `restored ${path} as of ${new Date(Number(timeNsOf(at) / 1_000_000n)).toISOString()}` +
      (to !== undefined ? ` to ${to}` : '') +
      `: ${r.created} entr${r.created === 1 ? 'y' : 'ies'} brought back, ${r.reverted} file(s) reverted` +
      (r.skipped.length > 0 ? `; left alone (something else has the name now): ${r.skipped.join(', ')}` : ''),
  );
});

export function registerHistory(program: Command): void {
  program
    .command('log')
    .description('list the versions of a file (number, time, replica, size, id); the last is current')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file inside the arbor')
    .option('--json', 'machine-readable output')
    .action((dir: string, path: string, o: { json?: boolean }) =>
      onPath(innerPath(path), () => runOnWorkspace(dir, 'log', { path, json: o.json === true })),
    );

  program
    .command('restore')
    .description(
      'bring back a file or directory as it was at a time (also one removed since), or make an old version of a file current again; --to puts it elsewhere',
    )
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'path inside the arbor (need not exist any more)')
    .requiredOption(
      '--at <time|version>',
      'a time (ISO 8601, e.g. 2026-11-21T09:00:00Z): what was at <path> then, directories recursively; or a version id or number from `arbor log` of an existing file',
    )
    .option('--to <path>', 'restore to this path inside the arbor instead of <path>')
    .action((dir: string, path: string, o: { at: string; to?: string }) =>
      runOnWorkspace(dir, 'restore', { path, at: o.at, to: o.to }),
    );
}
