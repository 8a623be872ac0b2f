// Branded 64-bit ids of the FUSE protocol and their kernel lifecycles; knows nothing of any filesystem.

/**
 * A kernel node id (`nodeid` in fuse.h). The filesystem chooses it when it answers LOOKUP, MKDIR,
 * MKNOD, SYMLINK, LINK, CREATE or returns an entry from READDIRPLUS; every such successful reply
 * raises the kernel's lookup count of that id by one. FORGET/BATCH_FORGET lower it by `nlookup`; when it
 * reaches zero the kernel holds no reference and the id may be reused. 1n is the root and is never
 * forgotten. 0n in an entry reply means "negative entry" (cache the absence of the name).
 */
export type NodeId = bigint & { readonly __brand: 'NodeId' };

/**
 * A file or directory handle chosen by the filesystem in OPEN/CREATE/OPENDIR. The kernel echoes it
 * on every READ/WRITE/FLUSH/FSYNC/LK/RELEASE of that open file description; RELEASE/RELEASEDIR ends it
 * (exactly once per successful open). Filesystems that keep no per-open state may return 0n.
 */
export type FileHandle = bigint & { readonly __brand: 'FileHandle' };

/**
 * Generation of a node id: (nodeid, generation) must be unique over the filesystem's lifetime when
 * ids are reused (NFS export). 0n is fine when ids are never reused.
 */
export type Generation = bigint & { readonly __brand: 'Generation' };

/** The kernel's id of one request (`unique`); the reply must carry it back. Lives until answered. */
export type RequestId = bigint & { readonly __brand: 'RequestId' };

/** Lock owner id from the kernel (per open file table for POSIX, per file description for flock). */
export type LockOwner = bigint & { readonly __brand: 'LockOwner' };

export const ROOT_ID = 1n as NodeId;

export const nodeId = (n: bigint | number): NodeId => BigInt(n) as NodeId;
export const fileHandle = (n: bigint | number): FileHandle => BigInt(n) as FileHandle;
export const generation = (n: bigint | number): Generation => BigInt(n) as Generation;
