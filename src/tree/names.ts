// Name rules of the visible tree: validation, duplicate-name suffixes, conflict-copy names, readdir cookies.
// Pure functions; knows nothing of the CRDT, SQLite or FUSE.
import { fsError } from '../errors.js';
import type { ReplicaId } from '../crdt/index.js';

export const NAME_MAX = 255;

/**
 * True when `s` is well-formed Unicode: no lone UTF-16 surrogate, so it encodes to UTF-8 and back unchanged.
 * Names and other strings are stored as UTF-8 (SQLite, op batches): a lone surrogate would come back as U+FFFD,
 * silently renaming the entry and merging distinct names — such strings are refused with EILSEQ instead.
 */
export function isWellFormed(s: string): boolean {
  return !/\p{Cs}/u.test(s);
}

/** Throws Linux's errno for a name a directory entry cannot have (EILSEQ, as ZFS utf8only, for non-UTF-8). */
export function checkName(name: string): void {
  if (name.length === 0) throw fsError('ENOENT', 'empty name');
  if (Buffer.byteLength(name) > NAME_MAX) throw fsError('ENAMETOOLONG', 'name longer than 255 bytes');
  if (name.includes('/') || name.includes('\0')) throw fsError('EINVAL', `bad name: ${name}`);
  if (!isWellFormed(name)) throw fsError('EILSEQ', 'name is not valid UTF-8');
}

/** `NAME~REPLICA`: how a later duplicate of a name is shown. */
export function duplicateName(name: string, replica: ReplicaId): string {
  return `${name}~${replica}`;
}

/** Split `NAME~REPLICA` (returns undefined if the name has no such suffix). */
export function parseDuplicateName(name: string): { base: string; replica: string } | undefined {
  const at = name.lastIndexOf('~');
  if (at <= 0) return undefined;
  const replica = name.slice(at + 1);
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(replica)) return undefined;
  return { base: name.slice(0, at), replica };
}

/** YYYYMMDDTHHMMSS of a ns timestamp, UTC. */
export function compactTime(timeNs: bigint): string {
  const d = new Date(Number(timeNs / 1_000_000n));
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** `NAME.conflict-REPLICA-YYYYMMDDTHHMMSS[.ext]`: the extension (after the last dot, not a leading one) is kept last. */
export function conflictName(name: string, replica: ReplicaId, timeNs: bigint): string {
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? name.slice(dot) : '';
  return `${stem}.conflict-${replica}-${compactTime(timeNs)}${ext}`;
}

const CONFLICT = /^(.*)\.conflict-([A-Za-z0-9_-]{1,32})-(\d{8}T\d{6})(\.[^.]*)?$/;

/** Parse a conflict-copy name into the name of the file it belongs to, the replica and the compact time. */
export function parseConflictName(name: string): { base: string; replica: string; time: string } | undefined {
  const m = CONFLICT.exec(name);
  if (!m) return undefined;
  return { base: m[1]! + (m[4] ?? ''), replica: m[2]!, time: m[3]! };
}

/**
 * The readdir cookie of a name: a 48-bit FNV-1a hash (≥ 3; 1 and 2 are `.` and `..`). Entries are listed in cookie
 * order, so an offset stays valid however the directory changes (an entry added or removed meanwhile may or may not
 * be seen, as POSIX allows, but no other entry is skipped or repeated).
 */
export function nameCookie(name: string): number {
  // Two independent 32-bit FNV-1a hashes (unsigned via >>> 0), combined into 48 bits: always a positive
  // integer below 2^48 + 3, so offsets sort numerically and never collide with the reserved 0..2.
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ (b >>> 13), 0x5bd1e995) >>> 0;
  }
  return a * 0x10000 + (b >>> 16) + 3;
}
