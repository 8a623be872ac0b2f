// The versioned wire format of op batches: a checksummed frame around compact JSON, and a decoder that trusts nothing.
// Pure. Must not know what `meta` means: the caller encodes it as JSON and validates it on the way in.
//
// Frame (all integers big-endian):
//   0..3   magic "ARBO"
//   4      format version (1)
//   5..8   payload length in bytes (uint32)
//   9..12  CRC-32 (IEEE) of the payload
//   13..   payload: UTF-8 JSON [replica, seq, table, ops]
//          table: the distinct strings (replica and node ids), each once
//          ops: flat, 5 values per op: counter, table index of ts.replica, of parent, of child, meta (any JSON)
// The CRC makes a damaged batch fail loudly instead of decoding to a different valid batch; authenticity against a
// hostile remote comes from the encryption layer in sync/, not from here.
import type { Move, OpBatch } from './types.js';
import { bad, isCounter, isNodeId, isReplicaId } from './validate.js';

export const MAX_BATCH_BYTES = 64 * 1024 * 1024;
export const MAX_BATCH_OPS = 262_144;
const MAGIC = [0x41, 0x52, 0x42, 0x4f] as const;
const VERSION = 1;
const HEADER = 13;
const FIELDS = 5;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encode a batch. `meta` must be plain JSON data (no undefined, functions, bigint, NaN) so that it survives the round
 * trip. Throws InvalidInputError (ARBOR_BAD_BATCH) for a batch the decoder would reject.
 */
export function encodeOpBatch<M>(batch: OpBatch<M>): Uint8Array {
  if (batch.version !== VERSION) throw bad(`cannot encode version ${String(batch.version)}`);
  if (!isReplicaId(batch.replica)) throw bad('bad batch replica id');
  if (!isCounter(batch.seq)) throw bad('seq must be a non-negative safe integer');
  if (batch.ops.length > MAX_BATCH_OPS) throw bad(`more than ${MAX_BATCH_OPS} ops; split the batch`);
  const index = new Map<string, number>();
  const table: string[] = [];
  const intern = (s: string): number => {
    let i = index.get(s);
    if (i === undefined) {
      i = table.length;
      index.set(s, i);
      table.push(s);
    }
    return i;
  };
  const flat: unknown[] = new Array(batch.ops.length * FIELDS);
  let k = 0;
  for (const op of batch.ops) {
    if (!isCounter(op.ts.counter) || !isReplicaId(op.ts.replica)) throw bad('bad op timestamp');
    if (!isNodeId(op.parent) || !isNodeId(op.child)) throw bad('bad node id in op');
    flat[k++] = op.ts.counter;
    flat[k++] = intern(op.ts.replica);
    flat[k++] = intern(op.parent);
    flat[k++] = intern(op.child);
    flat[k++] = op.meta === undefined ? null : op.meta;
  }
  const payload = utf8.encode(JSON.stringify([batch.replica, batch.seq, table, flat]));
  if (payload.length > MAX_BATCH_BYTES) throw bad(`encoded batch exceeds ${MAX_BATCH_BYTES} bytes; split it`);
  const out = new Uint8Array(HEADER + payload.length);
  out.set(MAGIC, 0);
  out[4] = VERSION;
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(5, payload.length);
  view.setUint32(9, crc32(payload));
  out.set(payload, HEADER);
  return out;
}

/**
 * Decode and validate a batch. Throws InvalidInputError with code ARBOR_BAD_BATCH for anything malformed, truncated,
 * damaged or hostile (including whatever `validateMeta` throws); never returns a partly valid batch.
 */
export function decodeOpBatch<M>(bytes: Uint8Array, validateMeta: (x: unknown) => M): OpBatch<M> {
  if (!(bytes instanceof Uint8Array)) throw bad('not a byte array');
  if (bytes.length < HEADER) throw bad('truncated header');
  if (bytes.length - HEADER > MAX_BATCH_BYTES) throw bad('batch too large');
  for (let i = 0; i < MAGIC.length; i++)
    if (bytes[i] !== MAGIC[i]) throw bad('not an arbor op batch (bad magic)');
  if (bytes[4] !== VERSION) throw bad(`unknown batch format version ${bytes[4]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(5);
  if (length !== bytes.length - HEADER)
    throw bad(`payload length ${length} but ${bytes.length - HEADER} bytes follow`);
  if (view.getUint32(9) !== crc32(bytes, HEADER)) throw bad('checksum mismatch (damaged batch)');

  let root: unknown;
  try {
    root = JSON.parse(strictUtf8.decode(bytes.subarray(HEADER)));
  } catch {
    throw bad('payload is not valid UTF-8 JSON');
  }
  if (!Array.isArray(root) || root.length !== 4) throw bad('payload must be [replica, seq, table, ops]');
  const [replica, seq, table, flat] = root as unknown[];
  if (!isReplicaId(replica)) throw bad('bad batch replica id');
  if (!isCounter(seq)) throw bad('seq must be a non-negative safe integer');
  if (!Array.isArray(flat)) throw bad('ops must be an array');
  if (flat.length % FIELDS !== 0) throw bad('ops array length is not a multiple of 5');
  const count = flat.length / FIELDS;
  if (count > MAX_BATCH_OPS) throw bad(`more than ${MAX_BATCH_OPS} ops`);
  if (!Array.isArray(table)) throw bad('string table must be an array');
  if (table.length > count * 3) throw bad('string table larger than its ops need');
  const seen = new Set<string>();
  for (const s of table as unknown[]) {
    if (!isNodeId(s)) throw bad('bad id in string table');
    if (seen.has(s)) throw bad('duplicate id in string table');
    seen.add(s);
  }
  const strings = table as string[];
  const at = (x: unknown): string => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= strings.length)
      throw bad('bad string index');
    return strings[x]!;
  };

  const ops: Move<M>[] = new Array(count);
  for (let n = 0, k = 0; n < count; n++, k += FIELDS) {
    const counter = flat[k];
    if (!isCounter(counter)) throw bad(`op ${n}: counter must be a non-negative safe integer`);
    const tsReplica = at(flat[k + 1]);
    if (!isReplicaId(tsReplica)) throw bad(`op ${n}: bad replica id`);
    const parent = at(flat[k + 2]);
    const child = at(flat[k + 3]);
    let meta: M;
    try {
      meta = validateMeta(flat[k + 4]);
    } catch (err) {
      const e = bad(`op ${n}: bad meta: ${err instanceof Error ? err.message : String(err)}`);
      throw Object.assign(e, { cause: err });
    }
    ops[n] = { ts: { counter, replica: tsReplica }, parent, meta, child };
  }
  return { version: VERSION, replica, seq, ops };
}
