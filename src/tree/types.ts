// The vocabulary of the filesystem layer on the tree CRDT: node metadata, replicated ops, attributes, change reports.
// Pure data; knows nothing of SQLite, FUSE or chunk bytes.
import type { ChunkRef } from '../chunks/types.js';
import type { NodeId, ReplicaId, Timestamp } from '../crdt/types.js';

/** Forest roots (reserved node ids). `root` is the visible tree, `trash` holds removed names; `inodes` is reserved. */
export const ROOT: NodeId = 'root';
export const INODES: NodeId = 'inodes';
export const TRASH: NodeId = 'trash';

/** File kinds, as in the `S_IFMT` bits of st_mode. */
export type FileKind = 'dir' | 'file' | 'symlink' | 'chr' | 'blk' | 'fifo' | 'sock';

/**
 * Meta carried by every Move. `k`: 'd' a directory, 'l' a link (a name for the inode `i`, whose kind is `f`).
 * Inodes are not tree nodes: an inode is its registers (kind, mode, content, ...) keyed by its id; see README.
 * `t` is the timestamp of the move that placed the node (it orders duplicate names).
 */
export interface TreeMeta {
  readonly n: string;
  readonly k: 'd' | 'l' | 'i';
  readonly i?: NodeId;
  readonly f?: FileKind;
  readonly t: readonly [number, ReplicaId];
}

/** One file content version: the chunk list and size, the version it was derived from, when and where it was made. */
export interface ContentVersion {
  /** Unique: "<counter>.<replica>" of the op that recorded it. */
  readonly id: string;
  readonly base: string | null;
  readonly size: number;
  readonly chunks: readonly ChunkRef[];
  /** Wall-clock time of the recording, ns since the epoch, as a decimal string (JSON-safe). */
  readonly timeNs: string;
  readonly replica: ReplicaId;
}

/** Register values are JSON: numbers, strings, null (an xattr removed), or base64 strings for xattr values. */
export type RegisterValue = number | string | null;

/** The replicated operations. Every op carries a unique Lamport timestamp. */
export type TreeOp =
  | {
      readonly type: 'move';
      readonly ts: Timestamp;
      readonly parent: NodeId;
      readonly meta: TreeMeta;
      readonly child: NodeId;
    }
  /** Per-field last-writer-wins writes on one node (mode, uid, gid, atime, mtime, ctime, rdev, target, x:<xattr>). */
  | {
      readonly type: 'set';
      readonly ts: Timestamp;
      readonly node: NodeId;
      readonly fields: Readonly<Record<string, RegisterValue>>;
    }
  /** A new content version of an inode (a register too: the largest ts is the current content; all are history). */
  | {
      readonly type: 'version';
      readonly ts: Timestamp;
      readonly node: NodeId;
      readonly version: ContentVersion;
    };

/** What a replica publishes: its ops in local order, numbered by a per-replica sequence (1, 2, ...). */
export interface TreeOpBatch {
  readonly version: 1;
  readonly replica: ReplicaId;
  readonly seq: number;
  readonly ops: readonly TreeOp[];
}

/**
 * Attributes of a node. Sizes and ids are numbers; times are bigint nanoseconds since the epoch.
 * `nodeId` is the tree id (the inode id for files); kernels' inode numbers are made by the vfs layer, not here.
 */
export interface Attr {
  readonly nodeId: NodeId;
  readonly kind: FileKind;
  /** Full st_mode: type bits | permission bits. */
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly blocks: number;
  readonly rdev: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atimeNs?: bigint;
  mtimeNs?: bigint;
  /** Explicit ctime (only the replication layer / restore should use it; setattr bumps ctime itself). */
  ctimeNs?: bigint;
}

/** A visible directory entry. `cookie` is the readdir offset to resume *after* this entry. */
export interface DirEntry {
  readonly name: string;
  readonly nodeId: NodeId;
  readonly kind: FileKind;
  readonly cookie: number;
}

/** What an applied batch changed, so a FUSE layer can invalidate kernel caches. */
export interface TreeChange {
  /** Nodes whose attributes, content or placement changed. */
  readonly nodes: readonly NodeId[];
  /** Directories whose entries changed, with the names added or removed (as shown, after duplicate suffixes). */
  readonly dirs: ReadonlyArray<{ readonly dir: NodeId; readonly names: readonly string[] }>;
}

export interface StatFs {
  readonly bsize: number;
  readonly frsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly namemax: number;
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
