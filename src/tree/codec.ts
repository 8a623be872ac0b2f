// The wire/storage form of tree ops: a compact JSON encoding of one replica's ops, and the op-batch codec sync uses
// (with full validation of everything a remote replica could send). Pure; knows nothing of SQLite or the remote.
import type { ChunkRef } from '../chunks/types.js';
import { BAD_BATCH, isCounter, isNodeId, isReplicaId } from '../crdt/index.js';
import type { ReplicaId } from '../crdt/index.js';
import { InvalidInputError } from '../errors.js';
import { isWellFormed } from './names.js';
import type { FileKind, RegisterValue, TreeMeta, TreeOp, TreeOpBatch } from './types.js';

/** Compact forms. The replica of every timestamp is the batch's; a move's meta.t and a version's id/replica derive from the op. */
type Compact =
  | ['m', number, string, string, string, 'd' | 'l', string | null, FileKind | null]
  | ['s', number, string, Record<string, RegisterValue>]
  | ['v', number, string, string | null, number, string, Array<[string, number]>];

const KINDS: readonly FileKind[] = ['dir', 'file', 'symlink', 'chr', 'blk', 'fifo', 'sock'];
const MAX_FIELD = 300;
const MAX_VALUE = 100_000;

function bad(msg: string): InvalidInputError {
  return new InvalidInputError(`bad tree op batch: ${msg}`, BAD_BATCH);
}

function toCompact(op: TreeOp, replica: ReplicaId): Compact {
  if (op.ts.replica !== replica) throw bad('op from another replica in a batch');
  switch (op.type) {
    case 'move':
      return [
        'm',
        op.ts.counter,
        op.parent,
        op.child,
        op.meta.n,
        op.meta.k as 'd' | 'l',
        op.meta.i ?? null,
        op.meta.f ?? null,
      ];
    case 'set':
      return ['s', op.ts.counter, op.node, { ...op.fields }];
    case 'version': {
      const v = op.version;
      return ['v', op.ts.counter, op.node, v.base, v.size, v.timeNs, v.chunks.map((c) => [c.id, c.size])];
    }
  }
}

function fromCompact(x: unknown, replica: ReplicaId): TreeOp {
  if (!Array.isArray(x)) throw bad('op is not an array');
  const [type, counter, node] = x as unknown[];
  if (!isCounter(counter)) throw bad('bad counter');
  if (!isNodeId(node)) throw bad('bad node id');
  const ts = { counter, replica };
  if (type === 'm' && x.length === 8) {
    const [, , , child, n, k, i, f] = x as unknown[];
    if (!isNodeId(child)) throw bad('bad child id');
    if (
      typeof n !== 'string' ||
      Buffer.byteLength(n) > 255 ||
      n.includes('/') ||
      n.includes('\0') ||
      !isWellFormed(n) // would be stored as U+FFFD: this replica's tree would differ from the sender's
    ) {
      throw bad('bad name');
    }
    if (k !== 'd' && k !== 'l') throw bad('bad meta kind');
    if (n.length === 0 || n === '.' || n === '..') throw bad('bad entry name');
    if (k === 'l' ? !isNodeId(i) : i !== null) throw bad('bad link target');
    if (k === 'l' ? !KINDS.includes(f as FileKind) || f === 'dir' : f !== null) throw bad('bad link kind');
    const meta: TreeMeta = {
      n,
      k: k as TreeMeta['k'],
      t: [counter, replica] as const,
      ...(k === 'l' ? { i: i as string, f: f as FileKind } : {}),
    };
    return { type: 'move', ts, parent: node, child, meta };
  }
  if (type === 's' && x.length === 4) {
    const fields = x[3] as unknown;
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw bad('bad fields');
    const out: Record<string, RegisterValue> = {};
    for (const [k, v] of Object.entries(fields)) {
      if (k.length === 0 || k.length > MAX_FIELD) throw bad('bad field name');
      if (typeof v === 'number') {
        if (!Number.isSafeInteger(v)) throw bad('bad number');
      } else if (typeof v === 'string') {
        if (v.length > MAX_VALUE) throw bad('value too long');
      } else if (v !== null) throw bad('bad register value');
      out[k] = v;
    }
    return { type: 'set', ts, node, fields: out };
  }
  if (type === 'v' && x.length === 7) {
    const [, , , base, size, timeNs, chunks] = x as unknown[];
    if (base !== null && (typeof base !== 'string' || !/^\d+\.[A-Za-z0-9_-]{1,32}$/.test(base)))
      throw bad('bad base');
    if (!isCounter(size)) throw bad('bad size');
    if (typeof timeNs !== 'string' || !/^\d{1,20}$/.test(timeNs)) throw bad('bad time');
    if (!Array.isArray(chunks)) throw bad('bad chunk list');
    let total = 0;
    const refs: ChunkRef[] = chunks.map((c: unknown) => {
      if (!Array.isArray(c) || c.length !== 2) throw bad('bad chunk ref');
      const [id, len] = c as unknown[];
      if (typeof id !== 'string' || !/^[0-9a-f]{16,128}$/.test(id) || !isCounter(len))
        throw bad('bad chunk ref');
      total += len;
      return { id, size: len };
    });
    // A size beyond the chunks is a trailing hole (truncate up): allowed. Shorter than the chunks is not.
    if (total > size) throw bad('chunks longer than the size');
    const version = {
      id: `${counter}.${replica}`,
      base: base as string | null,
      size,
      chunks: refs,
      timeNs,
      replica,
    };
    return { type: 'version', ts, node, version };
  }
  throw bad(`unknown op ${String(type)}`);
}

/** One replica's ops as compact JSON text (local_ops rows). */
export function encodeOps(ops: readonly TreeOp[], replica: ReplicaId): string {
  return JSON.stringify(ops.map((o) => toCompact(o, replica)));
}

/**
 * The op as `decodeOps(encodeOps([op]))` gives it back, without the round trip through text: the same fields and
 * nothing else (a chunk ref keeps only id and size), fresh objects (nothing shared with the caller's state). For
 * local ops only: no validation.
 */
export function normalizeOp(op: TreeOp): TreeOp {
  const ts = { counter: op.ts.counter, replica: op.ts.replica };
  switch (op.type) {
    case 'move': {
      const m = op.meta;
      const meta: TreeMeta = {
        n: m.n,
        k: m.k,
        t: [ts.counter, ts.replica] as const,
        ...(m.k === 'l' ? { i: m.i!, f: m.f! } : {}),
      };
      return { type: 'move', ts, parent: op.parent, child: op.child, meta };
    }
    case 'set':
      return { type: 'set', ts, node: op.node, fields: { ...op.fields } };
    case 'version': {
      const v = op.version;
      const version = {
        id: `${ts.counter}.${ts.replica}`,
        base: v.base,
        size: v.size,
        chunks: v.chunks.map((c) => ({ id: c.id, size: c.size })),
        timeNs: v.timeNs,
        replica: ts.replica,
      };
      return { type: 'version', ts, node: op.node, version };
    }
  }
}

export function decodeOps(text: string, replica: ReplicaId): TreeOp[] {
  const x = JSON.parse(text) as unknown;
  if (!Array.isArray(x)) throw bad('ops is not an array');
  return x.map((o) => fromCompact(o, replica));
}

/** A batch as bytes (UTF-8 JSON): {v: 1, r: replica, s: seq, o: compact ops}. Sync encrypts these. */
export function encodeTreeOpBatch(batch: TreeOpBatch): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      v: batch.version,
      r: batch.replica,
      s: batch.seq,
      o: batch.ops.map((o) => toCompact(o, batch.replica)),
    }),
  );
}

/** Decode and validate a batch from another replica; throws InvalidInputError (ARBOR_BAD_BATCH) on anything wrong. */
export function decodeTreeOpBatch(bytes: Uint8Array): TreeOpBatch {
  let x: unknown;
  try {
    x = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (typeof x !== 'object' || x === null) throw bad('not an object');
  const { v, r, s, o } = x as Record<string, unknown>;
  if (v !== 1) throw bad(`unsupported version ${String(v)}`);
  if (!isReplicaId(r)) throw bad('bad replica');
  if (!isCounter(s) || s < 1) throw bad('bad seq');
  if (!Array.isArray(o)) throw bad('bad ops');
  return { version: 1, replica: r, seq: s, ops: o.map((op) => fromCompact(op, r)) };
}
