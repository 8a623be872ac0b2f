// `arbor log <dir> <path>` (versions of a file) and `arbor restore <dir> <path> --at <time|version> [--to <path>]`.
import type { Command } from 'commander';
import { isHole } from '../../chunks/types.js';
import { InvalidInputError } from '../../errors.js';
import { Arbor, type ContentVersion } from '../../index.js';
import { formatBytes } from '../size.js';
import { out, requireWritable, withWorkspace } from './common.js';

function inner(path: string): string {
  return path.startsWith('/') ? path : '/' + path;
}

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

export function registerHistory(program: Command): void {
  program
    .command('log')
    .description('list the versions of a file (number, time, replica, size, id); the last is current')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file inside the arbor')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, path: string, o: { json?: boolean }) => {
      await withWorkspace(dir, async (ws) => {
        const vs = await new Arbor(ws.tree).versions(inner(path));
        if (o.json) {
          out(
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
          out(
            `${String(i + 1).padStart(4)}  ${isoOf(v)}  ${v.replica}  ${formatBytes(v.size).padStart(10)}  ${v.id}${i === vs.length - 1 ? '  (current)' : ''}`,
          );
        });
      });
    });

  program
    .command('restore')
    .description('make an old version of a file current again, or copy it to another path with --to')
    .argument('<dir>', 'arbor directory')
    .argument('<path>', 'file inside the arbor')
    .requiredOption('--at <time|version>', 'a version id or number from `arbor log`, or a time (ISO 8601)')
    .option('--to <path>', 'write that version to this path inside the arbor instead of restoring in place')
    .action(async (dir: string, path: string, o: { at: string; to?: string }) => {
      await withWorkspace(dir, async (ws) => {
        requireWritable(ws);
        const a = new Arbor(ws.tree);
        const v = pickVersion(await a.versions(inner(path)), o.at);
        if (o.to === undefined) {
          await a.restoreVersion(inner(path), v.id);
          return;
        }
        const h = await a.open(inner(o.to), 'w');
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
      });
    });
}
