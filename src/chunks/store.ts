// The real ChunkStore: a bounded local cache of encrypted chunk files indexed in SQLite, fetching from and uploading
// to a Remote. Knows nothing of files, inodes or the tree (only chunk refs), nor of which backend the Remote is.
import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { open, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { ChunkCorruptError, InvalidInputError, RemoteNotFoundError, fsError } from '../errors.js';
import type { Remote } from '../remote/types.js';
import { migrateTables } from '../util/sqlite-schema.js';
import { accel, copyBytes } from './accel.js';
import { Chunker } from './chunker.js';
import { type Compression, FsCrypto, SEAL_OVERHEAD } from './crypto.js';
import { blake3Implementation, type ChunkIdAlgorithm } from './chunk-id.js';
import { cacheFilePath, cacheTempPath, madeCacheFilePath } from './cache-files.js';
import { type FetchedOutcome } from './fetched.js';
import { SealPool } from './seal-pool.js';
import { SharedBufferPool } from './shared-pool.js';
import type { ChunkingParams, ChunkRef, ChunkStore } from './types.js';

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;

/** The chunk_* tables; append a migration when they change. */
const CHUNK_TABLES = {
  meta: 'chunk_meta',
  what: 'chunk index',
  migrations: [
    `
      CREATE TABLE IF NOT EXISTS chunk_cache (
        id TEXT PRIMARY KEY,      -- keyed chunk id, hex
        size INTEGER NOT NULL,    -- plaintext bytes
        stored INTEGER NOT NULL,  -- encrypted bytes in the cache file
        uploaded INTEGER NOT NULL,-- 1 once on the remote; 0 = dirty (the upload queue)
        resident INTEGER NOT NULL,-- 1 while a cache file holds it
        last_use INTEGER NOT NULL,-- logical clock, for LRU across restarts
        seq INTEGER               -- put order, for upload order
      );
      CREATE INDEX IF NOT EXISTS chunk_cache_dirty ON chunk_cache (uploaded, seq);
      CREATE TABLE IF NOT EXISTS chunk_pins (id TEXT PRIMARY KEY, count INTEGER NOT NULL);
    `,
  ],
};

/** The smallest cache limit a store accepts with these chunking parameters: room for two maximal sealed chunks. */
export function minCacheBytes(chunking: ChunkingParams): number {
  return 2 * (chunking.maxSize + SEAL_OVERHEAD);
}

/** Version of the chunk_* tables. */
export const CHUNK_SCHEMA_VERSION = CHUNK_TABLES.migrations.length;

export type Logger = (line: string) => void;

/** The default logger: one line on stderr with a prefix. Libraries stay quiet otherwise. */
export const stderrLogger: Logger = (line) => {
  process.stderr.write(`arbor chunks: ${line}\n`);
};

export interface CachedChunkStoreOptions {
  /** The arbor directory; chunk files live in `<dir>/cache/<2 hex>/<id>`. */
  dir: string;
  /** state.sqlite3, owned by the caller (state/); this store creates and uses only `chunk_*` tables. */
  db: Database;
  remote: Remote;
  /** The 32-byte filesystem secret. */
  secret: Uint8Array;
  /** The filesystem's chunk id algorithm (arbor.json `chunkId`). Default DEFAULT_CHUNK_ID. */
  chunkId?: ChunkIdAlgorithm;
  chunking: ChunkingParams;
  /** Resident cache bytes (encrypted chunk files) never exceed this. Must hold at least two maximal chunks. */
  cacheLimitBytes: number;
  /** Compression before encryption for new chunks. Default 'deflate' (skipped per chunk when it does not pay). */
  compression?: Compression;
  /** Parallel uploads. Default 4. */
  uploadConcurrency?: number;
  /** Parallel readahead fetches. Default 4. */
  fetchConcurrency?: number;
  /**
   * Make new dirty chunk files durable when `sync()` is called (fsync of each file written since the last sync, then
   * of their directories). Default true; tests may turn it off (sync() is then a no-op). put() itself never fsyncs:
   * durability is owed at the user's fsync/fsyncdir/syncfs, and paying it per chunk made every write wait on the disk.
   */
  fsync?: boolean;
  /**
   * Worker threads that hash and seal large chunks, so the thread answering requests is not busy with them.
   * Default: one less than the cores, 1 to 2; 0 seals everything on the calling thread.
   */
  sealThreads?: number;
  /** Upload retry backoff: first delay and cap in ms (jittered, doubling). Default 200 ms .. 30 s. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  logger?: Logger;
}

export interface ChunkStoreStats {
  cacheLimitBytes: number;
  /** Bytes of chunk files in the cache (encrypted sizes), plus space reserved for files being written. */
  residentBytes: number;
  residentChunks: number;
  /** Bytes of chunks not uploaded yet. */
  dirtyBytes: number;
  pendingUploads: number;
  /** Bytes of resident chunks held by explicit pins. */
  pinnedBytes: number;
  /** Highest residentBytes seen since open (for the overshoot bench). */
  peakResidentBytes: number;
}

interface Entry {
  readonly id: string;
  readonly size: number;
  readonly stored: number;
  uploaded: boolean;
  /** Transient: readers/uploaders currently using the file. */
  inUse: number;
}

/** Below this size a chunk is hashed and sealed inline (a thread round trip would cost more than the work). */
const INLINE_BELOW = 64 * 1024;

/**
 * Uploads yield to a streaming writer: while chunks are being put, upload workers wait until the puts stop or this
 * much (at most a quarter of the cache) is dirty. Uploading while a writer streams competed with it for the same
 * cores (a dir remote on the local disk cost ~2 CPU-s per GiB in writes and fsyncs on libuv's threads); a disk
 * filesystem's writeback likewise lets dirty data age before writing it. Never while anyone waits for an upload
 * (flushUploads, whenUploaded: sync's pushes) or for cache space (back-pressure), and never past this bound.
 */
const DEFER_UPLOADS_BYTES = 1024 * 1024 * 1024;

/**
 * Parked uploads resume only after puts have been quiet this long: a sequential writer's puts leave short gaps (the
 * next chunk is still being cut) that would otherwise let an upload start and compete with it.
 */
const UPLOAD_QUIET_MS = 250;

/**
 * Verified plaintext of readahead fetches that no reader has asked for yet is kept (up to this much, oldest dropped
 * first) where the seal worker decrypted it, and copied out by the first get() of the chunk: no read back of the
 * cache file just written — on a 2-core machine reading from a local RGW, the cache path's own CPU per MiB is what
 * separates it from plain GETs.
 */
const READAHEAD_HOLD_LIMIT = 32 * 1024 * 1024;

/** Unused fetch buffers kept for reuse (see SharedBufferPool): enough for the readahead and the held bytes. */
const FETCH_POOL_BYTES = 48 * 1024 * 1024;

/** The pooled buffer a fetch's bytes are in; returned to the pool when the fetch's `refs` drops to 0. */
interface FetchBuffer {
  buf: Buffer | undefined;
}

/**
 * One fetch of a chunk from the remote: GET into a pooled shared buffer, then (on a seal worker) cache file write,
 * in place decryption and verification. Readers join it and copy the plaintext out.
 */
interface Inflight extends FetchBuffer {
  /** Settles when the GET has finished (either way): a readahead slot is busy only that long. */
  readonly got: Promise<void>;
  /** The verified plaintext (a view of `buf`, or its own buffer for a compressed chunk); rejects as the fetch did. */
  readonly opened: Promise<Uint8Array>;
  /** Settles with `opened`: by then the cache file is written and indexed, or was skipped. */
  readonly written: Promise<void>;
  /** Users of `buf`: the fetch itself until it is opened (or the readahead hold after), and each reader copying out. */
  refs: number;
  /** A reader joined (or started) this fetch: readahead need not hold its plaintext afterwards. */
  wanted: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const noop = (): void => undefined;

/** A reader's own copy of plaintext that lives in a pooled buffer (or is shared with other readers). */
function copyOut(plain: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(plain.length);
  copyBytes(out, 0, plain);
  return out;
}

export class CachedChunkStore implements ChunkStore {
  readonly chunking: ChunkingParams;
  private readonly chunker: Chunker;
  private readonly crypto: FsCrypto;
  private readonly sealer: SealPool;
  private readonly cacheDir: string;
  private readonly limit: number;
  private readonly compression: Compression;
  private readonly uploadConcurrency: number;
  private readonly fetchConcurrency: number;
  private readonly fsync: boolean;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly log: Logger;
  private readonly remote: Remote;
  private readonly db: Database;

  /** Resident chunks in least-recently-used-first order (Map keeps insertion order; touch = delete + set). */
  private readonly lru = new Map<string, Entry>();
  /** Explicit (path) pin counts by id, resident or not. */
  private readonly pins = new Map<string, number>();
  private resident = 0;
  private reserved = 0;
  private peak = 0;
  private dirtyBytes = 0;
  private readonly madeDirs = new Set<string>();
  /** Dirty chunk files written since the last sync() (ids), and the cache subdirectories that gained entries. */
  private unsynced = new Set<string>();
  private unsyncedDirs = new Set<string>();

  private readonly inflight = new Map<string, Inflight>();
  private readonly putsInflight = new Map<string, Promise<ChunkRef>>();
  private readonly prefetchQueue: ChunkRef[] = [];
  /** Ids in prefetchQueue: repeated hints (a reader re-announcing its window) are merged, not queued twice. */
  private readonly prefetchQueued = new Set<string>();
  private prefetchActive = 0;
  /** Readahead plaintext no reader has taken yet (see READAHEAD_HOLD_LIMIT); Map order = age. */
  private readonly ahead = new Map<string, { f: Inflight; plain: Uint8Array }>();
  private readonly fetchPool = new SharedBufferPool(FETCH_POOL_BYTES);
  private aheadBytes = 0;
  /** Fetched chunks whose cache file is still being written; readahead waits when there are too many. */
  private writesPending = 0;

  /** Dirty ids waiting for upload, oldest first; `uploading` holds the ones being sent. */
  private readonly uploadQueue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly uploading = new Set<string>();
  private uploadWorkers = 0;
  private readonly uploadWaiters = new Map<string, { resolve: () => void; reject: (e: Error) => void }[]>();
  private flushWaiters: (() => void)[] = [];
  private spaceWaiters: (() => void)[] = [];
  /** put() calls in progress, and upload workers parked while they last (see DEFER_UPLOADS_BYTES). */
  private putsActive = 0;
  private lastPutEnd = 0;
  private quietTimer: NodeJS.Timeout | undefined;
  private parkedUploads: (() => void)[] = [];
  private readonly sleepers = new Set<() => void>();

  private clock = 0;
  /** Next put sequence number (upload order survives restarts). */
  private seq = 1;
  private readonly touched = new Set<string>();
  private touchTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private readonly st: {
    insert: Statement;
    markUploaded: Statement;
    markEvicted: Statement;
    deleteRow: Statement;
    touch: Statement;
    row: Statement;
    setPin: Statement;
    deletePin: Statement;
  };

  private constructor(opts: CachedChunkStoreOptions) {
    this.chunker = new Chunker(opts.chunking);
    this.chunking = this.chunker.params;
    this.crypto = new FsCrypto(opts.secret, opts.chunkId);
    this.cacheDir = join(opts.dir, 'cache');
    this.limit = opts.cacheLimitBytes;
    this.compression = opts.compression ?? 'deflate';
    this.uploadConcurrency = Math.max(1, opts.uploadConcurrency ?? 4);
    this.fetchConcurrency = Math.max(1, opts.fetchConcurrency ?? 4);
    this.fsync = opts.fsync ?? true;
    this.retryBaseMs = opts.retryBaseMs ?? 200;
    this.retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.log = opts.logger ?? stderrLogger;
    this.remote = opts.remote;
    this.db = opts.db;
    const minLimit = minCacheBytes(this.chunking);
    if (!Number.isSafeInteger(this.limit) || this.limit < minLimit) {
      throw new InvalidInputError(`cache limit must be at least ${minLimit} bytes (two maximal chunks)`);
    }
    migrateTables(this.db, CHUNK_TABLES);
    const db = this.db;
    this.st = {
      insert: db.prepare(
        `INSERT INTO chunk_cache (id, size, stored, uploaded, resident, last_use, seq)
         VALUES (@id, @size, @stored, @uploaded, 1, @lastUse, @seq)
         ON CONFLICT(id) DO UPDATE SET stored = excluded.stored, resident = 1, last_use = excluded.last_use,
           uploaded = max(uploaded, excluded.uploaded)`,
      ),
      markUploaded: db.prepare('UPDATE chunk_cache SET uploaded = 1 WHERE id = ?'),
      markEvicted: db.prepare('UPDATE chunk_cache SET resident = 0 WHERE id = ?'),
      deleteRow: db.prepare('DELETE FROM chunk_cache WHERE id = ?'),
      touch: db.prepare('UPDATE chunk_cache SET last_use = ? WHERE id = ?'),
      row: db.prepare('SELECT uploaded, resident FROM chunk_cache WHERE id = ?'),
      setPin: db.prepare(
        'INSERT INTO chunk_pins (id, count) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET count = excluded.count',
      ),
      deletePin: db.prepare('DELETE FROM chunk_pins WHERE id = ?'),
    };
    if (
      this.crypto.chunkIdAlgorithm === 'blake3' &&
      blake3Implementation === 'js' &&
      !process.env.ARBOR_NO_NATIVE
    ) {
      // Silent, this cost a sequential write ~6 CPU-s per GiB (the TypeScript BLAKE3 is ~15x slower): say so once.
      this.log(
        'native BLAKE3 (@napi-rs/blake-hash) did not load: chunk ids use the TypeScript fallback, ~15x slower ' +
          '(is the package installed? npm install)',
      );
    }
    // Last: nothing above may throw once worker threads exist.
    const threads = opts.sealThreads ?? Math.max(1, Math.min(2, availableParallelism() - 1));
    this.sealer = new SealPool(this.crypto, opts.secret, threads, this.cacheDir);
  }

  /** Open (or create) the cache: create tables, load the index, reconcile it with the files, resume uploads. */
  static async open(opts: CachedChunkStoreOptions): Promise<CachedChunkStore> {
    const s = new CachedChunkStore(opts);
    try {
      s.reconcile();
      s.shrinkToLimit();
    } catch (err) {
      await s.sealer.close();
      throw err;
    }
    s.touchTimer = setInterval(() => s.flushTouches(), 2000);
    s.touchTimer.unref();
    s.pumpUploads();
    return s;
  }

  split(data: Uint8Array, final: boolean): number[] {
    return this.chunker.split(data, final);
  }

  // ---- index and files -------------------------------------------------------------------------------------

  private path(id: string): string {
    return cacheFilePath(this.cacheDir, id);
  }

  /**
   * Make the in-memory index agree with the files: orphan and temp files are removed; index rows whose file is
   * missing or has the wrong size are dropped (uploaded ones are simply refetched later). Contents are verified on
   * every read, so a file that is present but corrupt is caught then and refetched.
   */
  private reconcile(): void {
    mkdirSync(this.cacheDir, { recursive: true });
    // Before any subdirectory exists: they (and so the chunk files' inodes) then land in block groups of their own,
    // not in the parent's group among other programs' short-lived files, whose recent deletions ext4 without a
    // journal makes every inode allocation there step over (see markTopDir in native/accel/accel.c).
    accel?.markTopDir?.(this.cacheDir);
    const rows = this.db
      .prepare('SELECT id, size, stored, uploaded FROM chunk_cache WHERE resident = 1 ORDER BY last_use, seq')
      .all() as { id: string; size: number; stored: number; uploaded: number }[];
    const want = new Map(rows.map((r) => [r.id, r]));
    const found = new Map<string, number>();
    for (const sub of readdirSync(this.cacheDir)) {
      const subdir = join(this.cacheDir, sub);
      let names: string[];
      try {
        names = readdirSync(subdir);
      } catch {
        unlinkSync(subdir);
        continue;
      }
      this.madeDirs.add(sub);
      for (const name of names) {
        const p = join(subdir, name);
        if (!want.has(name) || name.slice(0, 2) !== sub) {
          unlinkSync(p); // orphan or interrupted temp file
          continue;
        }
        found.set(name, statSync(p).size);
      }
    }
    const maxRow = this.db.prepare('SELECT max(last_use) AS m, max(seq) AS s FROM chunk_cache').get() as {
      m: number | null;
      s: number | null;
    };
    this.clock = (maxRow.m ?? 0) + 1;
    this.seq = (maxRow.s ?? 0) + 1;
    const fix = this.db.transaction(() => {
      for (const r of rows) {
        const size = found.get(r.id);
        if (size === r.stored) {
          const e: Entry = { id: r.id, size: r.size, stored: r.stored, uploaded: r.uploaded === 1, inUse: 0 };
          this.lru.set(r.id, e);
          this.resident += r.stored;
          if (!e.uploaded) {
            this.dirtyBytes += r.stored;
            this.enqueueUpload(r.id);
          }
          continue;
        }
        if (size !== undefined) unlinkSync(this.path(r.id));
        if (r.uploaded === 1) {
          this.st.markEvicted.run(r.id);
        } else {
          // A dirty chunk whose only copy is gone cannot be uploaded; say so once, loudly.
          this.log(
            `dirty chunk ${r.id} is missing or damaged in the cache and was never uploaded; it is lost`,
          );
          this.st.deleteRow.run(r.id);
        }
      }
    });
    fix();
    // Keep the upload order of the original puts (rows come in LRU order above).
    const order = this.db
      .prepare('SELECT id FROM chunk_cache WHERE uploaded = 0 AND resident = 1 ORDER BY seq')
      .all() as {
      id: string;
    }[];
    this.uploadQueue.length = 0;
    for (const { id } of order) if (this.queued.has(id)) this.uploadQueue.push(id);
    for (const r of this.db.prepare('SELECT id, count FROM chunk_pins').all() as {
      id: string;
      count: number;
    }[]) {
      this.pins.set(r.id, r.count);
    }
    this.peak = this.resident;
  }

  private touch(e: Entry): void {
    this.lru.delete(e.id);
    this.lru.set(e.id, e);
    this.touched.add(e.id);
  }

  /** Persist recency in one transaction now and then (per-read writes would cost more than the reads). */
  private flushTouches(): void {
    if (this.touched.size === 0) return;
    const ids = [...this.touched];
    this.touched.clear();
    const tx = this.db.transaction(() => {
      for (const id of ids) if (this.lru.has(id)) this.st.touch.run(this.clock++, id);
    });
    tx();
  }

  private evictable(e: Entry): boolean {
    return e.uploaded && e.inUse === 0 && !this.pins.has(e.id);
  }

  /**
   * Reserve `n` bytes, evicting uploaded unpinned chunks LRU-first. Returns false if that cannot make room now.
   * Synchronous (unlinkSync) so the accounting never sees a moment above the limit.
   */
  private tryReserve(n: number): boolean {
    if (this.resident + this.reserved + n <= this.limit) {
      this.reserved += n;
      return true;
    }
    let need = this.resident + this.reserved + n - this.limit;
    const victims: Entry[] = [];
    for (const e of this.lru.values()) {
      if (!this.evictable(e)) continue;
      victims.push(e);
      need -= e.stored;
      if (need <= 0) break;
    }
    if (need > 0) return false;
    for (const e of victims) this.evict(e);
    this.reserved += n;
    return true;
  }

  /** After open with a smaller limit than last time: evict what can be evicted (dirty chunks wait for uploads). */
  private shrinkToLimit(): void {
    for (const e of [...this.lru.values()]) {
      if (this.resident <= this.limit) break;
      if (this.evictable(e)) this.evict(e);
    }
  }

  private evict(e: Entry): void {
    try {
      unlinkSync(this.path(e.id));
    } catch {
      // already gone: the accounting below is what matters
    }
    this.lru.delete(e.id);
    this.touched.delete(e.id);
    this.resident -= e.stored;
    this.st.markEvicted.run(e.id);
  }

  /** Reserve for a dirty chunk: wait for uploads (back-pressure) rather than overshoot the limit. */
  private async reserveBlocking(n: number): Promise<void> {
    while (!this.tryReserve(n)) {
      const someoneCanFree =
        this.dirtyBytes > 0 || this.reserved > 0 || [...this.lru.values()].some((e) => e.inUse > 0);
      if (!someoneCanFree) {
        throw fsError(
          'ENOSPC',
          'the chunk cache is full of pinned chunks (unpin a path or raise the cache size)',
        );
      }
      const freed = new Promise<void>((r) => this.spaceWaiters.push(r));
      this.wakeUploads(); // back-pressure: parked uploads are what frees space
      await freed;
    }
  }

  private spaceChanged(): void {
    const w = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const r of w) r();
  }

  private release(n: number): void {
    this.reserved -= n;
    this.spaceChanged();
  }

  private noteResident(): void {
    const r = this.resident + this.reserved;
    if (r > this.peak) this.peak = r;
  }

  /** The cache file path of `id`, its `<2 hex>` directory created if this store has not yet. */
  private pathMade(id: string): string {
    return madeCacheFilePath(this.cacheDir, id, this.madeDirs);
  }

  /**
   * Write a cache file under a temp name, then rename it into place: a file with its final name is always whole after
   * a process crash (a torn temp file is removed by reconcile). Nothing is fsynced here; see sync().
   */
  private async writeFile(id: string, bytes: Uint8Array): Promise<void> {
    const p = this.pathMade(id);
    const tmp = cacheTempPath(p);
    try {
      await writeFile(tmp, bytes, { mode: 0o600 });
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await rename(tmp, p);
  }

  /**
   * Make every dirty chunk put so far durable: fsync each chunk file written since the last sync, then the
   * directories their names were added to. Called at the user's durability points (fsync, fsyncdir, close) before
   * the ops that reference the chunks are made durable. A file gone meanwhile (uploaded and evicted, or dropped) is
   * skipped: it no longer needs the local copy.
   */
  async sync(): Promise<void> {
    if (!this.fsync || this.unsynced.size === 0) return;
    const ids = [...this.unsynced];
    const dirs = [...this.unsyncedDirs];
    this.unsynced = new Set();
    this.unsyncedDirs = new Set();
    try {
      await forEachLimited(ids, 8, (id) => fsyncPath(this.path(id)));
      await forEachLimited(dirs, 8, (sub) => fsyncPath(join(this.cacheDir, sub)));
    } catch (err) {
      // Not durable after all: the next sync tries them again.
      for (const id of ids) this.unsynced.add(id);
      for (const d of dirs) this.unsyncedDirs.add(d);
      throw err;
    }
  }

  // ---- put -------------------------------------------------------------------------------------------------

  async put(chunk: Uint8Array): Promise<ChunkRef> {
    this.putsActive++;
    try {
      return await this.putChunk(chunk);
    } finally {
      if (--this.putsActive === 0) {
        this.lastPutEnd = performance.now();
        this.wakeAfterQuiet();
      }
    }
  }

  private async putChunk(chunk: Uint8Array): Promise<ChunkRef> {
    if (chunk.length > this.chunking.maxSize) {
      throw new InvalidInputError(`chunk of ${chunk.length} bytes exceeds maxSize ${this.chunking.maxSize}`);
    }
    if (chunk.length < INLINE_BELOW || !this.sealer.offloads) {
      // Small chunk: hash first, and seal only if it is new.
      const id = this.crypto.chunkId(chunk);
      return (
        this.known(id, chunk.length) ??
        this.putOnce(id, chunk.length, () => this.crypto.sealChunk(id, chunk, this.compression))
      );
    }
    return this.putOffloaded(chunk);
  }

  /**
   * Large chunk: a worker hashes, seals and writes its cache file, unless a file of that name exists (a duplicate's
   * sealing is wasted there, not here). Room for the largest possible sealed size is reserved first, so the cache
   * never holds more than its limit even for a moment; the index learns of the file only after it is whole.
   */
  private async putOffloaded(chunk: Uint8Array): Promise<ChunkRef> {
    const size = chunk.length;
    const reservation = size + SEAL_OVERHEAD;
    await this.reserveBlocking(reservation);
    this.noteResident();
    let holding = true;
    const unreserve = (): void => {
      if (holding) this.release(reservation);
      holding = false;
    };
    try {
      let r = await this.sealer.sealToCache(chunk, this.compression);
      let waited = false;
      for (;;) {
        const known = this.known(r.id, size);
        if (known !== undefined) {
          // Stored meanwhile by another put or a fetch (same bytes, same name), or on the remote and not resident:
          // a file this put wrote that the index does not list goes again.
          if (
            r.stored > 0 &&
            !this.lru.has(r.id) &&
            !this.inflight.has(r.id) &&
            !this.putsInflight.has(r.id)
          ) {
            try {
              unlinkSync(this.path(r.id));
            } catch {
              // gone already
            }
          }
          unreserve();
          return await known;
        }
        if (r.stored > 0) break;
        // A file with this name existed but the index does not list it: a fetch still writing it (wait for it), or
        // one evicted since the worker looked (write it for real).
        const fetching = waited ? undefined : this.inflight.get(r.id);
        waited = true;
        if (fetching) await fetching.written;
        else r = await this.sealer.sealToCache(chunk, this.compression, true);
      }
      // The reservation shrinks to what was written; adopt() moves that from reserved to resident.
      this.reserved -= reservation - r.stored;
      holding = false;
      this.spaceChanged();
      return this.adopt(r.id, size, r.stored);
    } finally {
      unreserve();
    }
  }

  /** The ref (or the put in flight) if this chunk needs no new cache file; undefined if it must be stored. */
  private known(id: string, size: number): ChunkRef | Promise<ChunkRef> | undefined {
    const ref: ChunkRef = { id, size };
    const e = this.lru.get(id);
    if (e) {
      this.touch(e);
      return ref;
    }
    const pending = this.putsInflight.get(id);
    if (pending) return pending;
    const row = this.st.row.get(id) as { uploaded: number; resident: number } | undefined;
    if (row && row.uploaded === 1) return ref; // durable on the remote already; nothing to write
    return undefined;
  }

  /** Store a new chunk once: concurrent puts of the same bytes share this one. */
  private async putOnce(id: string, size: number, seal: () => Uint8Array): Promise<ChunkRef> {
    const p = this.putNew(id, size, seal());
    this.putsInflight.set(id, p);
    try {
      return await p;
    } finally {
      this.putsInflight.delete(id);
    }
  }

  private async putNew(id: string, size: number, sealed: Uint8Array): Promise<ChunkRef> {
    const ref: ChunkRef = { id, size };
    // A fetch of the same chunk (uploaded by another replica) may be writing its cache file: let it finish.
    const fetching = this.inflight.get(id);
    if (fetching) await fetching.written;
    const cached = this.lru.get(id);
    if (cached) {
      this.touch(cached);
      return ref;
    }
    await this.reserveBlocking(sealed.length);
    this.noteResident();
    try {
      await this.writeFile(id, sealed);
    } catch (err) {
      this.release(sealed.length);
      throw err;
    }
    return this.adopt(id, size, sealed.length);
  }

  /** A new dirty chunk's cache file is whole (its `stored` bytes are reserved): index it and queue its upload. */
  private adopt(id: string, size: number, stored: number): ChunkRef {
    this.st.insert.run({
      id,
      size,
      stored,
      uploaded: 0,
      lastUse: this.clock++,
      seq: this.seq++,
    });
    const entry: Entry = { id, size, stored, uploaded: false, inUse: 0 };
    if (this.fsync) {
      this.unsynced.add(id);
      this.unsyncedDirs.add(id.slice(0, 2));
    }
    this.reserved -= stored;
    this.resident += stored;
    this.dirtyBytes += stored;
    if (!this.uploadsYield()) this.wakeUploads();
    this.lru.set(id, entry);
    this.enqueueUpload(id);
    this.pumpUploads();
    return { id, size };
  }

  // ---- get, fetch, prefetch --------------------------------------------------------------------------------

  async get(ref: ChunkRef): Promise<Uint8Array> {
    const held = this.takeAhead(ref.id);
    if (held) {
      try {
        const c = this.lru.get(ref.id);
        if (c) this.touch(c);
        return copyOut(held.plain);
      } finally {
        this.unref(held.f);
      }
    }
    const e = this.lru.get(ref.id);
    if (e) {
      e.inUse++;
      let sealed: Uint8Array | undefined;
      try {
        sealed = await readFile(this.path(ref.id));
      } catch {
        sealed = undefined;
      } finally {
        e.inUse--;
        if (e.inUse === 0) this.spaceChanged();
      }
      if (sealed) {
        try {
          // readFile's buffer is this call's alone: decrypt it in place (FsCrypto.openChunk says why the tag suffices).
          const plain = this.crypto.openChunk(ref.id, sealed, ref.size, { inPlace: true, checkId: false });
          if (this.lru.has(ref.id)) this.touch(e);
          return plain;
        } catch (err) {
          if (!(err instanceof ChunkCorruptError)) throw err;
          if (!e.uploaded) {
            this.dropDirty(e, `its only (cached) copy is corrupt: ${err.message}`);
            throw err;
          }
          this.log(`cached copy of chunk ${ref.id} is corrupt (${err.message}); refetching`);
        }
      } else if (!e.uploaded) {
        this.dropDirty(e, 'its only (cached) copy is missing');
        throw new ChunkCorruptError(ref.id, 'missing from the local cache and never uploaded');
      }
      if (this.lru.get(ref.id) === e && e.inUse === 0) this.evict(e);
    }
    const f = this.joinFetch(ref);
    try {
      return copyOut(await f.opened);
    } finally {
      this.unref(f);
    }
  }

  /** Start or join the fetch of `ref` as a reader: its plaintext is not held for later, and it is ours until unref. */
  private joinFetch(ref: ChunkRef): Inflight {
    const f = this.fetch(ref, false);
    f.wanted = true;
    f.refs++;
    return f;
  }

  /** One fetch of `ref` less is using its buffer; the last one returns it to the pool. */
  private unref(f: Inflight): void {
    if (--f.refs === 0 && f.buf !== undefined) {
      this.fetchPool.release(f.buf);
      f.buf = undefined;
    }
  }

  /**
   * One shared fetch per chunk: later readers join the one in flight. `hold`: a readahead fetch, whose plaintext is
   * kept for the first reader unless one joins before it is ready.
   */
  private fetch(ref: ChunkRef, hold: boolean): Inflight {
    const cur = this.inflight.get(ref.id);
    if (cur) return cur;
    let gotDone!: () => void;
    const got = new Promise<void>((r) => (gotDone = r));
    const state: FetchBuffer & Pick<Inflight, 'refs' | 'wanted'> = { buf: undefined, refs: 1, wanted: !hold };
    const opened = this.fetchAndOpen(ref, state, gotDone);
    const f: Inflight = Object.assign(state, { got, opened, written: opened.then(noop, noop) });
    this.inflight.set(ref.id, f);
    opened.then(
      (plain) => {
        if (f.wanted || this.closed) this.unref(f);
        else this.holdAhead(ref.id, f, plain);
      },
      () => this.unref(f),
    );
    return f;
  }

  /**
   * GET the chunk, then have a seal worker write its cache file (when room can be made without waiting: a full cache
   * of pinned/dirty chunks skips it), decrypt and verify it; index the file only once it is whole and verified.
   */
  private async fetchAndOpen(ref: ChunkRef, f: FetchBuffer, gotDone: () => void): Promise<Uint8Array> {
    let sealed: Buffer;
    try {
      sealed = await this.fetchRemote(ref, f);
    } catch (err) {
      this.inflight.delete(ref.id);
      throw err;
    } finally {
      gotDone();
    }
    this.writesPending++;
    try {
      // A put of the same bytes in progress owns the cache file (as a dirty chunk); do not race it.
      const write =
        !this.closed &&
        !this.lru.has(ref.id) &&
        !this.putsInflight.has(ref.id) &&
        this.tryReserve(sealed.length);
      if (write) this.noteResident();
      let out: FetchedOutcome;
      try {
        out = await this.sealer.openFetched(ref.id, ref.size, sealed, write);
      } catch (err) {
        if (write) this.release(sealed.length);
        throw err;
      }
      if ('corrupt' in out) {
        if (write) this.release(sealed.length);
        this.log(`remote copy of chunk ${ref.id} is corrupt: ${out.corrupt}`);
        throw new ChunkCorruptError(ref.id, out.corrupt);
      }
      if (out.written) this.adoptFetched(ref, sealed.length);
      else if (write) this.release(sealed.length);
      return out.plain ?? sealed.subarray(out.offset, out.offset + ref.size);
    } finally {
      this.writesPending--;
      this.inflight.delete(ref.id);
      this.pumpPrefetch();
    }
  }

  /** `f`'s pooled buffer, of exactly `n` bytes (a retry may need another size). */
  private fetchBuffer(f: FetchBuffer, n: number): Buffer {
    if (f.buf !== undefined && f.buf.length === n) return f.buf;
    if (f.buf !== undefined) this.fetchPool.release(f.buf);
    f.buf = this.fetchPool.acquire(n);
    return f.buf;
  }

  /** The chunk's sealed bytes from the remote, in `f`'s pooled buffer. */
  private async fetchRemote(ref: ChunkRef, f: FetchBuffer): Promise<Buffer> {
    const key = remoteKey(ref.id);
    const max = ref.size + SEAL_OVERHEAD;
    const impossible = (n: number): ChunkCorruptError => {
      this.log(`remote copy of chunk ${ref.id} has an impossible size ${n}`);
      return new ChunkCorruptError(ref.id, `remote object has ${n} bytes for a ${ref.size}-byte chunk`);
    };
    for (let attempt = 1; ; attempt++) {
      let badSize: number | undefined;
      try {
        let b: Uint8Array;
        if (this.remote.getInto) {
          b = await this.remote.getInto(key, {
            alloc: (n) => {
              if (n <= max && n >= SEAL_OVERHEAD) return this.fetchBuffer(f, n);
              badSize = n; // refused without allocating it: the remote then fails the read
              return new Uint8Array(0);
            },
            copy: copyBytes,
          });
        } else b = await this.remote.get(key);
        if (b.length > max || b.length < SEAL_OVERHEAD) throw impossible(b.length);
        if (f.buf !== undefined && b.buffer === f.buf.buffer && b.byteOffset === f.buf.byteOffset) {
          return f.buf.subarray(0, b.length);
        }
        // A remote without getInto (or one that answered another buffer): the worker needs shared memory.
        const buf = this.fetchBuffer(f, b.length);
        copyBytes(buf, 0, b);
        return buf;
      } catch (err) {
        if (badSize !== undefined) throw impossible(badSize);
        if (err instanceof RemoteNotFoundError) {
          this.log(`chunk ${ref.id} is missing on the remote`);
          throw new ChunkCorruptError(ref.id, 'missing on the remote');
        }
        if (err instanceof ChunkCorruptError || attempt >= 3 || this.closed) throw err;
        await sleep(50 * attempt);
      }
    }
  }

  /** A fetched chunk's cache file is whole and verified (its `stored` bytes are reserved): index it. */
  private adoptFetched(ref: ChunkRef, stored: number): void {
    this.st.insert.run({
      id: ref.id,
      size: ref.size,
      stored,
      uploaded: 1,
      lastUse: this.clock++,
      seq: null,
    });
    this.reserved -= stored;
    this.resident += stored;
    this.lru.set(ref.id, { id: ref.id, size: ref.size, stored, uploaded: true, inUse: 0 });
    this.spaceChanged();
  }

  /** Readahead hint: fetch these into the cache in the background, a few at a time. Never throws. */
  prefetch(refs: readonly ChunkRef[]): void {
    if (this.closed) return;
    for (const r of refs) {
      if (this.lru.has(r.id) || this.inflight.has(r.id) || this.prefetchQueued.has(r.id)) continue;
      this.prefetchQueue.push(r);
      this.prefetchQueued.add(r.id);
    }
    // Hints go stale when a reader jumps: keep only the newest few hundred.
    while (this.prefetchQueue.length > 256) this.prefetchQueued.delete(this.prefetchQueue.shift()!.id);
    this.pumpPrefetch();
  }

  /**
   * A readahead slot is busy while its GET is: the cache write that follows runs on libuv's threads in several
   * steps, each waiting for the (busy) main thread, and holding the slot through it left the reader ahead of its
   * own readahead, fetching most chunks itself. Written-but-pending fetches are bounded separately.
   */
  private pumpPrefetch(): void {
    while (
      this.prefetchActive < this.fetchConcurrency &&
      this.writesPending < 2 * this.fetchConcurrency &&
      this.prefetchQueue.length > 0
    ) {
      const r = this.prefetchQueue.shift()!;
      this.prefetchQueued.delete(r.id);
      if (this.lru.has(r.id) || this.inflight.has(r.id)) continue;
      this.prefetchActive++;
      void this.fetch(r, true).got.then(() => {
        this.prefetchActive--;
        this.pumpPrefetch();
      });
    }
  }

  /** Keep `f`'s plaintext for the first reader of `id` (the hold is `f`'s own reference to its buffer). */
  private holdAhead(id: string, f: Inflight, plain: Uint8Array): void {
    if (this.ahead.has(id) || plain.length > READAHEAD_HOLD_LIMIT) {
      this.unref(f);
      return;
    }
    this.ahead.set(id, { f, plain });
    this.aheadBytes += plain.length;
    for (const [old, h] of this.ahead) {
      if (this.aheadBytes <= READAHEAD_HOLD_LIMIT) break;
      this.ahead.delete(old);
      this.aheadBytes -= h.plain.length;
      this.unref(h.f);
    }
  }

  /** The held readahead plaintext of `id`, now the caller's to copy out and unref. */
  private takeAhead(id: string): { f: Inflight; plain: Uint8Array } | undefined {
    const h = this.ahead.get(id);
    if (h) {
      this.ahead.delete(id);
      this.aheadBytes -= h.plain.length;
    }
    return h;
  }

  // ---- explicit pins ----------------------------------------------------------------------------------------

  /**
   * Keep these chunks local (offline use): counted pins, persisted; fetches the missing ones, `fetchConcurrency` at a
   * time, telling `onLocal` of each ref once it is local (at once for the ones that are already). The counts are recorded synchronously, before this returns (a
   * failure to record them throws here), so a caller may wrap the call in its own transaction on this store's
   * connection and commit the counts together with its own writes. ENOSPC if the cache cannot hold them without
   * exceeding its limit; after the first failure no further fetch starts, and the error is thrown once the running
   * ones have settled (the pins stay counted: unpin the same refs to undo). A pinned chunk whose file vanished
   * between runs is refetched by the next pin or read, not at open.
   */
  pin(refs: readonly ChunkRef[], o: { onLocal?: (ref: ChunkRef) => void } = {}): Promise<void> {
    const tx = this.db.transaction(() => {
      for (const r of refs) {
        const n = (this.pins.get(r.id) ?? 0) + 1;
        this.pins.set(r.id, n);
        this.st.setPin.run(r.id, n);
      }
    });
    tx();
    return this.fetchPinned(refs, o.onLocal);
  }

  private async fetchPinned(refs: readonly ChunkRef[], onLocal?: (ref: ChunkRef) => void): Promise<void> {
    const missing: ChunkRef[] = [];
    for (const r of refs) {
      if (!this.lru.has(r.id)) missing.push(r);
      else onLocal?.(r);
    }
    let failure: { err: unknown } | undefined;
    await forEachLimited(missing, this.fetchConcurrency, async (r) => {
      if (failure !== undefined) return;
      try {
        if (!this.lru.has(r.id)) {
          const f = this.joinFetch(r);
          try {
            await f.opened; // verified before it is promised to be available offline
          } finally {
            this.unref(f);
          }
          if (!this.lru.has(r.id)) {
            throw fsError('ENOSPC', `chunk cache cannot hold pinned chunk ${r.id} within its limit`);
          }
        }
        onLocal?.(r);
      } catch (err) {
        failure ??= { err };
      }
    });
    if (failure !== undefined) throw failure.err;
  }

  unpin(refs: readonly ChunkRef[]): void {
    const tx = this.db.transaction(() => {
      for (const r of refs) {
        const n = (this.pins.get(r.id) ?? 0) - 1;
        if (n > 0) {
          this.pins.set(r.id, n);
          this.st.setPin.run(r.id, n);
        } else {
          this.pins.delete(r.id);
          this.st.deletePin.run(r.id);
        }
      }
    });
    tx();
    this.spaceChanged();
  }

  // ---- uploads -----------------------------------------------------------------------------------------------

  private enqueueUpload(id: string): void {
    if (this.queued.has(id)) return;
    this.queued.add(id);
    this.uploadQueue.push(id);
  }

  private pumpUploads(): void {
    while (!this.closed && this.uploadWorkers < this.uploadConcurrency && this.uploadQueue.length > 0) {
      this.uploadWorkers++;
      void this.uploadWorker();
    }
  }

  /** True while uploads should wait for a streaming writer (see DEFER_UPLOADS_BYTES). */
  private uploadsYield(): boolean {
    return (
      !this.closed &&
      (this.putsActive > 0 || performance.now() - this.lastPutEnd < UPLOAD_QUIET_MS) &&
      this.spaceWaiters.length === 0 &&
      this.flushWaiters.length === 0 &&
      this.uploadWaiters.size === 0 &&
      this.dirtyBytes < Math.min(this.limit / 4, DEFER_UPLOADS_BYTES)
    );
  }

  /** Wake parked uploads once no put has run for UPLOAD_QUIET_MS (one timer, re-armed while puts keep coming). */
  private wakeAfterQuiet(): void {
    if (this.quietTimer !== undefined || this.parkedUploads.length === 0) return;
    const check = (): void => {
      this.quietTimer = undefined;
      if (this.putsActive > 0 || this.closed) return; // that put's end arms this again
      const left = this.lastPutEnd + UPLOAD_QUIET_MS - performance.now();
      if (left <= 0) return this.wakeUploads();
      // Not unref'd: parked uploads are work this process still has to do.
      this.quietTimer = setTimeout(check, Math.ceil(left));
    };
    check();
  }

  private wakeUploads(): void {
    const w = this.parkedUploads;
    this.parkedUploads = [];
    for (const r of w) r();
  }

  private async uploadWorker(): Promise<void> {
    try {
      while (!this.closed) {
        while (this.uploadsYield()) await new Promise<void>((r) => this.parkedUploads.push(r));
        if (this.closed) break;
        const id = this.uploadQueue.shift();
        if (id === undefined) break;
        this.uploading.add(id);
        try {
          await this.uploadOne(id);
        } finally {
          this.uploading.delete(id);
        }
      }
    } finally {
      this.uploadWorkers--;
      this.checkFlushed();
    }
  }

  private async uploadOne(id: string): Promise<void> {
    const e = this.lru.get(id);
    if (!e || e.uploaded) {
      this.queued.delete(id);
      return;
    }
    e.inUse++;
    try {
      const file = this.path(id);
      const putFile = this.remote.putFileIfAbsent?.bind(this.remote);
      let bytes: Uint8Array | undefined;
      try {
        // A backend that takes a file copies it without this process reading it; the others get the bytes.
        if (putFile) statSync(file);
        else bytes = await readFile(file);
      } catch {
        this.dropDirty(e, 'its only (cached) copy is missing');
        return;
      }
      for (let attempt = 1; !this.closed; attempt++) {
        if (this.lru.get(id) !== e) return; // dropped as corrupt while we were retrying
        try {
          if (bytes === undefined) await putFile!(remoteKey(id), file);
          else await this.remote.putIfAbsent(remoteKey(id), bytes);
          break;
        } catch (err) {
          const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(attempt - 1, 20));
          const jittered = Math.round(delay * (0.5 + Math.random() * 0.5));
          if ((attempt & (attempt - 1)) === 0) {
            this.log(
              `upload of chunk ${id} failed (attempt ${attempt}): ${(err as Error).message}; retrying`,
            );
          }
          await this.sleepCancellable(jittered);
        }
      }
      if (this.closed) {
        // Still dirty in the index: the next open resumes it.
        this.uploadQueue.unshift(id);
        return;
      }
      if (this.lru.get(id) !== e || e.uploaded) return; // dropped as corrupt meanwhile
      e.uploaded = true;
      this.st.markUploaded.run(id);
      this.unsynced.delete(id); // the remote holds it durably now; a lost cache file is simply refetched
      this.dirtyBytes -= e.stored;
      this.queued.delete(id);
      const ws = this.uploadWaiters.get(id);
      if (ws) {
        this.uploadWaiters.delete(id);
        for (const w of ws) w.resolve();
      }
    } finally {
      e.inUse--;
      this.spaceChanged();
    }
  }

  /** A dirty chunk whose only copy is gone or corrupt: forget it (loudly) so it is never uploaded as garbage. */
  private dropDirty(e: Entry, reason: string): void {
    this.log(`dirty chunk ${e.id} is lost: ${reason}; it was never uploaded`);
    if (this.lru.get(e.id) !== e) return;
    try {
      unlinkSync(this.path(e.id));
    } catch {
      // already gone
    }
    this.lru.delete(e.id);
    this.touched.delete(e.id);
    this.unsynced.delete(e.id);
    this.resident -= e.stored;
    this.dirtyBytes -= e.stored;
    this.st.deleteRow.run(e.id);
    const i = this.uploadQueue.indexOf(e.id);
    if (i >= 0) this.uploadQueue.splice(i, 1);
    this.queued.delete(e.id);
    const ws = this.uploadWaiters.get(e.id);
    this.uploadWaiters.delete(e.id);
    for (const w of ws ?? []) w.reject(new ChunkCorruptError(e.id, reason));
    this.spaceChanged();
    this.checkFlushed();
  }

  private sleepCancellable(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  private checkFlushed(): void {
    if (this.queued.size === 0 && this.uploading.size === 0) {
      const w = this.flushWaiters;
      this.flushWaiters = [];
      for (const r of w) r();
    } else {
      this.pumpUploads();
    }
  }

  /** Resolves when every chunk put so far has been uploaded (retrying while the remote is down). */
  flushUploads(): Promise<void> {
    if (this.queued.size === 0 && this.uploading.size === 0) return Promise.resolve();
    const p = new Promise<void>((r) => this.flushWaiters.push(r));
    this.wakeUploads();
    return p;
  }

  /**
   * Resolves when these chunks are on the remote (ids never put here count as uploaded); rejects with
   * ChunkCorruptError if one was lost before it could be uploaded. Sync pushes op batches only after this.
   */
  async whenUploaded(ids: readonly string[]): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const id of ids) {
      if (!this.queued.has(id)) continue;
      waits.push(
        new Promise((resolve, reject) => {
          const ws = this.uploadWaiters.get(id) ?? [];
          ws.push({ resolve, reject });
          this.uploadWaiters.set(id, ws);
        }),
      );
    }
    if (waits.length > 0) this.wakeUploads();
    await Promise.all(waits);
  }

  stats(): ChunkStoreStats {
    let pinnedBytes = 0;
    for (const id of this.pins.keys()) pinnedBytes += this.lru.get(id)?.stored ?? 0;
    return {
      cacheLimitBytes: this.limit,
      residentBytes: this.resident + this.reserved,
      residentChunks: this.lru.size,
      dirtyBytes: this.dirtyBytes,
      pendingUploads: this.queued.size,
      pinnedBytes,
      peakResidentBytes: this.peak,
    };
  }

  /** Stop uploads and timers and persist recency. Dirty chunks stay queued in the index for the next open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.prefetchQueue.length = 0;
    this.prefetchQueued.clear();
    for (const h of this.ahead.values()) this.unref(h.f);
    this.ahead.clear();
    this.aheadBytes = 0;
    if (this.touchTimer) clearInterval(this.touchTimer);
    if (this.quietTimer) clearTimeout(this.quietTimer);
    for (const s of [...this.sleepers]) s();
    this.wakeUploads();
    while (this.uploadWorkers > 0 || this.inflight.size > 0) await sleep(5);
    // A clean close leaves every dirty chunk durable, as umount does for a disk filesystem.
    await this.sync().catch((err: unknown) => this.log(`syncing dirty chunks at close: ${String(err)}`));
    await this.sealer.close();
    this.flushTouches();
    this.spaceChanged();
  }
}

/** fsync a file or directory by path; ENOENT (removed since it was written) is not an error. */
async function fsyncPath(p: string): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await open(p, 'r');
    await h.sync();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    await h?.close();
  }
}

/** Run `fn` over `items`, at most `limit` at a time (each fsync holds a threadpool thread). */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (x: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Where a chunk lives on the remote (DESIGN.md §5). */
export function remoteKey(id: string): string {
  return `chunks/${id.slice(0, 2)}/${id}`;
}
