// Validators for the CRDT's vocabulary (replica ids, node ids, timestamps) shared by the codec and tree/.
// Pure: no I/O. Must not know how batches are framed or what `meta` means.
import { InvalidInputError } from '../errors.js';
import type { NodeId, ReplicaId, Timestamp } from './types.js';

const REPLICA_ID = /^[A-Za-z0-9_-]{1,32}$/;
/** Node ids: 1–128 characters, URL- and path-safe (base64url, hex, `replica.counter` all fit). */
const NODE_ID = /^[A-Za-z0-9_.:~+=@-]{1,128}$/;

/** The error code for every rejected op batch or op field. */
export const BAD_BATCH = 'ARBOR_BAD_BATCH';

export function isReplicaId(x: unknown): x is ReplicaId {
  return typeof x === 'string' && REPLICA_ID.test(x);
}

export function isNodeId(x: unknown): x is NodeId {
  return typeof x === 'string' && NODE_ID.test(x);
}

/** A Lamport counter: a non-negative safe integer. */
export function isCounter(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Validate an unknown value as a Timestamp `{counter, replica}` (extra keys rejected); returns a fresh object. */
export function parseTimestamp(x: unknown, what = 'timestamp'): Timestamp {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad(`${what}: not an object`);
  const keys = Object.keys(x);
  if (keys.length !== 2) throw bad(`${what}: expected exactly {counter, replica}`);
  const { counter, replica } = x as Record<string, unknown>;
  if (!isCounter(counter)) throw bad(`${what}: counter must be a non-negative safe integer`);
  if (!isReplicaId(replica)) throw bad(`${what}: bad replica id`);
  return { counter, replica };
}

export function bad(message: string): InvalidInputError {
  return new InvalidInputError(`bad op batch: ${message}`, BAD_BATCH);
}
