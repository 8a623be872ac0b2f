// Restore a path as it was at a past time, whether or not it still exists: the nodes that were there then (found in
// the past tree; removed ones live on in trash until GC) are recreated with the content version current at that time,
// a directory recursively. Files come back as new inodes sharing the old version's chunks (nothing is re-uploaded);
// a file that still exists under that name is restored in place (a new version, history kept).
import { fsError } from '../errors.js';
import type { FileTree } from './filetree.js';
import type { PastEntry, PastTree } from './past.js';
import type { NodeId } from '../crdt/index.js';
import { ROOT, type ContentVersion } from './types.js';

export interface RestoreReport {
  /** Entries made or brought back (files, directories, symlinks, special files). */
  created: number;
  /** Files that still existed and got their old content back as a new version. */
  reverted: number;
  /** Paths left alone because something else has that name now. */
  skipped: string[];
}

/** The version current at `timeNs`: the newest made at or before it (undefined: the file was empty then). */
export function versionAt(versions: readonly ContentVersion[], timeNs: bigint): ContentVersion | undefined {
  let best: ContentVersion | undefined;
  for (const v of versions)
    if (BigInt(v.timeNs) <= timeNs && (best === undefined || BigInt(v.timeNs) >= BigInt(best.timeNs)))
      best = v;
  return best;
}

function parts(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function iso(timeNs: bigint): string {
  return new Date(Number(timeNs / 1_000_000n)).toISOString();
}

class Restorer {
  readonly report: RestoreReport = { created: 0, reverted: 0, skipped: [] };
  constructor(
    private readonly tree: FileTree,
    private readonly past: PastTree,
    private readonly timeNs: bigint,
  ) {}

  private copyXattrs(from: NodeId, to: NodeId): void {
    for (const x of this.tree.listxattr(from)) this.tree.setxattr(to, x, this.tree.getxattr(from, x));
  }

  /** Recreate a past entry under `dir` as `name` (which is free). */
  create(e: PastEntry, dir: NodeId, name: string): void {
    const t = this.tree;
    if (e.kind === 'dir') {
      const a = t.getattr(e.node);
      const made = t.mkdir(dir, name, a.mode & 0o7777, a.uid, a.gid);
      this.copyXattrs(e.node, made.nodeId);
      this.report.created++;
      for (const c of this.past.children(e.node)) this.create(c, made.nodeId, c.name);
      return;
    }
    const inode = e.inode!;
    const a = t.getattr(inode);
    let made;
    if (a.kind === 'symlink') made = t.symlink(dir, name, t.readlink(inode), a.uid, a.gid);
    else if (a.kind === 'file')
      made = t.createFromVersion(dir, name, a.mode, a.uid, a.gid, versionAt(t.versions(inode), this.timeNs));
    else made = t.mknod(dir, name, a.mode, a.rdev, a.uid, a.gid);
    if (a.kind !== 'symlink') this.copyXattrs(inode, made.nodeId);
    this.report.created++;
  }

  /** Whether the file or symlink `cur` has now what `inode` had then (same kind and target or chunk list). */
  private sameAsThen(cur: NodeId, inode: NodeId): boolean {
    const t = this.tree;
    const [now, then] = [t.getattr(cur), t.getattr(inode)];
    if (now.kind !== then.kind) return false;
    if (now.kind === 'symlink') return t.readlink(cur) === t.readlink(inode);
    if (now.kind !== 'file') return false;
    const key = (v: ContentVersion | undefined): string =>
      v === undefined ? '0' : `${v.size}:${v.chunks.map((c) => `${c.id}/${c.size}`).join(',')}`;
    const mine = t.versions(cur);
    return key(mine[mine.length - 1]) === key(versionAt(t.versions(inode), this.timeNs));
  }

  /** Bring `e` back over what is at `dir/name` now: merge into a directory, revert the same file, else skip. */
  merge(e: PastEntry, dir: NodeId, name: string, shown: string): void {
    const t = this.tree;
    const cur = t.tryLookupId(dir, name);
    if (cur === undefined) {
      this.create(e, dir, name);
      return;
    }
    if (e.kind === 'dir' && t.isDirectory(cur)) {
      for (const c of this.past.children(e.node)) this.merge(c, cur, c.name, `${shown}/${c.name}`);
      return;
    }
    if (e.kind === 'link' && cur === e.inode && t.getattr(cur).kind === 'file') {
      const all = t.versions(cur);
      const v = versionAt(all, this.timeNs);
      if (v !== undefined && v.id !== all[all.length - 1]?.id) {
        t.restoreVersion(cur, v.id);
        this.report.reverted++;
      }
      return;
    }
    if (e.kind === 'link' && cur === e.inode) return; // the same symlink or special file: nothing to bring back
    if (e.kind === 'link' && this.sameAsThen(cur, e.inode!)) return; // restored before: already as it was
    this.report.skipped.push(shown);
  }
}

/**
 * Restore what was at `path` at `timeNs` to `to` (default: the same path). The destination's parent directory must
 * exist now. A destination that exists now is merged into (directories), reverted (the same file) or refused
 * (EEXIST: something else has that name now; pick another with `to`). ENOENT when nothing was there at that time.
 */
export function restorePathAt(tree: FileTree, path: string, timeNs: bigint, to?: string): RestoreReport {
  const past = tree.pastAt(timeNs);
  const e = past?.lookup(path);
  if (past === undefined || e === undefined)
    throw fsError('ENOENT', `nothing was at ${path} at ${iso(timeNs)}`);
  const r = new Restorer(tree, past, timeNs);
  const dest = parts(to ?? path);
  if (dest.length === 0) {
    // The root: merge everything that was there into today's root.
    for (const c of past.children(ROOT)) r.merge(c, ROOT, c.name, `/${c.name}`);
    return r.report;
  }
  let dir: NodeId = ROOT;
  for (const p of dest.slice(0, -1)) {
    const next = tree.tryLookupId(dir, p);
    if (next === undefined || !tree.isDirectory(next))
      throw fsError(
        'ENOENT',
        `/${dest.slice(0, -1).join('/')} does not exist now: restore it first, or use --to`,
      );
    dir = next;
  }
  const name = dest[dest.length - 1]!;
  const shown = `/${dest.join('/')}`;
  const cur = tree.tryLookupId(dir, name);
  if (cur !== undefined) {
    const same = e.kind === 'dir' ? tree.isDirectory(cur) : cur === e.inode;
    if (!same)
      throw fsError('EEXIST', `${shown} exists now and is something else: restore to another path with --to`);
  }
  r.merge(e, dir, name, shown);
  return r.report;
}
