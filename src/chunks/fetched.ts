// What happens to a chunk fetched from the remote before anyone may read it: its sealed bytes are written to the
// cache file (when the store reserved room for it), then decrypted in place and verified. Shared by the seal workers
// and the store's inline path; knows FsCrypto and the cache file layout, not the cache index.
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { ChunkCorruptError } from '../errors.js';
import { accel } from './accel.js';
import { madeCacheFilePath } from './cache-files.js';
import type { FsCrypto } from './crypto.js';

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
  crypto: FsCrypto,
  cacheDir: string,
  madeDirs: Set<string>,
  id: string,
  size: number,
  sealed: Uint8Array,
  write: boolean,
): FetchedOutcome {
  let written = false;
  let path: string | undefined;
  if (write && process.env.ARBOR_NOWRITE !== '1') {
    try {
      path = madeCacheFilePath(cacheDir, id, madeDirs);
      writeWhole(path, sealed);
      written = true;
    } catch {
      // No cache copy (a full disk, say): the chunk is readable anyway, and the store releases the room it reserved.
    }
  }
  let plain: Uint8Array;
  try {
    plain = crypto.openChunk(id, sealed, size, { inPlace: true, checkId: false });
  } catch (err) {
    if (!(err instanceof ChunkCorruptError)) throw err;
    if (written) {
      try {
        unlinkSync(path!);
      } catch {
        // gone already
      }
    }
    const prefix = `chunk ${id} is corrupt: `;
    return { corrupt: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  const inPlace = plain.buffer === sealed.buffer;
  return {
    written,
    offset: inPlace ? plain.byteOffset - sealed.byteOffset : 0,
    ...(inPlace ? {} : { plain }),
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
