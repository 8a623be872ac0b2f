// FileTree: POSIX filesystem semantics (names, links, attributes, content versions, conflicts) on the tree CRDT,
// written through to SQLite. Node-id based (what the vfs layer needs). Knows nothing of FUSE or chunk bytes' format.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { isHole, type ChunkRef, type ChunkStore } from '../chunks/types.js';
import { CrdtTree, LamportClock, compareTimestamps } from '../crdt/index.js';
import type { Move, NodeChange, NodeId, NodePlacement, ReplicaId, Timestamp } from '../crdt/index.js';
import { InvalidInputError, fsError } from '../errors.js';
import { StateDb } from '../state/db.js';
import { decodeOps, encodeOps, normalizeOp } from './codec.js';
import { PastTree, cutoffAt } from './past.js';
import { checkMeta, readSnapshot, writeSnapshot, type TreeSnapshot } from './snapshot.js';
import { FileContent, Rechunker } from './content.js';
import {
  NAME_MAX,
  checkName,
  compactTime,
  conflictName,
  duplicateName,
  isWellFormed,
  nameCookie,
  parseConflictName,
  parseDuplicateName,
} from './names.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT, TRASH, XATTR_CREATE, XATTR_REPLACE } from './types.js';
import type {
  Attr,
  ContentVersion,
  DirEntry,
  FileKind,
  RegisterValue,
  SetAttr,
  StatFs,
  TreeChange,
  TreeMeta,
  TreeOp,
  TreeOpBatch,
} from './types.js';

const S_IFMT = 0o170000;
const TYPE_BITS: Record<FileKind, number> = {
  dir: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  chr: 0o020000,
  blk: 0o060000,
  fifo: 0o010000,
  sock: 0o140000,
};
export function kindOfMode(mode: number): FileKind | undefined {
  const t = mode & S_IFMT;
  for (const [k, v] of Object.entries(TYPE_BITS)) if (v === t) return k as FileKind;
  return undefined;
}

/** One register: [counter, replica, value] — last writer (largest timestamp) wins. */
type Reg = [number, ReplicaId, RegisterValue];
/**
 * A node's registers. `content` holds the current version. `~h` (local, derived) lists the version heads when there
 * is more than one — the non-current heads are the conflict copies.
 */
/** The content register: the current version without its chunk list, plus its hole bytes (local, derived). */
type ContentReg = ContentVersion & { readonly holes?: number };

/** Bytes of `chunks` that are holes (not stored). */
function holeBytes(chunks: readonly ChunkRef[]): number {
  let n = 0;
  for (const c of chunks) if (isHole(c)) n += c.size;
  return n;
}

/** st_blocks of a file of `size` bytes of which `holes` are holes (512-byte units of stored data). */
function blocksOf(size: number, holes: number): number {
  return Math.ceil(Math.max(0, size - holes) / 512);
}

interface Regs {
  [field: string]: Reg | [number, ReplicaId, ContentVersion] | ContentVersion[] | undefined;
  content?: [number, ReplicaId, ContentReg];
  '~h'?: ContentVersion[];
}

const XATTR_NAME_MAX = 255;
/** The fixed id of `/lost+found`, where entries stranded in concurrently removed directories are moved. */
export const LOST_FOUND: NodeId = 'lost+found';
const XATTR_SIZE_MAX = 65536;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;
/** The register of the file-capabilities xattr (dropped with setuid, see dropPrivileges). */
const CAPABILITY_XATTR = 'x:security.capability';
const SYMLINK_MAX = 4095;
const CONFLICT_SEP = '#';
/** Register field prefix marking a version whose chunks GC deleted by retention (replicated like `dismiss:`). */
const PRUNED = 'pruned:';

export interface FileTreeOptions {
  /** This replica's id; default: the one saved in the state, else a fresh random one. */
  replica?: ReplicaId;
  store: ChunkStore;
  /** Path of the SQLite file (created if missing). */
  dbPath: string;
  /** fsync each transaction (synchronous=FULL). */
  durable?: boolean;
  /**
   * Group commit (see StateDb): operations apply at once but are committed to SQLite together, at most this many ms
   * later, or at fsync/fsyncdir (`flushState`), a push (`localOpsSince`) or close. A process crash then loses the
   * last few ms of unsynced operations (whole operations, in order). Off by default; ignored with `durable`.
   */
  groupCommitMs?: number;
  /** Wall clock in ns (tests pin it for deterministic conflict names). */
  now?: () => bigint;
  /** Directory whose filesystem statfs reports on (default: the db file's directory). */
  statfsPath?: string;
  /** Dirty bytes per open file before spilling to chunks. */
  dirtyLimit?: number;
  /**
   * Every replica of this filesystem (sync knows them from the remote). The CRDT log is truncated only below the
   * causal-stability threshold over these. Default: this replica plus every peer a batch has come from.
   */
  replicas?: () => Iterable<ReplicaId>;
}

interface OpenFile {
  readonly inode: NodeId;
  readonly content: FileContent;
  /** The version this content derives from (the base of the next recorded version). */
  base: string | null;
  refs: number;
  /** mtime of the last write not yet recorded. */
  pendingMtime: bigint | undefined;
  readonly readOnly: boolean;
}

interface Handle {
  readonly file: OpenFile;
  readonly write: boolean;
  readonly append: boolean;
}

/** What FileTree.truncateBelow did. */
export interface TruncateReport {
  /** CRDT log rows before and after. */
  logBefore: number;
  logAfter: number;
  /** Trash entries (links, empty directories) removed for good. */
  purgedNodes: number;
  /** Inodes removed with their last link (registers and versions: their chunks become unreferenced). */
  purgedInodes: number;
  /** Inodes whose last link went but which are still open here (or have unstable registers): retried next time. */
  deferredOpen: number;
}

export interface OpenFlags {
  read?: boolean;
  write?: boolean;
  append?: boolean;
  truncate?: boolean;
}

function tsKey(ts: Timestamp): string {
  return `${ts.counter}.${ts.replica}`;
}
function newer(ts: Timestamp, reg: readonly [number, string, unknown] | undefined): boolean {
  if (reg === undefined) return true;
  return compareTimestamps(ts, { counter: reg[0], replica: reg[1] }) > 0;
}

/** The filesystem on one replica. Every mutating method is one SQLite transaction (content writes: at flush). */
export class FileTree {
  readonly replica: ReplicaId;
  readonly store: ChunkStore;
  private readonly db: StateDb;
  private crdt: CrdtTree<TreeMeta>;
  private readonly clock: LamportClock;
  private seq: number;
  private readonly now: () => bigint;
  private readonly statfsPath: string;
  private readonly dirtyLimit: number | undefined;
  private readonly replicasOf: (() => Iterable<ReplicaId>) | undefined;
  /** dir → name → node id(s) placed there with that name (several = concurrent duplicates). */
  private readonly names = new Map<NodeId, Map<string, NodeId | NodeId[]>>();
  /** inode → its link node(s), visible or not; built on first use. */
  private links: Map<NodeId, NodeId | NodeId[]> | undefined;
  /** Registers cache (null: the node has none). */
  private readonly regs = new Map<NodeId, Regs | null>();
  /** Ids made by freshId for the operation being built (cleared by commit): known to be new. */
  private readonly minted = new Set<NodeId>();
  private readonly conflicted = new Set<NodeId>();
  /** dir → number of child directories (for nlink), kept with `names`. */
  private readonly subdirs = new Map<NodeId, number>();
  private readonly dirCache = new Map<NodeId, DirEntry[]>();
  private readonly open = new Map<NodeId, OpenFile>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private commitsSinceTruncate = 0;
  /**
   * The local batches after `recentFrom - 1`, in seq order, as `decodeOps` would read them back: a push reads these
   * instead of decoding every row it sends again. Bounded (RECENT_MAX); beyond it, and for batches from before this
   * open, localOpsSince reads SQLite.
   */
  private recent: TreeOpBatch[] = [];
  private recentFrom = 0;
  private readonly scratchChanged = new Set<NodeId>();
  private readonly scratchDirs = new Map<NodeId, Set<string>>();
  private readonly events = new EventEmitter();
  private closed = false;

  constructor(opts: FileTreeOptions) {
    this.store = opts.store;
    this.now = opts.now ?? (() => process.hrtime.bigint() - hrBase + wallBase);
    this.statfsPath = opts.statfsPath ?? dirname(opts.dbPath);
    this.dirtyLimit = opts.dirtyLimit;
    this.replicasOf = opts.replicas;
    this.db = new StateDb(opts.dbPath, {
      durable: opts.durable ?? false,
      ...(opts.groupCommitMs !== undefined ? { groupCommitMs: opts.groupCommitMs } : {}),
      regsOf: (id) => {
        const r = this.regs.get(id);
        return r == null ? null : encodeRegs(r);
      },
    });
    const saved = this.db.kvGet('replica');
    if (saved !== undefined && opts.replica !== undefined && saved !== opts.replica) {
      this.db.close();
      throw fsError('EINVAL', `state belongs to replica ${saved}, not ${opts.replica}`);
    }
    this.replica = saved ?? opts.replica ?? randomBytes(6).toString('hex');
    if (saved === undefined) this.db.kvSet('replica', this.replica);
    // The clock and local seq are not written per commit: they are recovered from the last local batch, the peers'
    // counters and the value saved at close/applyRemote, whichever is largest.
    let [counter, seq] = (this.db.kvGet('clock') ?? '0 0').split(' ').map(Number) as [number, number];
    const last = this.db.lastLocalOps();
    if (last !== undefined) {
      seq = Math.max(seq, last.seq);
      for (const op of decodeOps(last.ops, this.replica)) counter = Math.max(counter, op.ts.counter);
    }
    for (const p of this.db.peers()) counter = Math.max(counter, p.counter);
    this.clock = new LamportClock(this.replica, counter);
    this.seq = seq;
    this.recentFrom = seq + 1;
    this.crdt = this.load();
    if (this.getRegs(ROOT) === undefined) {
      // A fresh tree: the root directory's attributes (owner root, 0755), written as a local op like any other.
      const ts = this.clock.tick();
      const t = this.now().toString();
      this.commit([
        {
          type: 'set',
          ts,
          node: ROOT,
          fields: { mode: 0o40755, uid: 0, gid: 0, atime: t, mtime: t, ctime: t },
        },
      ]);
    }
  }

  // ---------------------------------------------------------------- loading

  private load(): CrdtTree<TreeMeta> {
    const placements: Array<[NodeId, NodePlacement<TreeMeta>]> = [];
    for (const [id, parent, metaJson] of this.db.allPlacements()) {
      const placement = { parent, meta: JSON.parse(metaJson) as TreeMeta };
      placements.push([id, placement]);
    }
    const log = this.db.logAll().map((r) => {
      const op = JSON.parse(r.op) as { parent: NodeId; meta: TreeMeta; child: NodeId };
      return {
        op: {
          ts: { counter: r.counter, replica: r.replica },
          parent: op.parent,
          meta: op.meta,
          child: op.child,
        },
        old: r.old === null ? null : (JSON.parse(r.old) as NodePlacement<TreeMeta>),
      };
    });
    const tb = this.db.kvGet('truncated');
    const truncated = tb ? (JSON.parse(tb) as Timestamp) : undefined;
    const seen = this.db.peers().map((p) => ({ counter: p.counter, replica: p.replica }));
    // Log entries carry the same meta objects as the placements? Not needed: CrdtTree compares meta by identity only
    // to detect no-op redo, and a false "changed" there just rewrites a log row.
    const tree = CrdtTree.restore(placements, log, truncated, seen);
    for (const id of JSON.parse(this.db.kvGet('conflicted') ?? '[]') as NodeId[]) this.conflicted.add(id);
    return tree;
  }

  // ---------------------------------------------------------------- indexes

  /**
   * Keep the lazily built indexes in step with a placement change. A directory's name index exists only once the
   * directory was looked into (reopen builds none), the inode → links index only once an nlink was asked for.
   */
  private index(
    node: NodeId,
    before: NodePlacement<TreeMeta> | null,
    after: NodePlacement<TreeMeta> | null,
  ): void {
    if (before !== null && before.meta.k !== 'i') {
      const m = this.names.get(before.parent);
      if (m !== undefined) {
        removeFrom(m, before.meta.n, node);
        if (before.meta.k === 'd')
          this.subdirs.set(before.parent, (this.subdirs.get(before.parent) ?? 1) - 1);
      }
      this.dirCache.delete(before.parent);
    }
    if (after !== null && after.meta.k !== 'i') {
      const m = this.names.get(after.parent);
      if (m !== undefined) {
        addTo(m, after.meta.n, node);
        if (after.meta.k === 'd') this.subdirs.set(after.parent, (this.subdirs.get(after.parent) ?? 0) + 1);
      }
      this.dirCache.delete(after.parent);
    }
    if (this.links !== undefined) {
      if (before?.meta.k === 'l' && before.meta.i !== undefined) removeFrom(this.links, before.meta.i, node);
      if (after?.meta.k === 'l' && after.meta.i !== undefined) addTo(this.links, after.meta.i, node);
    }
  }

  /** The name index of a directory, built from the CRDT's children on first use. */
  private dirNames(dir: NodeId): Map<string, NodeId | NodeId[]> {
    let m = this.names.get(dir);
    if (m === undefined) {
      m = new Map();
      let sub = 0;
      for (const child of this.crdt.children(dir)) {
        const p = this.crdt.get(child)!;
        if (p.meta.k === 'i') continue;
        addTo(m, p.meta.n, child);
        if (p.meta.k === 'd') sub++;
      }
      this.names.set(dir, m);
      this.subdirs.set(dir, sub);
    }
    return m;
  }

  private linkIndex(): Map<NodeId, NodeId | NodeId[]> {
    if (this.links === undefined) {
      const links = new Map<NodeId, NodeId | NodeId[]>();
      for (const [id, p] of this.crdt.nodes())
        if (p.meta.k === 'l' && p.meta.i !== undefined) addTo(links, p.meta.i, id);
      this.links = links;
    }
    return this.links;
  }

  /** A node's registers, read from SQLite on first use (reopen loads placements only). */
  private getRegs(id: NodeId): Regs | undefined {
    let r = this.regs.get(id);
    if (r === undefined) {
      const text = this.db.getRegs(id);
      r = text === null ? null : decodeRegs(text);
      this.regs.set(id, r);
    }
    return r ?? undefined;
  }

  private reg(id: NodeId, field: string): RegisterValue | undefined {
    const r = this.getRegs(id)?.[field] as Reg | undefined;
    return r?.[2];
  }

  // ---------------------------------------------------------------- applying ops (local and remote)

  /** Apply ops (any order, possibly known already) and write everything through; returns what changed. */
  private applyOps(ops: readonly TreeOp[], changed: Set<NodeId>, dirs: Map<NodeId, Set<string>>): void {
    const moves: Move<TreeMeta>[] = [];
    for (const op of ops) {
      this.clock.observe(op.ts);
      if (op.type === 'move') moves.push({ ts: op.ts, parent: op.parent, meta: op.meta, child: op.child });
    }
    if (moves.length > 0) {
      const cs = moves.length === 1 ? this.crdt.apply(moves[0]!) : this.crdt.applyBatch(moves);
      for (const ch of cs.changes) this.placed(ch, changed, dirs);
      for (const e of cs.logWrites) {
        const { ts, parent, meta, child } = e.op;
        this.db.logPut(
          ts.counter,
          ts.replica,
          JSON.stringify({ parent, meta, child }),
          e.old && JSON.stringify(e.old),
        );
      }
    }
    const dirty = new Set<NodeId>();
    for (const op of ops) {
      // A purged node is gone for good (see truncateBelow): a late op must not resurrect an orphan register row.
      if (
        op.type !== 'move' &&
        !this.minted.has(op.node) &&
        this.getRegs(op.node) === undefined &&
        this.db.isPurged(op.node)
      )
        continue;
      if (op.type === 'set') {
        let regs = this.getRegs(op.node);
        for (const [field, value] of Object.entries(op.fields)) {
          const cur = regs?.[field] as Reg | undefined;
          if (!newer(op.ts, cur)) continue;
          if (regs === undefined) this.regs.set(op.node, (regs = {}));
          regs[field] = [op.ts.counter, op.ts.replica, value];
          dirty.add(op.node);
          if (field.startsWith('dismiss:')) this.recomputeHeads(op.node, undefined);
        }
      } else if (op.type === 'version') {
        if (this.addVersion(op.node, op.ts, op.version)) {
          dirty.add(op.node);
          const f = this.open.get(op.node);
          if (f !== undefined && !f.content.changed) {
            const cur = this.currentVersion(op.node);
            f.content.load(cur?.chunks ?? [], cur?.size ?? 0);
            f.base = cur?.id ?? null;
          }
        }
      }
    }
    for (const id of dirty) {
      this.db.setRegsLater(id);
      changed.add(id);
    }
  }

  private placed(ch: NodeChange<TreeMeta>, changed: Set<NodeId>, dirs: Map<NodeId, Set<string>>): void {
    const { node, before, after } = ch;
    this.index(node, before, after);
    if (after !== null) this.db.placeNode(node, after.parent, JSON.stringify(after.meta));
    changed.add(node);
    for (const p of [before, after]) {
      if (p === null) continue;
      if (p.meta.k === 'i') continue;
      let s = dirs.get(p.parent);
      if (s === undefined) dirs.set(p.parent, (s = new Set()));
      s.add(p.meta.n);
      if (p.meta.k === 'l' && p.meta.i !== undefined) changed.add(p.meta.i);
    }
  }

  /** Record a version in history; update the content register and conflict heads. Returns false if known. */
  private addVersion(node: NodeId, ts: Timestamp, v: ContentVersion): boolean {
    const regs = this.getRegs(node);
    const cur = regs?.content;
    if (cur !== undefined && cur[2].id === v.id) return false;
    this.db.versionPut(node, v.id, ts.counter, JSON.stringify(v));
    let r = regs;
    if (r === undefined) this.regs.set(node, (r = {}));
    const fast = cur === undefined ? v.base === null : v.base === cur[2].id && newer(ts, cur);
    if (newer(ts, cur)) {
      const holes = holeBytes(v.chunks) + Math.max(0, v.size - v.chunks.reduce((n, c) => n + c.size, 0));
      r.content = [ts.counter, ts.replica, holes > 0 ? { ...v, chunks: [], holes } : { ...v, chunks: [] }];
    }
    if (!fast || r['~h'] !== undefined) this.recomputeHeads(node, r);
    return true;
  }

  /** Heads = versions no other version derives from; every head but the current one is a conflict copy. */
  private recomputeHeads(node: NodeId, r: Regs | undefined): void {
    r ??= this.getRegs(node);
    if (r === undefined) return;
    const all = this.db.versionsOf(node).map((d) => JSON.parse(d) as ContentVersion);
    const bases = new Set(all.map((v) => v.base));
    const cur = r.content?.[2].id;
    const heads = all.filter((v) => !bases.has(v.id));
    const conflicts = heads.filter((v) => v.id !== cur && this.reg(node, `dismiss:${v.id}`) == null);
    const had = this.conflicted.has(node);
    if (conflicts.length > 0) {
      r['~h'] = conflicts;
      this.conflicted.add(node);
    } else {
      delete r['~h'];
      this.conflicted.delete(node);
    }
    if (had !== conflicts.length > 0) this.db.kvSet('conflicted', JSON.stringify([...this.conflicted]));
    for (const l of this.linksOf(node)) {
      const p = this.crdt.get(l);
      if (p !== undefined) this.dirCache.delete(p.parent);
    }
  }

  /** Commit local ops as one transaction and one local batch. */
  private commit(ops: TreeOp[]): void {
    this.commitOps(ops, this.events.listenerCount('change') > 0);
  }

  /** `commit` that also returns what changed. */
  private commitChange(ops: TreeOp[]): TreeChange {
    return this.commitOps(ops, true)!;
  }

  private commitOps(ops: TreeOp[], wanted: boolean): TreeChange | undefined {
    if (this.closed) throw fsError('EIO', 'arbor is closed');
    // Nobody asks what a local operation changed unless a 'change' listener runs (a command served inside a
    // mount): the mount's own operations reuse one scratch set and map instead of building a TreeChange each.
    const changed = wanted ? new Set<NodeId>() : this.scratchChanged;
    const dirs = wanted ? new Map<NodeId, Set<string>>() : this.scratchDirs;
    try {
      this.db.tx(() => {
        this.applyOps(ops, changed, dirs);
        this.seq += 1;
        this.db.localOpPut(this.seq, encodeOps(ops, this.replica));
        if (++this.commitsSinceTruncate >= 1024) this.truncateStable();
      });
      this.remember(ops);
    } finally {
      this.minted.clear();
      if (!wanted) {
        changed.clear();
        dirs.clear();
      }
    }
    if (!wanted) {
      this.events.emit('commit', true);
      return undefined;
    }
    return this.report(changed, dirs, true);
  }

  private report(changed: Set<NodeId>, dirs: Map<NodeId, Set<string>>, local: boolean): TreeChange {
    const change: TreeChange = {
      nodes: [...changed],
      dirs: [...dirs].map(([dir, names]) => ({ dir, names: [...names] })),
    };
    if (this.events.listenerCount('change') > 0) this.events.emit('change', change, local);
    this.events.emit('commit', local);
    return change;
  }

  /** Truncate the CRDT log below the causal-stability threshold over this replica and every known peer. */
  truncateStable(): void {
    this.commitsSinceTruncate = 0;
    const replicas = this.replicasOf?.() ?? [this.replica, ...this.db.peers().map((p) => p.replica)];
    const ts = this.crdt.stableThreshold(replicas);
    if (ts === undefined) return;
    this.db.tx(() => {
      if (this.crdt.truncateLogBelow(ts) > 0 || this.db.kvGet('truncated') === undefined) {
        this.db.logDeleteBelow(ts.counter, ts.replica);
        this.db.kvSet('truncated', JSON.stringify(ts));
      }
    });
  }

  // ---------------------------------------------------------------- replication API

  /** Keep a committed local batch for the next push (see `recent`). */
  private remember(ops: readonly TreeOp[]): void {
    if (this.recent.length >= RECENT_MAX) {
      this.recent = [];
      this.recentFrom = this.seq + 1;
      return;
    }
    this.recent.push({ version: 1, replica: this.replica, seq: this.seq, ops: ops.map(normalizeOp) });
  }

  /** Local batches with seq > `seq`, oldest first (for sync to push). */
  localOpsSince(seq: number): TreeOpBatch[] {
    // Committed first, whichever way they are read: an op must never reach the remote before this replica's disk.
    this.db.flush();
    if (seq + 1 >= this.recentFrom) return this.recent.slice(firstAbove(this.recent, seq, (b) => b.seq));
    return this.db
      .localOpsSince(seq)
      .map((r) => ({ version: 1, replica: this.replica, seq: r.seq, ops: decodeOps(r.ops, this.replica) }));
  }

  /**
   * Drop local batches with seq ≤ `throughSeq` (sync calls this once they are safely on the remote). The clock is
   * saved first, since it is otherwise recovered from the last local batch.
   */
  pruneLocalOps(throughSeq: number): number {
    let drop = 0;
    while (drop < this.recent.length && this.recent[drop]!.seq <= throughSeq) drop++;
    if (drop > 0) this.recent = this.recent.slice(drop);
    return this.db.tx(() => {
      this.db.kvSet('clock', `${this.clock.counter} ${this.seq}`);
      return this.db.pruneLocalOps(Math.min(throughSeq, this.seq));
    });
  }

  /** The last local batch seq. */
  get localSeq(): number {
    return this.seq;
  }

  /** Apply another replica's batch (idempotent). One transaction. Returns what changed for cache invalidation. */
  applyRemote(batch: TreeOpBatch): TreeChange {
    if (batch.replica === this.replica) return { nodes: [], dirs: [] };
    const changed = new Set<NodeId>();
    const dirs = new Map<NodeId, Set<string>>();
    this.db.tx(() => {
      this.applyOps(batch.ops, changed, dirs);
      let max = 0;
      for (const op of batch.ops) if (op.ts.replica === batch.replica) max = Math.max(max, op.ts.counter);
      this.db.peerPut(batch.replica, batch.seq, max);
      this.db.kvSet('clock', `${this.clock.counter} ${this.seq}`);
    });
    const change = this.report(changed, dirs, false);
    const rescued = this.rescueStranded(changed);
    if (rescued === undefined) return change;
    return {
      nodes: [...new Set([...change.nodes, ...rescued.nodes])],
      dirs: [...change.dirs, ...rescued.dirs],
    };
  }

  /**
   * A directory removed on one replica while another created something in it leaves live entries under a trashed
   * directory. Every replica that sees this moves those entries to `/lost+found` (a fixed node id, so replicas that
   * repair concurrently move the same nodes to the same place and converge). Returns the repair's change, if any.
   */
  private rescueStranded(changed: Set<NodeId>): TreeChange | undefined {
    const trashedDirs = new Set<NodeId>();
    for (const id of changed) {
      let cur: NodeId | undefined = id;
      for (let depth = 0; cur !== undefined && depth < 100000; depth++) {
        const p = this.crdt.get(cur);
        if (p === undefined) break;
        if (p.parent === TRASH) {
          if (p.meta.k === 'd') trashedDirs.add(cur);
          break;
        }
        cur = p.parent;
      }
    }
    const stranded: NodeId[] = [];
    for (const d of trashedDirs) for (const c of this.crdt.children(d)) stranded.push(c);
    if (stranded.length === 0) return undefined;
    stranded.sort();
    const ops: TreeOp[] = [];
    if (!this.attached(LOST_FOUND)) {
      ops.push(this.move(ROOT, LOST_FOUND, 'lost+found', 'd'));
      if (this.getRegs(LOST_FOUND) === undefined) {
        const t = this.now().toString();
        ops.push(this.set(LOST_FOUND, { mode: 0o700, uid: 0, gid: 0, atime: t, mtime: t, ctime: t }));
      }
    }
    for (const c of stranded) {
      const p = this.crdt.get(c)!;
      ops.push(this.move(LOST_FOUND, c, p.meta.n, p.meta.k, linkExtra(p.meta)));
    }
    return this.commitChange(ops);
  }

  /** Last applied batch seq per peer. */
  peerPositions(): Map<ReplicaId, number> {
    return new Map(this.db.peers().map((p) => [p.replica, p.seq]));
  }

  /** Listen for changes: `(change, local)`; remote batches report local=false. */
  onChange(listener: (change: TreeChange, local: boolean) => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  /** Listen for commits, without what they changed (cheaper than onChange): `local` is false for remote batches. */
  onCommit(listener: (local: boolean) => void): () => void {
    this.events.on('commit', listener);
    return () => this.events.off('commit', listener);
  }

  // ---------------------------------------------------------------- snapshots (fast clone)

  /** The whole persisted state as rows, read in one synchronous stretch (for a checkpoint). */
  exportSnapshot(): TreeSnapshot {
    return readSnapshot(this.db, this.clock.counter);
  }

  /**
   * Load another replica's snapshot into this new, empty replica in one transaction: its tables are copied with one
   * INSERT … SELECT each (no CRDT work per op), then the in-memory tree is rebuilt from them as a reopen does and
   * checked (every meta well-formed, a forest, no cycle). `positions` (replica → batch seq the snapshot covers) become
   * the peer positions, so a pull fetches only later batches. Anything invalid rolls the whole load back and throws
   * (InvalidInputError ARBOR_BAD_CHECKPOINT); the replica stays empty. Returns the number of rows loaded.
   */
  importSnapshot(s: TreeSnapshot, source: ReplicaId, positions: ReadonlyMap<ReplicaId, number>): number {
    if (this.closed) throw fsError('EIO', 'arbor is closed');
    if (this.open.size > 0 || this.crdt.size > 0 || this.db.peers().length > 0)
      throw fsError('EBUSY', 'a checkpoint can only be loaded into a new replica');
    const counters = new Map(s.peers.map(([r, , c]) => [r, c]));
    counters.set(source, Math.max(counters.get(source) ?? 0, s.clock));
    const merge = (_id: string, mine: string, theirs: string): string =>
      encodeRegs(mergeRegs(decodeRegs(mine), decodeRegs(theirs)));
    try {
      // Its own SQL and the tx must be one transaction: no group commit here.
      return this.db.direct(() =>
        writeSnapshot(this.db, s, `${this.db.db.name}.checkpoint-load`, merge, (load) =>
          this.db.tx(() => {
            load();
            for (const [r, seq] of positions)
              if (r !== this.replica) this.db.peerPut(r, seq, counters.get(r) ?? 0);
            this.clock.observe({ counter: s.clock, replica: source });
            this.db.kvSet('clock', `${this.clock.counter} ${this.seq}`);
            this.resetMemory();
            try {
              this.crdt = this.load();
            } catch (err) {
              if (err instanceof SyntaxError)
                throw new InvalidInputError(`checkpoint snapshot: ${err.message}`, 'ARBOR_BAD_CHECKPOINT');
              throw err;
            }
            for (const [id, p] of this.crdt.nodes()) checkMeta(p.meta, `node ${id}`);
            for (const e of this.crdt.log()) {
              checkMeta(e.op.meta, `log op of ${e.op.child}`);
              if (e.old !== null) checkMeta(e.old.meta, `log op of ${e.op.child}`);
            }
            this.crdt.verify();
          }),
        ),
      );
    } catch (err) {
      // Rolled back: rebuild the memory of the (still empty) replica from SQLite.
      this.resetMemory();
      this.crdt = this.load();
      throw err;
    }
  }

  /** Drop every in-memory index and cache (before the CRDT is rebuilt after a bulk load or its rollback). */
  private resetMemory(): void {
    this.names.clear();
    this.links = undefined;
    this.regs.clear();
    this.conflicted.clear();
    this.subdirs.clear();
    this.dirCache.clear();
  }

  // ---------------------------------------------------------------- lookups

  /** Is this id a directory? (cheap; no attributes read) */
  isDirectory(id: NodeId): boolean {
    return this.isDir(id);
  }

  private isDir(id: NodeId): boolean {
    return id === ROOT || this.crdt.get(id)?.meta.k === 'd';
  }

  /** Is the node (a dir or link) attached to root, not in trash? */
  private attached(id: NodeId): boolean {
    let cur = id;
    for (let depth = 0; cur !== ROOT; depth++) {
      const p = this.crdt.get(cur);
      if (p === undefined || depth > 100000) return false;
      cur = p.parent;
    }
    return true;
  }

  private linksOf(inode: NodeId): NodeId[] {
    const l = this.linkIndex().get(inode);
    return l === undefined ? [] : typeof l === 'string' ? [l] : l;
  }

  private nlinkOf(inode: NodeId): number {
    let n = 0;
    for (const l of this.linksOf(inode)) if (this.attached(l)) n++;
    return n;
  }

  /** The node shown under `name` in `dir` (a dir node, a link node, or a virtual conflict id), or undefined. */
  private entry(dir: NodeId, name: string): NodeId | undefined {
    const m = this.dirNames(dir);
    const group = m?.get(name);
    if (group !== undefined) return typeof group === 'string' ? group : this.sortedGroup(group)[0];
    const dup = parseDuplicateName(name);
    if (dup !== undefined) {
      const g = m?.get(dup.base);
      if (g !== undefined && typeof g !== 'string') {
        const sorted = this.sortedGroup(g);
        for (let i = 1; i < sorted.length; i++) {
          if (this.crdt.get(sorted[i]!)!.meta.t[1] === dup.replica) return sorted[i];
        }
      }
    }
    const c = parseConflictName(name);
    if (c !== undefined) {
      const link = this.entry(dir, c.base);
      const inode = link === undefined ? undefined : this.crdt.get(link)?.meta.i;
      if (inode !== undefined && this.conflicted.has(inode)) {
        for (const v of this.getRegs(inode)?.['~h'] ?? []) {
          if (v.replica === c.replica && compactTime(BigInt(v.timeNs)) === c.time)
            return inode + CONFLICT_SEP + v.id;
        }
      }
    }
    return undefined;
  }

  private sortedGroup(g: NodeId[]): NodeId[] {
    return [...g].sort((a, b) => {
      const ta = this.crdt.get(a)!.meta.t;
      const tb = this.crdt.get(b)!.meta.t;
      return ta[0] - tb[0] || (ta[1] < tb[1] ? -1 : ta[1] > tb[1] ? 1 : a < b ? -1 : 1);
    });
  }

  /** The id FileTree hands out for an entry: directories are themselves, links resolve to their inode. */
  private target(entryId: NodeId): NodeId {
    const p = this.crdt.get(entryId);
    return p?.meta.k === 'l' ? p.meta.i! : entryId;
  }

  private requireDir(id: NodeId): void {
    if (this.isVirtual(id)) throw fsError('ENOTDIR');
    if (!this.isDir(id)) {
      if (this.crdt.get(id) === undefined && this.getRegs(id) === undefined) throw fsError('ENOENT');
      throw fsError('ENOTDIR');
    }
  }

  private isVirtual(id: NodeId): boolean {
    return id.includes(CONFLICT_SEP);
  }

  /** The node a name refers to in a directory (directories: the dir node; others: the inode). ENOENT if none. */
  lookup(dir: NodeId, name: string): Attr {
    return this.getattr(this.lookupId(dir, name));
  }

  /** Like lookupId, but undefined instead of ENOENT (cheaper than an exception on hot create paths). */
  tryLookupId(dir: NodeId, name: string): NodeId | undefined {
    this.requireDir(dir);
    if (name === '.' || name === '..' || Buffer.byteLength(name) > NAME_MAX) return this.lookupId(dir, name);
    const e = this.entry(dir, name);
    return e === undefined ? undefined : this.target(e);
  }

  lookupId(dir: NodeId, name: string): NodeId {
    this.requireDir(dir);
    if (Buffer.byteLength(name) > NAME_MAX) throw fsError('ENAMETOOLONG');
    if (name === '.') return dir;
    if (name === '..') return dir === ROOT ? ROOT : this.crdt.get(dir)!.parent;
    const e = this.entry(dir, name);
    if (e === undefined) throw fsError('ENOENT', `no entry ${name}`);
    return this.target(e);
  }

  /**
   * The visible path of a directory or inode ('/a/b', by the names its moves gave it), or undefined when it is not
   * attached to the root (removed, or a conflict view). An inode with several links shows its first attached one.
   */
  pathOf(id: NodeId): string | undefined {
    if (id === ROOT) return '/';
    let node: NodeId | undefined = id;
    if (this.crdt.get(id) === undefined)
      node = this.linksOf(id)
        .filter((l) => this.attached(l))
        .sort()[0];
    if (node === undefined || !this.attached(node) || this.crdt.get(node)!.meta.k === 'i') return undefined;
    const parts: string[] = [];
    for (let cur = node; cur !== ROOT;) {
      const p = this.crdt.get(cur)!;
      parts.push(p.meta.n);
      cur = p.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  /** The content version a file's reads see: the current one (a conflict view: its own), with its chunk list. */
  contentOf(id: NodeId): ContentVersion | undefined {
    return this.isVirtual(id) ? this.virtualParts(id).version : this.currentVersion(id);
  }

  /** Does the node exist (visible, or still open)? */
  exists(id: NodeId): boolean {
    return (
      id === ROOT ||
      this.crdt.get(id) !== undefined ||
      this.reg(id, 'kind') !== undefined ||
      this.open.has(id)
    );
  }

  getattr(id: NodeId): Attr {
    if (this.isVirtual(id)) return this.virtualAttr(id);
    const p = this.crdt.get(id);
    let kind: FileKind;
    if (id === ROOT || p?.meta.k === 'd') kind = 'dir';
    else {
      // An inode is not a tree node: its registers (kind among them) are its existence.
      const k = this.reg(id, 'kind');
      if (typeof k !== 'string' || p !== undefined) throw fsError('ENOENT');
      kind = k as FileKind;
    }
    const num = (f: string, d: number): number => {
      const v = this.reg(id, f);
      return typeof v === 'number' ? v : d;
    };
    const time = (f: string): bigint => {
      const v = this.reg(id, f);
      return typeof v === 'string' ? BigInt(v) : 0n;
    };
    let size: number;
    let holes = 0;
    let nlink: number;
    let mtime = time('mtime');
    let ctime = time('ctime');
    if (kind === 'dir') {
      this.dirNames(id);
      nlink = 2 + (this.subdirs.get(id) ?? 0);
      size = 4096;
    } else {
      nlink = this.nlinkOf(id);
      if (kind === 'symlink') size = Buffer.byteLength(String(this.reg(id, 'target') ?? ''));
      else {
        const c = this.getRegs(id)?.content?.[2];
        size = c?.size ?? 0;
        holes = c?.holes ?? 0;
      }
      const f = this.open.get(id);
      if (f !== undefined) {
        size = f.content.size;
        holes = size - f.content.dataBytes;
        if (f.pendingMtime !== undefined) {
          mtime = f.pendingMtime;
          if (f.pendingMtime > ctime) ctime = f.pendingMtime;
        }
      }
    }
    return {
      nodeId: id,
      kind,
      mode: (num('mode', 0) & 0o7777) | TYPE_BITS[kind],
      nlink,
      uid: num('uid', 0),
      gid: num('gid', 0),
      size,
      blocks: kind === 'file' ? blocksOf(size, holes) : Math.ceil(size / 512),
      rdev: num('rdev', 0),
      atimeNs: time('atime'),
      mtimeNs: mtime,
      ctimeNs: ctime,
    };
  }

  private virtualParts(id: NodeId): { inode: NodeId; version: ContentVersion } {
    const [inode, vid] = id.split(CONFLICT_SEP) as [string, string];
    const v = (this.getRegs(inode)?.['~h'] ?? []).find((x) => x.id === vid);
    if (v === undefined) throw fsError('ENOENT');
    return { inode, version: v };
  }

  private virtualAttr(id: NodeId): Attr {
    const { inode, version } = this.virtualParts(id);
    const base = this.getattr(inode);
    const t = BigInt(version.timeNs);
    return {
      ...base,
      nodeId: id,
      nlink: 1,
      size: version.size,
      blocks: blocksOf(
        version.size,
        holeBytes(version.chunks) +
          Math.max(0, version.size - version.chunks.reduce((n, c) => n + c.size, 0)),
      ),
      mtimeNs: t,
      ctimeNs: t,
    };
  }

  /** Directory entries after `offset` (a cookie from an earlier entry; 0 = from the start), `.` and `..` first. */
  readdir(dir: NodeId, offset = 0): DirEntry[] {
    this.requireDir(dir);
    let list = this.dirCache.get(dir);
    if (list === undefined) {
      list = this.listDir(dir);
      this.dirCache.set(dir, list);
    }
    if (offset <= 0) return list;
    return list.slice(firstAbove(list, offset, (e) => e.cookie));
  }

  private listDir(dir: NodeId): DirEntry[] {
    const out: DirEntry[] = [
      { name: '.', nodeId: dir, kind: 'dir', cookie: 1 },
      { name: '..', nodeId: dir === ROOT ? ROOT : this.crdt.get(dir)!.parent, kind: 'dir', cookie: 2 },
    ];
    const rest: DirEntry[] = [];
    const m = this.dirNames(dir);
    if (m !== undefined) {
      for (const [name, g] of m) {
        const group = typeof g === 'string' ? [g] : this.sortedGroup(g);
        group.forEach((node, i) => {
          const shown = i === 0 ? name : duplicateName(name, this.crdt.get(node)!.meta.t[1]);
          const p = this.crdt.get(node)!;
          const target = this.target(node);
          const kind: FileKind = p.meta.k === 'd' ? 'dir' : (p.meta.f ?? 'file');
          rest.push({ name: shown, nodeId: target, kind, cookie: nameCookie(shown) });
          if (p.meta.k === 'l' && this.conflicted.has(target)) {
            for (const v of this.getRegs(target)?.['~h'] ?? []) {
              const cn = conflictName(shown, v.replica, BigInt(v.timeNs));
              rest.push({
                name: cn,
                nodeId: target + CONFLICT_SEP + v.id,
                kind: 'file',
                cookie: nameCookie(cn),
              });
            }
          }
        });
      }
    }
    rest.sort((a, b) => a.cookie - b.cookie || (a.name < b.name ? -1 : 1));
    return out.concat(rest);
  }

  readlink(id: NodeId): string {
    const a = this.getattr(id);
    if (a.kind !== 'symlink') throw fsError('EINVAL');
    return String(this.reg(id, 'target') ?? '');
  }

  // ---------------------------------------------------------------- making ops

  private meta(
    name: string,
    k: TreeMeta['k'],
    ts: Timestamp,
    extra?: { i?: NodeId; f?: FileKind },
  ): TreeMeta {
    const m: TreeMeta = { n: name, k, t: [ts.counter, ts.replica] };
    return extra === undefined ? m : { ...m, ...extra };
  }

  private move(
    parent: NodeId,
    child: NodeId,
    name: string,
    k: TreeMeta['k'],
    extra?: { i?: NodeId; f?: FileKind },
  ): TreeOp {
    const ts = this.clock.tick();
    return { type: 'move', ts, parent, child, meta: this.meta(name, k, ts, extra) };
  }

  private set(node: NodeId, fields: Record<string, RegisterValue>): TreeOp {
    return { type: 'set', ts: this.clock.tick(), node, fields };
  }

  private freshId(): NodeId {
    // A tick used only for the id: unique per replica, so the id is globally unique.
    const ts = this.clock.tick();
    const id = `${ts.counter.toString(36)}.${ts.replica}`;
    // Never seen before, so it has no registers and was never purged: no SQLite reads to find that out.
    this.regs.set(id, null);
    this.minted.add(id);
    return id;
  }

  private touchDir(dir: NodeId, t: string): TreeOp {
    return this.set(dir, { mtime: t, ctime: t });
  }

  /** Checks for making `name` in `dir`: dir exists and is a dir, name valid and free. */
  private checkNew(dir: NodeId, name: string): void {
    this.requireDir(dir);
    if (name === '.' || name === '..') throw fsError('EEXIST');
    checkName(name);
    if (this.entry(dir, name) !== undefined) throw fsError('EEXIST', `${name} exists`);
    if (dir !== ROOT && !this.attached(dir)) throw fsError('ENOENT', 'directory was removed');
  }

  mkdir(dir: NodeId, name: string, mode: number, uid = 0, gid = 0): Attr {
    this.checkNew(dir, name);
    const id = this.freshId();
    const t = this.now().toString();
    this.commit([
      this.move(dir, id, name, 'd'),
      this.set(id, { mode: mode & 0o7777, uid, gid, atime: t, mtime: t, ctime: t }),
      this.touchDir(dir, t),
    ]);
    return this.getattr(id);
  }

  /** Make a non-directory inode with one link. */
  private makeInode(
    dir: NodeId,
    name: string,
    kind: FileKind,
    fields: Record<string, RegisterValue>,
  ): NodeId {
    this.checkNew(dir, name);
    const inode = this.freshId();
    const link = this.freshId();
    const t = this.now().toString();
    this.commit([
      this.move(dir, link, name, 'l', { i: inode, f: kind }),
      this.set(inode, { kind, atime: t, mtime: t, ctime: t, ...fields }),
      this.touchDir(dir, t),
    ]);
    return inode;
  }

  mknod(dir: NodeId, name: string, mode: number, rdev = 0, uid = 0, gid = 0): Attr {
    const kind = kindOfMode(mode) ?? 'file';
    if (kind === 'dir' || kind === 'symlink') throw fsError('EINVAL');
    const fields: Record<string, RegisterValue> = { mode: mode & 0o7777, uid, gid };
    if (kind === 'chr' || kind === 'blk') fields.rdev = rdev;
    return this.getattr(this.makeInode(dir, name, kind, fields));
  }

  /** Create a regular file and open it. With `exclusive`, an existing name is EEXIST; otherwise it is opened. */
  create(
    dir: NodeId,
    name: string,
    mode: number,
    flags: OpenFlags & { exclusive?: boolean } = {},
    uid = 0,
    gid = 0,
  ): { attr: Attr; fh: number } {
    this.requireDir(dir);
    const existing = name === '.' || name === '..' ? dir : this.entry(dir, name);
    if (existing !== undefined) {
      if (flags.exclusive) throw fsError('EEXIST');
      const id = this.target(existing);
      const fh = this.openSync(id, { write: true, ...flags });
      if (flags.truncate) {
        const f = this.handle(fh).file;
        if (f.content.size > 0) {
          f.content.truncate(0); // recorded as a version at flush/release, like openNode's O_TRUNC
          f.pendingMtime = this.now();
        }
      }
      return { attr: this.getattr(id), fh };
    }
    const id = this.makeInode(dir, name, 'file', { mode: mode & 0o7777, uid, gid });
    const fh = this.openSync(id, { write: true, read: flags.read, append: flags.append });
    return { attr: this.getattr(id), fh };
  }

  /**
   * Create a regular file with its whole content in one transaction (chunks are stored first). For writers that have
   * the bytes up front (the library's writeFile, restore); EEXIST if the name is taken.
   */
  async createFile(
    dir: NodeId,
    name: string,
    mode: number,
    data: Uint8Array,
    uid = 0,
    gid = 0,
  ): Promise<Attr> {
    this.checkNew(dir, name);
    let chunks: ChunkRef[] = [];
    if (data.length > 0) {
      const r = new Rechunker(this.store);
      await r.push(data);
      chunks = await r.end();
    }
    // checkNew again inside: the tree may have changed while chunks were stored.
    return this.commitNewFile(
      dir,
      name,
      mode,
      uid,
      gid,
      data.length > 0 ? { size: data.length, chunks } : undefined,
    );
  }

  /** A new regular file whose first version is `content` (chunks already stored), or empty. One transaction. */
  private commitNewFile(
    dir: NodeId,
    name: string,
    mode: number,
    uid: number,
    gid: number,
    content: Pick<ContentVersion, 'size' | 'chunks'> | undefined,
  ): Attr {
    this.checkNew(dir, name);
    const inode = this.freshId();
    const link = this.freshId();
    const t = this.now().toString();
    const ops: TreeOp[] = [
      this.move(dir, link, name, 'l', { i: inode, f: 'file' }),
      this.set(inode, { kind: 'file', mode: mode & 0o7777, uid, gid, atime: t, mtime: t, ctime: t }),
    ];
    if (content !== undefined) {
      const ts = this.clock.tick();
      const version: ContentVersion = {
        id: tsKey(ts),
        base: null,
        size: content.size,
        chunks: content.chunks,
        timeNs: t,
        replica: this.replica,
      };
      ops.push({ type: 'version', ts, node: inode, version });
    }
    ops.push(this.touchDir(dir, t));
    this.commit(ops);
    return this.getattr(inode);
  }

  symlink(dir: NodeId, name: string, target: string, uid = 0, gid = 0): Attr {
    if (target.length === 0) throw fsError('ENOENT');
    if (Buffer.byteLength(target) > SYMLINK_MAX) throw fsError('ENAMETOOLONG');
    if (!isWellFormed(target)) throw fsError('EILSEQ', 'symlink target is not valid UTF-8');
    return this.getattr(this.makeInode(dir, name, 'symlink', { mode: 0o777, uid, gid, target }));
  }

  link(id: NodeId, dir: NodeId, name: string): Attr {
    if (this.isVirtual(id)) throw fsError('EPERM');
    const a = this.getattr(id);
    this.checkNew(dir, name); // Linux looks up the new name (EEXIST) before refusing directories (EPERM)
    if (a.kind === 'dir') throw fsError('EPERM');
    if (a.nlink === 0 && !this.open.has(id)) throw fsError('ENOENT');
    const t = this.now().toString();
    this.commit([
      this.move(dir, this.freshId(), name, 'l', { i: id, f: a.kind }),
      this.set(id, { ctime: t }),
      this.touchDir(dir, t),
    ]);
    return this.getattr(id);
  }

  /** Ops that take `entry` (a link or dir node shown in `dir`) out of the visible tree. */
  private removeOps(entry: NodeId, t: string): TreeOp[] {
    const p = this.crdt.get(entry)!;
    // The inode itself stays where it is (its registers): with no attached link it is garbage once no handle is open.
    const ops: TreeOp[] = [this.move(TRASH, entry, p.meta.n, p.meta.k, linkExtra(p.meta))];
    if (p.meta.k === 'l') ops.push(this.set(p.meta.i!, { ctime: t }));
    return ops;
  }

  unlink(dir: NodeId, name: string): void {
    this.requireDir(dir);
    checkName(name);
    const e = this.entry(dir, name);
    if (e === undefined) throw fsError('ENOENT');
    if (this.isVirtual(e)) {
      const { inode, version } = this.virtualParts(e);
      this.commit([this.set(inode, { [`dismiss:${version.id}`]: 1 })]);
      return;
    }
    if (this.isDir(e)) throw fsError('EISDIR');
    const t = this.now().toString();
    this.commit([...this.removeOps(e, t), this.touchDir(dir, t)]);
  }

  private hasChildren(dir: NodeId): boolean {
    return this.crdt.childCount(dir) > 0;
  }

  rmdir(dir: NodeId, name: string): void {
    this.requireDir(dir);
    if (name === '.') throw fsError('EINVAL');
    if (name === '..') throw fsError('ENOTEMPTY');
    checkName(name);
    const e = this.entry(dir, name);
    if (e === undefined) throw fsError('ENOENT');
    if (!this.isDir(e)) throw fsError('ENOTDIR');
    if (this.hasChildren(e)) throw fsError('ENOTEMPTY');
    const t = this.now().toString();
    this.commit([...this.removeOps(e, t), this.touchDir(dir, t)]);
  }

  rename(dir: NodeId, name: string, newDir: NodeId, newName: string, flags = 0): void {
    if ((flags & RENAME_NOREPLACE) !== 0 && (flags & RENAME_EXCHANGE) !== 0) throw fsError('EINVAL');
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0) throw fsError('EINVAL');
    this.requireDir(dir);
    this.requireDir(newDir);
    checkName(name);
    checkName(newName);
    if (name === '.' || name === '..' || newName === '.' || newName === '..') throw fsError('EBUSY');
    const src = this.entry(dir, name);
    if (src === undefined) throw fsError('ENOENT');
    const dst = this.entry(newDir, newName);
    if (this.isVirtual(src)) {
      if (dst !== undefined) throw fsError('EEXIST');
      this.materializeConflict(src, newDir, newName);
      return;
    }
    if (dst !== undefined && this.isVirtual(dst)) throw fsError('EPERM');
    const srcDir = this.isDir(src);
    if (srcDir && (newDir === src || this.crdt.isAncestor(src, newDir))) throw fsError('EINVAL');
    const t = this.now().toString();
    const ps = this.crdt.get(src)!;
    if (flags & RENAME_EXCHANGE) {
      if (dst === undefined) throw fsError('ENOENT');
      if (dst === src) return;
      const pd = this.crdt.get(dst)!;
      if (this.isDir(dst) && (dir === dst || this.crdt.isAncestor(dst, dir))) throw fsError('EINVAL');
      this.commit([
        this.move(newDir, src, newName, ps.meta.k, linkExtra(ps.meta)),
        this.move(dir, dst, name, pd.meta.k, linkExtra(pd.meta)),
        this.set(this.target(src), { ctime: t }),
        this.set(this.target(dst), { ctime: t }),
        this.touchDir(dir, t),
        ...(newDir !== dir ? [this.touchDir(newDir, t)] : []),
      ]);
      return;
    }
    const ops: TreeOp[] = [];
    if (dst !== undefined) {
      if (flags & RENAME_NOREPLACE) throw fsError('EEXIST');
      if (dst === src) return;
      const dstDir = this.isDir(dst);
      // Linux's order: the target being an ancestor of the source (lock_rename's trap) comes before type checks.
      if (dstDir && (dst === dir || this.crdt.isAncestor(dst, dir))) throw fsError('ENOTEMPTY');
      if (srcDir && !dstDir) throw fsError('ENOTDIR');
      if (!srcDir && dstDir) throw fsError('EISDIR');
      if (dstDir && this.hasChildren(dst)) throw fsError('ENOTEMPTY');
      // Two names of one inode: POSIX says do nothing.
      if (!srcDir && this.target(src) === this.target(dst)) return;
      ops.push(...this.removeOps(dst, t));
    }
    ops.push(this.move(newDir, src, newName, ps.meta.k, linkExtra(ps.meta)));
    ops.push(this.set(this.target(src), { ctime: t }));
    ops.push(this.touchDir(dir, t));
    if (newDir !== dir) ops.push(this.touchDir(newDir, t));
    this.commit(ops);
  }

  /** Renaming a conflict copy makes it a real file with that content (and dismisses the copy). */
  private materializeConflict(virtualId: NodeId, dir: NodeId, name: string): void {
    const { inode, version } = this.virtualParts(virtualId);
    this.checkNew(dir, name);
    const a = this.getattr(inode);
    const id = this.freshId();
    const link = this.freshId();
    const t = this.now().toString();
    const ts = this.clock.tick();
    this.commit([
      this.move(dir, link, name, 'l', { i: id, f: 'file' }),
      this.set(id, {
        kind: 'file',
        mode: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        atime: t,
        mtime: version.timeNs,
        ctime: t,
      }),
      {
        type: 'version',
        ts,
        node: id,
        version: { ...version, id: tsKey(ts), base: null, replica: this.replica },
      },
      this.set(inode, { [`dismiss:${version.id}`]: 1 }),
      this.touchDir(dir, t),
    ]);
  }

  // ---------------------------------------------------------------- attributes

  async setattr(id: NodeId, changes: SetAttr, fh?: number): Promise<Attr> {
    if (this.isVirtual(id)) throw fsError('EPERM');
    const a = this.getattr(id);
    const fields: Record<string, RegisterValue> = {};
    const t = this.now();
    if (changes.mode !== undefined) fields.mode = changes.mode & 0o7777;
    if (changes.uid !== undefined && changes.uid !== -1) fields.uid = changes.uid;
    if (changes.gid !== undefined && changes.gid !== -1) fields.gid = changes.gid;
    if (changes.atimeNs !== undefined) fields.atime = changes.atimeNs.toString();
    if (changes.mtimeNs !== undefined) fields.mtime = changes.mtimeNs.toString();
    if (changes.size !== undefined) {
      if (a.kind === 'dir') throw fsError('EISDIR');
      if (a.kind !== 'file') throw fsError('EINVAL');
      if (changes.size < 0 || !Number.isSafeInteger(changes.size)) throw fsError('EINVAL');
      const handle = fh !== undefined ? this.handles.get(fh) : undefined;
      const f = handle?.file ?? this.openFile(id, false);
      try {
        await f.content.lock(async () => {
          if (f.content.size !== changes.size) {
            f.content.truncate(changes.size!);
            if (changes.mtimeNs === undefined) fields.mtime = t.toString();
            f.pendingMtime = undefined;
          }
          await this.recordVersion(f, fields);
        });
      } finally {
        if (handle === undefined) this.closeFile(f);
      }
    }
    fields.ctime = (changes.ctimeNs ?? t).toString();
    if (changes.size === undefined) this.commit([this.set(id, fields)]);
    return this.getattr(id);
  }

  /**
   * What Linux does to a regular file written or truncated by a process without CAP_FSETID, or chowned: setuid goes,
   * setgid goes when the file is group-executable (without g+x it marks mandatory locking and stays), and so do
   * file capabilities (security.capability). Nothing is committed when there is nothing to drop.
   */
  dropPrivileges(id: NodeId): void {
    if (this.isVirtual(id)) return;
    const a = this.getattr(id);
    if (a.kind !== 'file') return;
    const fields: Record<string, RegisterValue> = {};
    let kill = a.mode & S_ISUID;
    if ((a.mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) kill |= S_ISGID;
    if (kill !== 0) fields.mode = a.mode & 0o7777 & ~kill;
    if (typeof this.reg(id, CAPABILITY_XATTR) === 'string') fields[CAPABILITY_XATTR] = null;
    if (Object.keys(fields).length === 0) return;
    fields.ctime = this.now().toString();
    this.commit([this.set(id, fields)]);
  }

  private checkXattrName(name: string): void {
    if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX) throw fsError('ERANGE');
    if (!/^(user|trusted|security)\./.test(name)) throw fsError('EOPNOTSUPP');
    if (!isWellFormed(name)) throw fsError('EILSEQ', 'xattr name is not valid UTF-8');
  }

  getxattr(id: NodeId, name: string): Buffer {
    this.getattr(id);
    this.checkXattrName(name);
    const v = this.reg(this.realId(id), `x:${name}`);
    if (typeof v !== 'string') throw fsError('ENODATA');
    return Buffer.from(v, 'base64');
  }

  setxattr(id: NodeId, name: string, value: Uint8Array, flags = 0): void {
    if (this.isVirtual(id)) throw fsError('EPERM');
    this.getattr(id);
    this.checkXattrName(name);
    if (value.length > XATTR_SIZE_MAX) throw fsError('E2BIG');
    const exists = typeof this.reg(id, `x:${name}`) === 'string';
    if (flags & XATTR_CREATE && exists) throw fsError('EEXIST');
    if (flags & XATTR_REPLACE && !exists) throw fsError('ENODATA');
    const t = this.now().toString();
    this.commit([this.set(id, { [`x:${name}`]: Buffer.from(value).toString('base64'), ctime: t })]);
  }

  listxattr(id: NodeId): string[] {
    this.getattr(id);
    const r = this.getRegs(this.realId(id));
    const out: string[] = [];
    if (r !== undefined) {
      for (const [k, v] of Object.entries(r)) {
        if (k.startsWith('x:') && typeof (v as Reg)[2] === 'string') out.push(k.slice(2));
      }
    }
    return out.sort();
  }

  removexattr(id: NodeId, name: string): void {
    if (this.isVirtual(id)) throw fsError('EPERM');
    this.getattr(id);
    this.checkXattrName(name);
    if (typeof this.reg(id, `x:${name}`) !== 'string') throw fsError('ENODATA');
    const t = this.now().toString();
    this.commit([this.set(id, { [`x:${name}`]: null, ctime: t })]);
  }

  private realId(id: NodeId): NodeId {
    return this.isVirtual(id) ? id.split(CONFLICT_SEP)[0]! : id;
  }

  statfs(): StatFs {
    const s = statfsSync(this.statfsPath);
    // Node ids are unbounded, so free inodes are reported as a large constant beside the real count in use.
    const files = this.crdt.size;
    const ffree = 1e12;
    return {
      bsize: s.bsize,
      frsize: s.bsize,
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: files + ffree,
      ffree,
      namemax: NAME_MAX,
    };
  }

  // ---------------------------------------------------------------- content

  /** The current version with its chunk list (the register keeps only id and size; chunks live in `versions`). */
  private currentVersion(id: NodeId): ContentVersion | undefined {
    const v = this.getRegs(id)?.content?.[2];
    if (v === undefined) return undefined;
    const full = this.db.versionGet(id, v.id);
    return full === undefined ? v : (JSON.parse(full) as ContentVersion);
  }

  private openFile(id: NodeId, readOnly: boolean): OpenFile {
    let f = this.open.get(id);
    if (f === undefined) {
      const v = this.isVirtual(id) ? this.virtualParts(id).version : this.currentVersion(id);
      f = {
        inode: id,
        content: new FileContent(this.store, v?.chunks ?? [], v?.size ?? 0, this.dirtyLimit),
        base: v?.id ?? null,
        refs: 0,
        pendingMtime: undefined,
        readOnly,
      };
      this.open.set(id, f);
    }
    f.refs++;
    return f;
  }

  private closeFile(f: OpenFile): void {
    if (--f.refs === 0) this.open.delete(f.inode);
  }

  private openSync(id: NodeId, flags: OpenFlags): number {
    const a = this.getattr(id);
    const write = flags.write === true || flags.append === true;
    if (a.kind === 'dir' && write) throw fsError('EISDIR');
    if (this.isVirtual(id) && write) throw fsError('EACCES');
    if (a.kind !== 'file' && a.kind !== 'dir') {
      if (a.kind === 'symlink') throw fsError('ELOOP');
    }
    const f = this.openFile(id, this.isVirtual(id));
    const fh = this.nextFh++;
    this.handles.set(fh, { file: f, write, append: flags.append === true });
    return fh;
  }

  /** Open a file (or directory, read-only). With `truncate` the content is emptied (recorded at flush/release). */
  async openNode(id: NodeId, flags: OpenFlags = { read: true }): Promise<number> {
    const fh = this.openSync(id, flags);
    if (flags.truncate && (flags.write || flags.append)) {
      const h = this.handle(fh);
      // O_TRUNC: the empty content becomes a version only at flush/release, with whatever is written meanwhile.
      await h.file.content.lock(async () => {
        if (h.file.content.size > 0) {
          h.file.content.truncate(0);
          h.file.pendingMtime = this.now();
        }
      });
    }
    return fh;
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (h === undefined) throw fsError('EBADF');
    return h;
  }

  /** The node a handle refers to. */
  handleNode(fh: number): NodeId {
    return this.handle(fh).file.inode;
  }

  async read(fh: number, offset: number, length: number): Promise<Buffer> {
    const h = this.handle(fh);
    if (offset < 0) throw fsError('EINVAL');
    return h.file.content.lock(() => h.file.content.read(offset, length));
  }

  async write(fh: number, offset: number, data: Uint8Array): Promise<number> {
    const h = this.handle(fh);
    if (!h.write) throw fsError('EBADF');
    if (offset < 0) throw fsError('EINVAL');
    const c = h.file.content;
    return c.lock(async () => {
      const n = await c.write(h.append ? c.size : offset, data);
      h.file.pendingMtime = this.now();
      return n;
    });
  }

  /**
   * Record a version now if the content changed (flush and fsync). Synchronous when nothing was written and nothing
   * is queued on the content (the close of a file only created or read): there is no version to record then.
   */
  flush(fh: number): Promise<void> | void {
    const h = this.handle(fh);
    const c = h.file.content;
    if (!c.changed && c.idle) return;
    return c.lock(() => this.recordVersion(h.file, {}));
  }

  /**
   * Flush, then make the state durable against power loss too (commits are only crash-safe until a checkpoint): the
   * chunks first (puts are not fsynced one by one), so a durable op never names a chunk that is not.
   */
  async fsync(fh: number): Promise<void> {
    await this.flush(fh);
    await this.syncChunks();
    this.db.checkpoint();
  }

  /**
   * Commit every operation group commit still holds (crash-safe; not yet fsynced: fsync the state files after it for
   * power loss). fsync and close do this themselves; fsyncdir and whoever fsyncs the state files must call it first.
   */
  flushState(): void {
    this.db.flush();
  }

  /** Make every chunk stored so far durable (the chunk store's sync; see ChunkStore.sync). */
  async syncChunks(): Promise<void> {
    await this.store.sync?.();
  }

  /** Record a version if the content changed, then close the handle; synchronous when there is none to record. */
  release(fh: number): Promise<void> | void {
    const h = this.handle(fh);
    const c = h.file.content;
    const close = (): void => {
      this.handles.delete(fh);
      this.closeFile(h.file);
    };
    if (!c.changed && c.idle) return close();
    return c.lock(() => this.recordVersion(h.file, {})).finally(close);
  }

  /**
   * Drop a handle without recording what it wrote (a cancelled `arbor put`): once no other handle has the file open,
   * its content is read from the last recorded version again. Writes through other handles still open on the file
   * share one content, so theirs (and this one's) are recorded at their release.
   */
  async discard(fh: number): Promise<void> {
    const h = this.handle(fh);
    // Let a write in progress finish first, so nothing lands in the content after the handle is gone.
    await h.file.content.lock(() => Promise.resolve());
    this.handles.delete(fh);
    this.closeFile(h.file);
  }

  /**
   * Store the content's chunks and commit a new version (plus `fields`, e.g. mtime) if anything changed. Order that
   * crash safety depends on: all chunks are stored (durably, by the store) before the commit that references them.
   * The clock is recovered at open from the last local batch only, so every batch must carry a tick taken when it is
   * committed (the `set` below does): a batch holding only ticks taken before an await could be the last one with a
   * smaller counter than an earlier batch, a crash would hand that counter out again, and a version with a reused id
   * is ignored (INSERT OR IGNORE), losing the LWW register to the older version.
   */
  private async recordVersion(f: OpenFile, fields: Record<string, RegisterValue>): Promise<void> {
    if (!f.content.changed) {
      if (Object.keys(fields).length > 0) this.commit([this.set(f.inode, fields)]);
      return;
    }
    const chunks: ChunkRef[] = await f.content.rechunk();
    const ts = this.clock.tick();
    const nowNs = this.now();
    const mtime = (f.pendingMtime ?? nowNs).toString();
    const v: ContentVersion = {
      id: tsKey(ts),
      base: f.base,
      size: f.content.size,
      chunks,
      timeNs: nowNs.toString(),
      replica: this.replica,
    };
    this.commit([
      { type: 'version', ts, node: f.inode, version: v },
      this.set(f.inode, { mtime, ctime: mtime, ...fields }),
    ]);
    f.base = v.id;
    f.content.changed = false;
    f.pendingMtime = undefined;
  }

  /** Every recorded version of a file, oldest first. */
  versions(id: NodeId): ContentVersion[] {
    const node = this.realId(id);
    // Versions GC pruned by retention are still rows (the version DAG derives conflict heads from them) but their
    // chunks are gone: history does not offer them.
    return this.db
      .versionsOf(node)
      .map((d) => JSON.parse(d) as ContentVersion)
      .filter((v) => this.reg(node, `${PRUNED}${v.id}`) == null);
  }

  /** Make an old version current again (a new version with that content, based on the current one). */
  restoreVersion(id: NodeId, versionId: string): void {
    const v = this.versions(id).find((x) => x.id === versionId);
    if (v === undefined) throw fsError('ENOENT', `no version ${versionId}`);
    if (this.open.get(id)?.content.changed) throw fsError('EBUSY');
    const ts = this.clock.tick();
    const t = this.now().toString();
    this.commit([
      {
        type: 'version',
        ts,
        node: id,
        version: {
          ...v,
          id: tsKey(ts),
          base: this.currentVersion(id)?.id ?? null,
          timeNs: t,
          replica: this.replica,
        },
      },
      this.set(id, { mtime: t, ctime: t }),
    ]);
  }

  // ---------------------------------------------------------------- sparse files and range copies

  /** SEEK_DATA / SEEK_HOLE on an open file: ENXIO at or past the end, and for `data` when only holes follow. */
  async seek(fh: number, offset: number, whence: 'data' | 'hole'): Promise<number> {
    const c = this.handle(fh).file.content;
    const at = await c.lock(async () => c.seek(offset, whence === 'data'));
    if (at < 0) throw fsError('ENXIO');
    return at;
  }

  /**
   * fallocate PUNCH_HOLE / ZERO_RANGE: [offset, offset+length) reads as zeros and is stored as a hole. The size grows
   * only without `keepSize`. Recorded like a write (a version at flush/fsync/release).
   */
  async zeroRange(fh: number, offset: number, length: number, keepSize: boolean): Promise<void> {
    const h = this.handle(fh);
    if (!h.write) throw fsError('EBADF');
    if (offset < 0 || length <= 0) throw fsError('EINVAL');
    const c = h.file.content;
    await c.lock(async () => {
      if (c.zero(offset, length, keepSize)) h.file.pendingMtime = this.now();
    });
  }

  /**
   * copy_file_range: copy up to `length` bytes (fewer at the source's end) from one open file to another, sharing the
   * source's chunk refs — whole chunks are never read or stored again. Returns the bytes copied. Ranges of one file
   * must not overlap (EINVAL, as Linux).
   */
  async copyRange(
    fhIn: number,
    offIn: number,
    fhOut: number,
    offOut: number,
    length: number,
  ): Promise<number> {
    const src = this.handle(fhIn);
    const dst = this.handle(fhOut);
    if (!dst.write || dst.append) throw fsError('EBADF');
    if (offIn < 0 || offOut < 0 || length < 0) throw fsError('EINVAL');
    if (src.file === dst.file && offIn < offOut + length && offOut < offIn + length) throw fsError('EINVAL');
    // Source and destination are locked one after the other, never both at once, so two opposite copies cannot
    // deadlock; like read+write, the copy is not atomic against concurrent writers.
    const sc = src.file.content;
    const slice = await sc.lock(async () => sc.slice(offIn, length));
    if (slice.length === 0) return 0;
    const dc = dst.file.content;
    await dc.lock(async () => {
      await dc.paste(offOut, slice);
      dst.file.pendingMtime = this.now();
    });
    return slice.length;
  }

  // ---------------------------------------------------------------- the past (restore of removed paths)

  /** The visible tree as it was at a wall-clock time (ns since the epoch); undefined if no history is that old. */
  pastAt(timeNs: bigint): PastTree | undefined {
    const cutoff = cutoffAt(this.db, timeNs);
    if (cutoff === undefined) return undefined;
    try {
      return new PastTree(this.db, cutoff, this.crdt.nodes(), this.crdt.truncatedBelow);
    } catch (err) {
      if (err instanceof RangeError) throw fsError('ENOENT', err.message);
      throw err;
    }
  }

  /**
   * A new file whose content is an existing version's chunk list (restore of a removed file): nothing is read or
   * stored again, the chunks are already on the remote. `source` undefined = empty. One transaction.
   */
  createFromVersion(
    dir: NodeId,
    name: string,
    mode: number,
    uid: number,
    gid: number,
    source: ContentVersion | undefined,
  ): Attr {
    const content = source !== undefined ? { size: source.size, chunks: source.chunks } : undefined;
    return this.commitNewFile(dir, name, mode, uid, gid, content);
  }

  // ---------------------------------------------------------------- whole-tree views (tests, fsck, bench)

  /** Visible paths → kind, for comparing replicas. */
  snapshot(): Map<string, { kind: FileKind; node: NodeId }> {
    const out = new Map<string, { kind: FileKind; node: NodeId }>();
    const walk = (dir: NodeId, prefix: string): void => {
      for (const e of this.readdir(dir)) {
        if (e.name === '.' || e.name === '..') continue;
        const path = `${prefix}/${e.name}`;
        out.set(path, { kind: e.kind, node: e.nodeId });
        if (e.kind === 'dir') walk(e.nodeId, path);
      }
    };
    walk(ROOT, '');
    return out;
  }

  /** Number of placed tree nodes (dirs + links + inodes + trash). */
  get nodeCount(): number {
    return this.crdt.size;
  }

  /** Check internal invariants (CRDT forest, indexes vs placements). Throws on the first violation. */
  verify(): void {
    this.crdt.verify();
    for (const [dir, m] of this.names) {
      let n = 0;
      let sub = 0;
      for (const [name, g] of m) {
        for (const id of typeof g === 'string' ? [g] : g) {
          const p = this.crdt.get(id);
          if (p?.parent !== dir || p.meta.n !== name) throw new Error(`name index stale for ${id}`);
          n++;
          if (p.meta.k === 'd') sub++;
        }
      }
      if (n !== this.crdt.childCount(dir)) throw new Error(`name index of ${dir} has ${n} entries`);
      if (sub !== this.subdirs.get(dir)) throw new Error(`subdir count of ${dir} is stale`);
    }
    if (this.links !== undefined) {
      let n = 0;
      for (const g of this.links.values()) n += typeof g === 'string' ? 1 : g.length;
      let real = 0;
      for (const [, p] of this.crdt.nodes()) if (p.meta.k === 'l') real++;
      if (n !== real) throw new Error(`link index has ${n} entries for ${real} links`);
    }
  }

  // ---------------------------------------------------------------- GC: log truncation, emptying trash

  /** Rows of the CRDT log (the untruncated suffix). */
  get logLength(): number {
    return this.crdt.logLength;
  }

  /** This replica's Lamport counter: every op it makes from now on has a larger one. */
  get clockCounter(): number {
    return this.clock.counter;
  }

  /**
   * Per replica, the largest op counter applied from it (this replica's own ops excluded). Batches of a replica are
   * applied in its seq order and its counters grow with its seqs, so every op of it up to there has been applied.
   */
  seenCounters(): Map<ReplicaId, number> {
    const m = new Map<ReplicaId, number>();
    for (const p of this.db.peers()) if (p.replica !== this.replica) m.set(p.replica, p.counter);
    // A checkpoint restore records peers without counters; the moves it applied were observed by the CRDT.
    for (const [r, ts] of this.crdt.latestSeen()) {
      if (r !== this.replica && m.has(r)) m.set(r, Math.max(m.get(r)!, ts.counter));
    }
    return m;
  }

  /** Was this node or inode emptied from trash by GC? */
  isPurged(id: NodeId): boolean {
    return this.db.isPurged(id);
  }

  /**
   * Mark versions of a file as pruned by retention (their chunks are about to be deleted): one replicated register
   * per version, so every replica's history stops offering them. Heads are never pruned by GC.
   */
  markPruned(inode: NodeId, versionIds: readonly string[]): void {
    const fresh = versionIds.filter((v) => this.reg(inode, `${PRUNED}${v}`) == null);
    if (fresh.length === 0 || this.getRegs(inode) === undefined) return;
    this.commit([this.set(inode, Object.fromEntries(fresh.map((v) => [`${PRUNED}${v}`, 1])))]);
  }

  /**
   * Truncate the CRDT log below `threshold` and empty trash there. The caller (sync's membership rule) guarantees that
   * no op with a timestamp below `threshold` will ever arrive again, and `knownToAll(ts)` that every replica able to
   * make ops has applied the op at `ts`. A trash entry is purged when the move that put it there is below the
   * threshold and known to all (then nobody can address it again: a replica that saw it in trash cannot name it),
   * it has no children, and no later move of it is logged. An inode goes with its last link — when no link node of
   * it remains anywhere and no handle here has it open (an unlinked-while-open file stays readable); one still open
   * is retried by the next call. Returns what it did; one transaction.
   */
  truncateBelow(threshold: Timestamp, knownToAll: (ts: Timestamp) => boolean): TruncateReport {
    if (this.closed) throw fsError('EIO', 'arbor is closed');
    const report: TruncateReport = {
      logBefore: this.db.logCount(),
      logAfter: 0,
      purgedNodes: 0,
      purgedInodes: 0,
      deferredOpen: 0,
    };
    this.db.tx(() => {
      const prev = this.crdt.truncatedBelow;
      if (prev === undefined || compareTimestamps(threshold, prev) > 0) {
        this.crdt.truncateLogBelow(threshold);
        this.db.logDeleteBelow(threshold.counter, threshold.replica);
        this.db.kvSet('truncated', JSON.stringify(threshold));
      }
      const stable = (ts: Timestamp): boolean =>
        compareTimestamps(ts, this.crdt.truncatedBelow ?? threshold) < 0 && knownToAll(ts);
      const logged = new Set<NodeId>();
      for (const e of this.crdt.log()) logged.add(e.op.child);
      const nodes: NodeId[] = [];
      const inodes = new Set<NodeId>(JSON.parse(this.db.kvGet('purgeDeferred') ?? '[]') as NodeId[]);
      for (const id of this.crdt.children(TRASH)) {
        const p = this.crdt.get(id)!;
        if (id === LOST_FOUND || logged.has(id) || this.crdt.childCount(id) > 0) continue;
        if (!stable({ counter: p.meta.t[0], replica: p.meta.t[1] })) continue;
        if (p.meta.k === 'd' && !this.regsStable(id, stable)) continue;
        nodes.push(id);
        if (p.meta.k === 'l' && p.meta.i !== undefined) inodes.add(p.meta.i);
      }
      const gone = new Set(nodes);
      for (const ch of this.crdt.purge(nodes)) {
        this.index(ch.node, ch.before, null);
        this.forget(ch.node);
        report.purgedNodes++;
      }
      const deferred: NodeId[] = [];
      for (const inode of inodes) {
        if (this.linksOf(inode).some((l) => !gone.has(l) && this.crdt.get(l) !== undefined)) continue;
        if (this.open.has(inode) || !this.regsStable(inode, stable)) {
          deferred.push(inode);
          continue;
        }
        this.forget(inode);
        report.purgedInodes++;
      }
      report.deferredOpen = deferred.length;
      this.db.kvSet('purgeDeferred', JSON.stringify(deferred));
      this.dirCache.delete(TRASH);
    });
    report.logAfter = this.db.logCount();
    return report;
  }

  /** Every register of the node was written by a stable op (no write still in flight can be lost with it). */
  private regsStable(id: NodeId, stable: (ts: Timestamp) => boolean): boolean {
    const r = this.getRegs(id);
    if (r === undefined) return true;
    for (const [field, reg] of Object.entries(r)) {
      if (field.startsWith('~')) continue;
      const [counter, replica] = reg as Reg;
      if (!stable({ counter, replica })) return false;
    }
    return true;
  }

  /** Drop a purged node's rows and caches. */
  private forget(id: NodeId): void {
    this.db.purgeNode(id);
    this.regs.delete(id);
    if (this.conflicted.delete(id)) this.db.kvSet('conflicted', JSON.stringify([...this.conflicted]));
    this.names.delete(id);
    this.subdirs.delete(id);
    this.dirCache.delete(id);
  }

  /** Flush nothing (callers release handles first); truncate the log if possible and close the database. */
  close(): void {
    if (this.closed) return;
    this.truncateStable();
    this.db.kvSet('clock', `${this.clock.counter} ${this.seq}`);
    this.closed = true;
    this.db.close();
  }
}

/**
 * Stored register form: fields grouped by the timestamp that wrote them ({g: [[counter, replica, {field: value}]]}),
 * since one op usually sets several fields; `h` holds the derived conflict heads.
 */
function encodeRegs(r: Regs): string {
  // Written for every changed node of every commit, so it allocates little: a node has a handful of fields and
  // timestamps, and a linear search of the groups beats keying a Map by a string built per field.
  const groups: Array<[number, string, Record<string, unknown>]> = [];
  for (const field in r) {
    const reg = r[field];
    if (field === '~h' || reg === undefined) continue;
    const [c, rep, value] = reg as [number, string, unknown];
    let g: [number, string, Record<string, unknown>] | undefined;
    for (const x of groups) {
      if (x[0] === c && x[1] === rep) {
        g = x;
        break;
      }
    }
    if (g === undefined) groups.push((g = [c, rep, {}]));
    g[2][field] = value;
  }
  return JSON.stringify(r['~h'] ? { g: groups, h: r['~h'] } : { g: groups });
}

/** Per-field last-writer-wins union of two register sets (conflict heads are derived: kept from `b`). */
function mergeRegs(a: Regs, b: Regs): Regs {
  const out: Regs = { ...a };
  for (const [field, reg] of Object.entries(b)) {
    if (field === '~h') continue;
    const r = reg as Reg;
    if (newer({ counter: r[0], replica: r[1] }, out[field] as Reg | undefined)) out[field] = r;
  }
  if (b['~h'] !== undefined) out['~h'] = b['~h'];
  return out;
}

function decodeRegs(text: string): Regs {
  const stored = JSON.parse(text) as {
    g: Array<[number, string, Record<string, unknown>]>;
    h?: ContentVersion[];
  };
  const r: Regs = {};
  for (const [c, rep, fields] of stored.g) {
    for (const [field, value] of Object.entries(fields)) r[field] = [c, rep, value] as Reg;
  }
  if (stored.h) r['~h'] = stored.h;
  return r;
}

/** Index of the first element of `sorted` (ascending by `key`) whose key is above `x`. */
function firstAbove<T>(sorted: readonly T[], x: number, key: (t: T) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(sorted[mid]!) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Local batches kept in memory for the next push (a remote that stays away longer makes pushes read SQLite). */
const RECENT_MAX = 20_000;

const hrBase = process.hrtime.bigint();
const wallBase = BigInt(Date.now()) * 1_000_000n;

function linkExtra(meta: TreeMeta): { i?: NodeId; f?: FileKind } | undefined {
  return meta.k === 'l' ? { i: meta.i!, f: meta.f ?? 'file' } : undefined;
}

function addTo(m: Map<string, string | string[]>, key: string, id: string): void {
  const g = m.get(key);
  if (g === undefined) m.set(key, id);
  else if (typeof g === 'string') {
    if (g !== id) m.set(key, [g, id]);
  } else if (!g.includes(id)) g.push(id);
}

function removeFrom(m: Map<string, string | string[]> | undefined, key: string, id: string): void {
  const g = m?.get(key);
  if (g === undefined) return;
  if (typeof g === 'string') {
    if (g === id) m!.delete(key);
    return;
  }
  const i = g.indexOf(id);
  if (i >= 0) g.splice(i, 1);
  if (g.length === 1) m!.set(key, g[0]!);
  else if (g.length === 0) m!.delete(key);
}
