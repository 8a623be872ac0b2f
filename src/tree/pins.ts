// Path pins (offline use): a pinned file or directory stays fully local — every chunk of the current version of every
// regular file under it is pinned in the chunk cache. Pins are kept by node id (a directory's node, a file's inode),
// so they follow renames; after every change to the tree (debounced) a reconcile walks the pinned subtrees and diffs
// the chunks they need against the ones pinned for them: new ones are pinned (and fetched), ones no current version
// needs any more are unpinned. Knows paths and the tree; the chunk store only sees counted pins of chunk refs.
import type { Database, Statement } from 'better-sqlite3';
import { isHole, type ChunkRef } from '../chunks/types.js';
import type { NodeId } from '../crdt/types.js';
import { InvalidInputError, fsError } from '../errors.js';
import { migrateTables } from '../util/sqlite-schema.js';
import type { FileTree } from './filetree.js';

/** What path pins need of the chunk store (CachedChunkStore's counted pins). */
export interface ChunkPinner {
  /** Count a pin on each ref — synchronously, before returning — then make them local (ENOSPC: cannot hold them). */
  pin(refs: readonly ChunkRef[], o?: { onLocal?: (ref: ChunkRef) => void }): Promise<void>;
  unpin(refs: readonly ChunkRef[]): void;
}

/** One pinned path as of the last reconcile. */
export interface PinnedPath {
  readonly node: NodeId;
  /** Its path when last reconciled (it follows renames). */
  readonly path: string;
  /** Regular files under it (a pinned file: 1). */
  readonly files: number;
  /** Plaintext bytes of the distinct chunks their current versions need. */
  readonly bytes: number;
}

export interface PinProgress {
  /** Chunks made local so far, of `totalChunks` missing ones (bytes likewise). */
  readonly doneChunks: number;
  readonly totalChunks: number;
  readonly doneBytes: number;
  readonly totalBytes: number;
}

export interface ReconcileReport {
  /** Chunks newly pinned and unpinned by this reconcile. */
  readonly pinned: number;
  readonly unpinned: number;
  /** Pins dropped because their node is no longer in the tree (removed). */
  readonly dropped: number;
  /** Why some needed chunks are not local (cache full, remote unreachable); undefined when all are. */
  readonly error?: unknown;
}

export interface PathPinsOptions {
  tree: FileTree;
  /** The connection the chunk store records its pins on (so both land in one transaction). */
  db: Database;
  store: ChunkPinner;
  /** One line about a background reconcile that could not make everything local. */
  log?: (line: string) => void;
  /** Wait this long after a change to the tree before reconciling (changes meanwhile join in). Default 1000. */
  debounceMs?: number;
  /** After an incomplete background reconcile, try again this much later. Default 60 000. */
  retryMs?: number;
}

/** The path pin tables and their migrations. */
const PIN_TABLES = {
  meta: 'path_pins_meta',
  what: 'path pin',
  // migrations[i] upgrades from version i to i+1 (append only)
  migrations: [
    `-- Pinned nodes (a directory's node id or a file's inode), with what the last reconcile found under them.
   CREATE TABLE path_pins (node TEXT PRIMARY KEY, path TEXT NOT NULL, files INTEGER NOT NULL,
                           bytes INTEGER NOT NULL) WITHOUT ROWID;
   -- Chunks pinned in the chunk store on behalf of path pins: each counted once there, however many files need it.
   CREATE TABLE path_pin_chunks (id TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;`,
  ],
};

/** What one walk of the pinned subtrees found. */
interface Wanted {
  refs: Map<string, ChunkRef>;
  pins: Map<NodeId, { path: string; files: number; bytes: number } | undefined>;
}

export class PathPins {
  private readonly tree: FileTree;
  private readonly db: Database;
  private readonly store: ChunkPinner;
  private readonly log: (line: string) => void;
  private readonly debounceMs: number;
  private readonly retryMs: number;
  /** Chunk ids pinned for path pins (the path_pin_chunks rows). */
  private readonly held = new Map<string, ChunkRef>();
  private readonly nodes = new Set<NodeId>();
  private readonly st: {
    addPin: Statement;
    deletePin: Statement;
    updatePin: Statement;
    addChunk: Statement;
    deleteChunk: Statement;
  };
  private offCommit: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A change to the tree since the last reconcile began. */
  private dirty = false;
  /** The running reconcile (they never overlap). */
  private running: Promise<ReconcileReport> | undefined;
  private closed = false;

  constructor(o: PathPinsOptions) {
    this.tree = o.tree;
    this.db = o.db;
    this.store = o.store;
    this.log = o.log ?? (() => undefined);
    this.debounceMs = o.debounceMs ?? 1000;
    this.retryMs = o.retryMs ?? 60_000;
    migrateTables(this.db, PIN_TABLES);
    this.st = {
      addPin: this.db.prepare(
        'INSERT OR IGNORE INTO path_pins (node, path, files, bytes) VALUES (?, ?, 0, 0)',
      ),
      deletePin: this.db.prepare('DELETE FROM path_pins WHERE node = ?'),
      updatePin: this.db.prepare('UPDATE path_pins SET path = ?, files = ?, bytes = ? WHERE node = ?'),
      addChunk: this.db.prepare('INSERT OR REPLACE INTO path_pin_chunks (id, size) VALUES (?, ?)'),
      deleteChunk: this.db.prepare('DELETE FROM path_pin_chunks WHERE id = ?'),
    };
    for (const r of this.db.prepare('SELECT node FROM path_pins').all() as { node: string }[])
      this.nodes.add(r.node);
    for (const r of this.db.prepare('SELECT id, size FROM path_pin_chunks').all() as ChunkRef[])
      this.held.set(r.id, { id: r.id, size: r.size });
    this.listen();
  }

  /** Pinned paths as of the last reconcile, by path. */
  list(): PinnedPath[] {
    return (
      this.db.prepare('SELECT node, path, files, bytes FROM path_pins ORDER BY path').all() as PinnedPath[]
    ).map((r) => ({ ...r }));
  }

  /** Is this node pinned itself (not just inside a pinned directory)? */
  isPinned(node: NodeId): boolean {
    return this.nodes.has(node);
  }

  /**
   * Pin a directory (recursively) or file and make it local. All or nothing: if its chunks cannot all be made local
   * (ENOSPC: the cache cannot hold them beside what is pinned and dirty already; the remote unreachable), the pin is
   * not kept and the chunks it alone needed are unpinned again; the error is thrown.
   */
  async pin(node: NodeId, onProgress?: (p: PinProgress) => void): Promise<PinnedPath> {
    if (this.closed) throw fsError('EIO', 'arbor is closed');
    const path = this.tree.pathOf(node);
    if (path === undefined)
      throw new InvalidInputError(
        'only files and directories in the tree can be pinned (not a conflict copy)',
      );
    const fresh = !this.nodes.has(node);
    if (fresh) {
      this.st.addPin.run(node, path);
      this.nodes.add(node);
      this.listen();
    }
    const r = await this.reconcile(onProgress);
    if (r.error !== undefined) {
      if (fresh) {
        this.st.deletePin.run(node);
        this.nodes.delete(node);
        const undo = await this.reconcile();
        if (undo.error !== undefined) this.log(`undoing the pin of ${path}: ${String(undo.error)}`);
        this.listen();
      }
      throw r.error;
    }
    const row = this.list().find((p) => p.node === node);
    if (row === undefined) throw fsError('ENOENT', `${path} was removed while it was being pinned`);
    return row;
  }

  /** Stop pinning a node; its chunks become evictable unless another pin needs them. False if it was not pinned. */
  async unpin(node: NodeId): Promise<boolean> {
    if (!this.nodes.has(node)) return false;
    this.st.deletePin.run(node);
    this.nodes.delete(node);
    const r = await this.reconcile();
    this.listen();
    if (r.error !== undefined) throw r.error;
    return true;
  }

  /**
   * Walk the pinned subtrees and diff: pin (and fetch) the chunks their current versions need that are not pinned
   * for them yet, unpin the ones no longer needed. Runs after any reconcile in progress. Never throws for missing
   * chunks: the report says why some are not local.
   */
  reconcile(onProgress?: (p: PinProgress) => void): Promise<ReconcileReport> {
    const prev = (this.running ?? Promise.resolve()).catch(() => undefined);
    const p = prev.then(() => this.reconcileNow(onProgress));
    this.running = p;
    p.finally(() => {
      if (this.running === p) this.running = undefined;
    }).catch(() => undefined);
    return p;
  }

  private async reconcileNow(onProgress?: (p: PinProgress) => void): Promise<ReconcileReport> {
    this.dirty = false;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.nodes.size === 0 && this.held.size === 0) return { pinned: 0, unpinned: 0, dropped: 0 };
    const w = this.walk();
    const toPin = [...w.refs.values()].filter((r) => !this.held.has(r.id));
    const toUnpin = [...this.held.values()].filter((r) => !w.refs.has(r.id));
    let dropped = 0;
    let fetching: Promise<void> = Promise.resolve();
    const progress = {
      doneChunks: 0,
      totalChunks: toPin.length,
      doneBytes: 0,
      totalBytes: toPin.reduce((n, r) => n + r.size, 0),
    };
    // The store's counts and these tables change in one transaction: a crash leaves them in step.
    this.db.transaction(() => {
      for (const [node, found] of w.pins) {
        if (found === undefined) {
          this.st.deletePin.run(node);
          this.nodes.delete(node);
          dropped++;
        } else this.st.updatePin.run(found.path, found.files, found.bytes, node);
      }
      for (const r of toUnpin) this.st.deleteChunk.run(r.id);
      if (toUnpin.length > 0) this.store.unpin(toUnpin);
      for (const r of toPin) this.st.addChunk.run(r.id, r.size);
      if (toPin.length > 0) {
        fetching = this.store.pin(toPin, {
          onLocal: (r) => {
            progress.doneChunks++;
            progress.doneBytes += r.size;
            onProgress?.({ ...progress });
          },
        });
      }
    })();
    for (const r of toUnpin) this.held.delete(r.id);
    for (const r of toPin) this.held.set(r.id, r);
    if (dropped > 0) this.listen();
    try {
      await fetching;
    } catch (err) {
      return { pinned: toPin.length, unpinned: toUnpin.length, dropped, error: err };
    }
    return { pinned: toPin.length, unpinned: toUnpin.length, dropped };
  }

  /** The chunks every pinned node needs now, and what each one holds (undefined: no longer in the tree). */
  private walk(): Wanted {
    const refs = new Map<string, ChunkRef>();
    const pins: Wanted['pins'] = new Map();
    for (const node of this.nodes) {
      const path = this.tree.pathOf(node);
      if (path === undefined) {
        pins.set(node, undefined);
        continue;
      }
      const mine = new Map<string, number>();
      let files = 0;
      const file = (id: NodeId): void => {
        files++;
        for (const c of this.tree.contentOf(id)?.chunks ?? []) {
          if (isHole(c)) continue;
          mine.set(c.id, c.size);
          if (!refs.has(c.id)) refs.set(c.id, c);
        }
      };
      if (!this.tree.isDirectory(node)) {
        if (this.tree.getattr(node).kind === 'file') file(node);
      } else {
        const dirs = [node];
        for (let d = dirs.pop(); d !== undefined; d = dirs.pop()) {
          for (const e of this.tree.readdir(d)) {
            if (e.name === '.' || e.name === '..') continue;
            if (e.kind === 'dir') dirs.push(e.nodeId);
            else if (e.kind === 'file') file(e.nodeId);
          }
        }
      }
      let bytes = 0;
      for (const size of mine.values()) bytes += size;
      pins.set(node, { path, files, bytes });
    }
    return { refs, pins };
  }

  /** Follow the tree's commits only while something is pinned: with no pins, changes cost nothing here. */
  private listen(): void {
    const want = !this.closed && (this.nodes.size > 0 || this.held.size > 0);
    if (want && this.offCommit === undefined) {
      this.offCommit = this.tree.onCommit(() => this.changed());
    } else if (!want && this.offCommit !== undefined) {
      this.offCommit();
      this.offCommit = undefined;
    }
  }

  /** A commit (a local operation, a version recorded, a remote batch): reconcile a little later. */
  private changed(): void {
    this.dirty = true;
    this.schedule(this.debounceMs);
  }

  /** Reconcile soon: after opening a mount (a crash may have left the pins behind the tree) or a change. */
  schedule(ms = this.debounceMs): void {
    if (this.closed || this.timer !== undefined) return;
    this.dirty = true;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reconcile().then(
        (r) => {
          if (r.error === undefined || this.closed) return;
          this.log(`pinned paths are not all local: ${errorText(r.error)}; retrying later`);
          this.schedule(this.retryMs);
        },
        (err: unknown) => this.log(`reconciling pinned paths: ${errorText(err)}`),
      );
    }, ms);
    this.timer.unref();
  }

  /** Finish: a change not reconciled yet is, now (a one-shot command's put or pull pins its new content here). */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const r = this.dirty ? await this.reconcile() : await (this.running ?? Promise.resolve(undefined));
    if (r?.error !== undefined) this.log(`pinned paths are not all local: ${errorText(r.error)}`);
    this.closed = true;
    // A commit while that ran scheduled another: the tree closes next, so it would find nothing to walk.
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.listen();
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
