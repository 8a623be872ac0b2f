// The sealed on-remote forms of op batches (ops/<replica>/<seq>) and checkpoints (checkpoints/<replica>/<seq>):
// JSON inside FsCrypto's authenticated objects, with shape checks on the way in. Knows no transport or tree logic.
import type { FsCrypto } from '../chunks/crypto.js';
import { InvalidInputError } from '../errors.js';
import { checkSnapshotHeader, snapshotVersions, type TreeSnapshot } from '../tree/snapshot.js';
import type { TreeOp, TreeOpBatch } from '../tree/types.js';

export const SEQ_DIGITS = 16;
const REPLICA = /^[A-Za-z0-9_-]{1,32}$/;

export function seqName(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}
export function opsKey(replica: string, seq: number): string {
  return `ops/${replica}/${seqName(seq)}`;
}
export function checkpointKey(replica: string, seq: number): string {
  return `checkpoints/${replica}/${seqName(seq)}`;
}

/** Parses `<prefix>/<replica>/<16 digits>`; undefined for anything else (temp files, foreign objects). */
export function parseSeqKey(
  prefix: 'ops' | 'checkpoints',
  key: string,
): { replica: string; seq: number } | undefined {
  const m = /^([a-z]+)\/([^/]+)\/(\d{16})$/.exec(key);
  if (!m || m[1] !== prefix || !REPLICA.test(m[2]!)) return undefined;
  const seq = Number(m[3]);
  return Number.isSafeInteger(seq) && seq > 0 ? { replica: m[2]!, seq } : undefined;
}

function bad(what: string, key: string): InvalidInputError {
  return new InvalidInputError(`remote object ${key}: ${what}`, 'ARBOR_BAD_BATCH');
}

function isTs(v: unknown): boolean {
  const t = v as { counter?: unknown; replica?: unknown } | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.counter === 'number' &&
    Number.isSafeInteger(t.counter) &&
    t.counter >= 0 &&
    typeof t.replica === 'string' &&
    REPLICA.test(t.replica)
  );
}

/** Shape check of one op (the tree validates semantics; this keeps malformed JSON from reaching it). */
export function checkOp(op: unknown, key: string): TreeOp {
  const o = op as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || !isTs(o.ts)) throw bad('op without a valid timestamp', key);
  switch (o.type) {
    case 'move':
      if (
        typeof o.parent !== 'string' ||
        typeof o.child !== 'string' ||
        typeof o.meta !== 'object' ||
        o.meta === null
      ) {
        throw bad('malformed move', key);
      }
      break;
    case 'set':
      if (typeof o.node !== 'string' || typeof o.fields !== 'object' || o.fields === null)
        throw bad('malformed set', key);
      break;
    case 'version': {
      const v = o.version as Record<string, unknown> | null;
      if (typeof o.node !== 'string' || typeof v !== 'object' || v === null || !Array.isArray(v.chunks)) {
        throw bad('malformed version', key);
      }
      for (const c of v.chunks as unknown[]) {
        const r = c as { id?: unknown; size?: unknown } | null;
        if (typeof r?.id !== 'string' || !/^[0-9a-f]{64}$/.test(r.id) || typeof r.size !== 'number') {
          throw bad('malformed chunk reference', key);
        }
      }
      break;
    }
    default:
      throw bad(`unknown op type ${String(o.type)}`, key);
  }
  return o as unknown as TreeOp;
}

/** A published batch: the tree ops plus what its author had applied of every other replica when it wrote them. */
export interface RemoteBatch extends TreeOpBatch {
  /** Peer positions (replica → last applied seq) at push time; GC uses them to know what every replica has seen. */
  readonly seen?: Readonly<Record<string, number>>;
  /**
   * Present only on a batch that carried every local op its author had committed when it was written (nothing left
   * pending): a promise about everything the author will publish later. See src/sync/membership.ts.
   */
  readonly horizon?: Horizon;
}

/**
 * What a replica's published state proves. `clock`: its Lamport counter when the batch was written — every op it
 * publishes later has a larger counter. `seen`: per replica, the largest op counter it had applied from it (batches
 * arrive in seq order and a replica's counters grow with its seqs, so it had applied every op of that replica up to
 * there).
 */
export interface Horizon {
  readonly clock: number;
  readonly seen: Readonly<Record<string, number>>;
}

function parseHorizon(v: unknown): Horizon | undefined {
  const h = v as { clock?: unknown; seen?: unknown } | null;
  if (typeof h !== 'object' || h === null) return undefined;
  if (typeof h.clock !== 'number' || !Number.isSafeInteger(h.clock) || h.clock < 0) return undefined;
  const seen: Record<string, number> = {};
  if (typeof h.seen === 'object' && h.seen !== null) {
    for (const [r, n] of Object.entries(h.seen as Record<string, unknown>)) {
      if (REPLICA.test(r) && typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) seen[r] = n;
    }
  }
  return { clock: h.clock, seen };
}

export function sealBatch(crypto: FsCrypto, batch: RemoteBatch): Uint8Array {
  const key = opsKey(batch.replica, batch.seq);
  return crypto.sealObject('ops', key, Buffer.from(JSON.stringify(batch)));
}

/** Open and check a batch; its replica and seq must match the key it was stored under. */
export function openBatch(crypto: FsCrypto, key: string, sealed: Uint8Array): RemoteBatch {
  const where = parseSeqKey('ops', key);
  if (!where) throw bad('not an op batch key', key);
  const b = JSON.parse(Buffer.from(crypto.openObject('ops', key, sealed)).toString('utf8')) as Record<
    string,
    unknown
  >;
  if (b.version !== 1 || b.replica !== where.replica || b.seq !== where.seq || !Array.isArray(b.ops)) {
    throw bad('batch header does not match its name', key);
  }
  const seen: Record<string, number> = {};
  if (typeof b.seen === 'object' && b.seen !== null) {
    for (const [r, n] of Object.entries(b.seen as Record<string, unknown>)) {
      if (REPLICA.test(r) && typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) seen[r] = n;
    }
  }
  const horizon = parseHorizon(b.horizon);
  return {
    version: 1,
    replica: where.replica,
    seq: where.seq,
    ops: b.ops.map((o) => checkOp(o, key)),
    seen,
    ...(horizon !== undefined ? { horizon } : {}),
  };
}

/**
 * A checkpoint: a replica's state after applying every peer's batches up to `positions` (its own included), so a
 * clone loads it once and then pulls only later batches. Version 2 (written now) carries the state as table rows
 * (`snapshot`, bulk-loaded in one transaction); version 1 (still read) carried a compacted op set to replay.
 */
export type Checkpoint = CheckpointV1 | CheckpointV2;

interface CheckpointHeader {
  readonly replica: string;
  readonly seq: number;
  readonly positions: Readonly<Record<string, number>>;
  /** Wall-clock ms when written. */
  readonly time: number;
}

export interface CheckpointV1 extends CheckpointHeader {
  readonly version: 1;
  readonly ops: readonly TreeOp[];
}

export interface CheckpointV2 extends CheckpointHeader {
  readonly version: 2;
  readonly snapshot: TreeSnapshot;
}

/** Checkpoint formats this arbor reads; a newer one is skipped with an error, never misread. */
export const CHECKPOINT_VERSIONS: readonly number[] = [1, 2];

/**
 * Format 2 is a JSON header line (everything but the snapshot's database), a newline, then the database bytes;
 * format 1 was one JSON document (JSON never contains a raw newline, so the first line tells them apart).
 */
export function sealCheckpoint(crypto: FsCrypto, cp: Checkpoint): Uint8Array {
  const key = checkpointKey(cp.replica, cp.seq);
  if (cp.version === 1) return crypto.sealObject('checkpoint', key, Buffer.from(JSON.stringify(cp)));
  const { db, ...rest } = cp.snapshot;
  const header = Buffer.from(JSON.stringify({ ...cp, snapshot: rest }) + '\n');
  return crypto.sealObject('checkpoint', key, Buffer.concat([header, db]));
}

/** Open, authenticate and fully validate a checkpoint (ARBOR_BAD_BATCH / ARBOR_BAD_CHECKPOINT on anything wrong). */
export function openCheckpoint(crypto: FsCrypto, key: string, sealed: Uint8Array): Checkpoint {
  const where = parseSeqKey('checkpoints', key);
  if (!where) throw bad('not a checkpoint key', key);
  const plain = Buffer.from(crypto.openObject('checkpoint', key, sealed));
  const nl = plain.indexOf(0x0a);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(plain.subarray(0, nl < 0 ? plain.length : nl).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof SyntaxError) throw bad('not JSON', key);
    throw err;
  }
  if (typeof c !== 'object' || c === null || !CHECKPOINT_VERSIONS.includes(c.version as number))
    throw bad(`unknown checkpoint format ${String((c as { version?: unknown } | null)?.version)}`, key);
  if (c.replica !== where.replica || c.seq !== where.seq) {
    throw bad('checkpoint header does not match its name', key);
  }
  const positions = c.positions as Record<string, unknown>;
  if (typeof positions !== 'object' || positions === null) throw bad('checkpoint without positions', key);
  for (const [r, s] of Object.entries(positions)) {
    if (!REPLICA.test(r) || typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)
      throw bad('bad position', key);
  }
  const header = {
    replica: where.replica,
    seq: where.seq,
    positions: positions as Record<string, number>,
    time: typeof c.time === 'number' ? c.time : 0,
  };
  if (c.version === 2) {
    if (nl < 0) throw bad('checkpoint without its database', key);
    return { version: 2, ...header, snapshot: checkSnapshotHeader(c.snapshot, plain.subarray(nl + 1)) };
  }
  if (!Array.isArray(c.ops)) throw bad('checkpoint without ops', key);
  return { version: 1, ...header, ops: c.ops.map((o) => checkOp(o, key)) };
}

/** The content versions a checkpoint holds, as version ops (GC marks their chunks), whatever its format. */
export function checkpointVersionOps(cp: Checkpoint): TreeOp[] {
  if (cp.version === 1) return cp.ops.filter((op) => op.type === 'version');
  return snapshotVersions(cp.snapshot).map(([node, id, counter, version]) => ({
    type: 'version',
    ts: { counter, replica: id.slice(id.indexOf('.') + 1) },
    node,
    version,
  }));
}
