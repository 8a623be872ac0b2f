// What happens to a chunk fetched from the remote before anyone may read it: its sealed bytes are written to the
// cache file (when the store reserved room for it), then decrypted in place and verified. Shared by the seal workers
// and the store's inline path; knows FsCrypto and the cache file layout, not the cache index.
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { ChunkCorruptError } from '../errors.js';
import { accel } from './accel.js';
import { madeCacheFilePath } from './cache-files.js';
import type { FsCrypto } from './crypto.js';

/** What opening a fetched chunk needs of its thread: the keys, the cache directory, the subdirectories it made. */
export interface CacheContext {
  readonly crypto: FsCrypto;
  readonly cacheDir: string;
  /** The cache subdirectories this thread has created (madeCacheFilePath). */
  readonly madeDirs: Set<string>;
}

export type FetchedOutcome =
  | {
      /** The cache file is whole under its final name (the store indexes it). */
      readonly written: boolean;
      /**
       * Where the verified plaintext is: `offset` into the sealed buffer (decrypted in place), or `plain` for a
       * compressed chunk, whose plaintext is larger than its sealed bytes.
       */
      readonly offset: number;
      readonly plain?: Uint8Array;
    }
  /** The ChunkCorruptError's detail. */
  | { readonly corrupt: string };

/**
 * Cache `sealed` (if `write`) as chunk `id`'s file, then open it in place (see FsCrypto.openChunk). The file goes
 * straight under its final name: the index is the truth and learns of the file only after this returns whole, so a
 * crash mid-write leaves a file without a row, which reconcile deletes at the next open. A corrupt chunk's file is
 * removed again: the store must never index bytes that do not verify.
 */
export function openFetched(
  cache: CacheContext,
  id: string,
  size: number,
  sealed: Uint8Array,
  write: boolean,
): FetchedOutcome {
  const { crypto, cacheDir, madeDirs } = cache;
  let path: string | undefined;
  if (write) {
    try {
      path = madeCacheFilePath(cacheDir, id, madeDirs);
      writeWhole(path, sealed);
    } catch {
      // No cache copy (a full disk, say): the chunk is readable anyway, and the store releases the room it reserved.
      path = undefined;
    }
  }
  return settle(openInPlace(crypto, id, size, sealed), sealed, path);
}

/**
 * openFetched for a thread with an event loop of its own (a seal worker): the cache file is written on a threadpool
 * thread (accel.writeFileDirectAsync copies `sealed` first) while this thread decrypts and verifies, so a chunk costs
 * the longer of the two instead of their sum — a direct write of a MiB takes ~0.6 ms or more to complete, and with
 * the write first, one worker capped a cold read at about the disk's speed for small scattered writes. `done` gets
 * the outcome once both are over (or the Error openFetched would have thrown). Where the addon lacks the
 * asynchronous write, this is openFetched.
 */
export function openFetchedAsync(
  cache: CacheContext,
  job: { id: string; size: number; sealed: Uint8Array; write: boolean },
  done: (outcome: FetchedOutcome | Error) => void,
): void {
  const { crypto, cacheDir, madeDirs } = cache;
  const { id, size, sealed, write } = job;
  const writeAsync = accel?.writeFileDirectAsync;
  let path: string | undefined;
  try {
    if (write && writeAsync !== undefined) path = madeCacheFilePath(cacheDir, id, madeDirs);
  } catch {
    path = undefined; // no cache copy, as in openFetched
  }
  if (path === undefined || writeAsync === undefined) {
    let outcome: FetchedOutcome | Error;
    try {
      outcome = openFetched(cache, id, size, sealed, write && path !== undefined);
    } catch (err) {
      outcome = err instanceof Error ? err : new Error(String(err));
    }
    done(outcome);
    return;
  }
  const file = path;
  let opened: Uint8Array | { corrupt: string } | undefined;
  let failed: Error | undefined;
  writeAsync(file, sealed, (err) => {
    if (err || failed) removeQuietly(file);
    done(failed ?? settle(opened!, sealed, err ? undefined : file));
  });
  // After the call above has copied `sealed`: decrypting in place destroys the ciphertext.
  try {
    opened = openInPlace(crypto, id, size, sealed);
  } catch (err) {
    failed = err instanceof Error ? err : new Error(String(err));
  }
}

/** The plaintext (a view of `sealed` when decrypted in place), or the ChunkCorruptError's detail. */
function openInPlace(
  crypto: FsCrypto,
  id: string,
  size: number,
  sealed: Uint8Array,
): Uint8Array | { corrupt: string } {
  try {
    return crypto.openChunk(id, sealed, size, { inPlace: true, checkId: false });
  } catch (err) {
    if (!(err instanceof ChunkCorruptError)) throw err;
    const prefix = `chunk ${id} is corrupt: `;
    return { corrupt: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
}

/** The outcome of an open, given the cache file written (`path`) or not; a corrupt chunk's file is removed. */
function settle(
  opened: Uint8Array | { corrupt: string },
  sealed: Uint8Array,
  path: string | undefined,
): FetchedOutcome {
  if ('corrupt' in opened) {
    if (path !== undefined) removeQuietly(path);
    return opened;
  }
  const inPlace = opened.buffer === sealed.buffer;
  return {
    written: path !== undefined,
    offset: inPlace ? opened.byteOffset - sealed.byteOffset : 0,
    ...(inPlace ? {} : { plain: opened }),
  };
}

/**
 * A fetched chunk's cache file bypasses the page cache where it can (accel.writeFileDirect): it is read again only
 * on a cache hit, while a buffered write allocated a page-cache page per 4 KiB — on the measurement VMs often a page
 * the host had taken back, which made the kernel's copy a sixth of a cold reader's CPU.
 */
function writeWhole(path: string, bytes: Uint8Array): void {
  if (accel?.writeFileDirect !== undefined) {
    try {
      accel.writeFileDirect(path, bytes);
    } catch (err) {
      removeQuietly(path);
      throw err;
    }
    return;
  }
  const fd = openSync(path, 'w', 0o600);
  try {
    for (let n = 0; n < bytes.length;) n += writeSync(fd, bytes, n, bytes.length - n);
  } catch (err) {
    closeSync(fd);
    removeQuietly(path);
    throw err;
  }
  closeSync(fd);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never mind: reconcile removes files the index does not list
  }
}
