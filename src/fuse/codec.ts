// Little-endian struct encoding and decoding for the FUSE wire format; knows no opcodes' meaning.
import { Errno } from '../errors.js';
import { S_IFMT, Size } from './abi.js';
import type { Attr, DirBuffer, DirEntry, Entry, StatFs } from './filesystem.js';
import type { RequestId } from './ids.js';

const TWO32 = 4294967296;
const NS = 1_000_000_000n;

/** fuse_in_header, decoded. */
export interface InHeader {
  len: number;
  opcode: number;
  unique: RequestId;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

export function decodeInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8) as RequestId,
    nodeid: b.readBigUInt64LE(16),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
    totalExtlen: b.readUInt16LE(36),
  };
}

/** A u64 as a number (exact below 2^53: file offsets and sizes); no bigint allocated. */
export function u64n(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * TWO32;
}

export function writeU64n(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v >>> 0, off);
  b.writeUInt32LE(Math.floor(v / TWO32) >>> 0, off + 4);
}

/**
 * A NUL-terminated name starting at `start`; returns the string and the offset after the NUL.
 * Names must be valid UTF-8: decoding anything else would map distinct byte strings onto the same
 * name (every bad sequence becomes U+FFFD), so such names are refused with EILSEQ instead.
 */
export function cstring(b: Buffer, start: number): [string, number] {
  let end = b.indexOf(0, start);
  if (end < 0) end = b.length;
  const s = b.toString('utf8', start, end);
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (b[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (!ascii && Buffer.compare(Buffer.from(s, 'utf8'), b.subarray(start, end)) !== 0) {
    throw Object.assign(new Error('file name is not valid UTF-8'), { errno: Errno.EILSEQ });
  }
  return [s, end + 1];
}

/** A reply buffer with fuse_out_header filled in (len = 16 + payload, error 0). */
export function okReply(unique: bigint, payload: number): Buffer {
  const b = Buffer.allocUnsafe(Size.OUT_HEADER + payload);
  b.writeUInt32LE(Size.OUT_HEADER + payload, 0);
  b.writeInt32LE(0, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** A reply that carries only an error: `errno` positive, sent negated. */
export function errorReply(unique: bigint, errno: number): Buffer {
  const b = Buffer.allocUnsafe(Size.OUT_HEADER);
  b.writeUInt32LE(Size.OUT_HEADER, 0);
  b.writeInt32LE(-Math.abs(errno), 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** Seconds (fractional) → [whole seconds, nanoseconds]. */
export function ttlParts(ttl: number): [number, number] {
  if (!(ttl > 0)) return [0, 0];
  const sec = Math.floor(ttl);
  const nsec = Math.min(999_999_999, Math.round((ttl - sec) * 1e9));
  return [sec, nsec];
}

function writeTime(b: Buffer, secOff: number, nsecOff: number, ns: bigint): void {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    nsec += NS;
    sec -= 1n;
  }
  b.writeBigInt64LE(sec, secOff);
  b.writeUInt32LE(Number(nsec), nsecOff);
}

/** fuse_attr (88 bytes) at `off`. */
export function writeAttr(b: Buffer, off: number, a: Attr): void {
  b.writeBigUInt64LE(BigInt(a.ino), off);
  writeU64n(b, off + 8, a.size);
  writeU64n(b, off + 16, a.blocks ?? Math.ceil(a.size / 512));
  writeTime(b, off + 24, off + 48, a.atimeNs);
  writeTime(b, off + 32, off + 52, a.mtimeNs);
  writeTime(b, off + 40, off + 56, a.ctimeNs);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink >>> 0, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE((a.rdev ?? 0) >>> 0, off + 76);
  b.writeUInt32LE(a.blksize ?? 4096, off + 80);
  b.writeUInt32LE(0, off + 84);
}

/** Cache lifetimes used when a reply does not name its own. */
export interface Ttls {
  entry: number;
  attr: number;
}

/** fuse_entry_out (128 bytes) at `off`. */
export function writeEntry(b: Buffer, off: number, e: Entry, ttl: Ttls): void {
  const [es, ens] = ttlParts(e.entryTtl ?? ttl.entry);
  const [as, ans] = ttlParts(e.attrTtl ?? e.attr.ttl ?? ttl.attr);
  b.writeBigUInt64LE(BigInt(e.ino), off);
  b.writeBigUInt64LE(BigInt(e.generation ?? 0n), off + 8);
  writeU64n(b, off + 16, es);
  writeU64n(b, off + 24, as);
  b.writeUInt32LE(ens, off + 32);
  b.writeUInt32LE(ans, off + 36);
  writeAttr(b, off + 40, e.attr);
}

/** fuse_attr_out (104 bytes) at `off`. */
export function writeAttrOut(b: Buffer, off: number, a: Attr, ttl: Ttls): void {
  const [s, ns] = ttlParts(a.ttl ?? ttl.attr);
  writeU64n(b, off, s);
  b.writeUInt32LE(ns, off + 8);
  b.writeUInt32LE(0, off + 12);
  writeAttr(b, off + 16, a);
}

/** fuse_kstatfs (80 bytes) at `off`. */
export function writeStatfs(b: Buffer, off: number, s: StatFs): void {
  writeU64n(b, off, s.blocks);
  writeU64n(b, off + 8, s.bfree);
  writeU64n(b, off + 16, s.bavail);
  writeU64n(b, off + 24, s.files);
  writeU64n(b, off + 32, s.ffree);
  b.writeUInt32LE(s.bsize, off + 40);
  b.writeUInt32LE(s.namelen, off + 44);
  b.writeUInt32LE(s.frsize, off + 48);
  b.fill(0, off + 52, off + 80);
}

const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Packs fuse_dirent / fuse_direntplus records into one reply of at most `size` payload bytes,
 * refusing (false) the first entry that does not fit.
 */
export class DirPacker implements DirBuffer {
  readonly buf: Buffer;
  #pos = Size.OUT_HEADER;
  readonly #end: number;

  constructor(
    unique: bigint,
    size: number,
    private readonly ttl: Ttls,
  ) {
    this.buf = okReply(unique, size);
    this.#end = Size.OUT_HEADER + size;
  }

  add(e: DirEntry): boolean {
    const name = Buffer.from(e.name, 'utf8');
    const rec = align8(Size.DIRENT + name.length);
    if (this.#pos + rec > this.#end) return false;
    this.#dirent(this.#pos, e, name, rec);
    this.#pos += rec;
    return true;
  }

  addPlus(e: DirEntry, entry: Entry | null): boolean {
    const name = Buffer.from(e.name, 'utf8');
    const rec = Size.ENTRY_OUT + align8(Size.DIRENT + name.length);
    if (this.#pos + rec > this.#end) return false;
    if (entry) writeEntry(this.buf, this.#pos, entry, this.ttl);
    else this.buf.fill(0, this.#pos, this.#pos + Size.ENTRY_OUT);
    this.#dirent(this.#pos + Size.ENTRY_OUT, e, name, rec - Size.ENTRY_OUT);
    this.#pos += rec;
    return true;
  }

  #dirent(at: number, e: DirEntry, name: Buffer, rec: number): void {
    const b = this.buf;
    b.writeBigUInt64LE(BigInt(e.ino), at);
    b.writeBigUInt64LE(e.off, at + 8);
    b.writeUInt32LE(name.length, at + 16);
    b.writeUInt32LE((e.mode & S_IFMT) >>> 12, at + 20);
    name.copy(b, at + Size.DIRENT);
    b.fill(0, at + Size.DIRENT + name.length, at + rec);
  }

  /** The finished reply (header length fixed up). */
  finish(): Buffer {
    this.buf.writeUInt32LE(this.#pos, 0);
    return this.buf.subarray(0, this.#pos);
  }
}
