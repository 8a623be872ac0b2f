// Lamport timestamps: their total order and the per-replica clock that makes them. Pure; knows nothing of trees.
import { InvalidInputError } from '../errors.js';
import type { ReplicaId, Timestamp } from './types.js';
import { isCounter, isReplicaId } from './validate.js';

/** Total order on timestamps: counter first, then replica id (plain code-unit string compare). */
export function compareTimestamps(a: Timestamp, b: Timestamp): number {
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.replica === b.replica) return 0;
  return a.replica < b.replica ? -1 : 1;
}

export function timestampsEqual(a: Timestamp, b: Timestamp): boolean {
  return a.counter === b.counter && a.replica === b.replica;
}

/** The larger of two timestamps (either may be undefined). */
export function maxTimestamp(a: Timestamp | undefined, b: Timestamp | undefined): Timestamp | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareTimestamps(a, b) >= 0 ? a : b;
}

/** `counter@replica`, for messages and demos. */
export function formatTimestamp(ts: Timestamp): string {
  return `${ts.counter}@${ts.replica}`;
}

/** A replica's Lamport clock. tick() for every local op; observe() every remote timestamp received. */
export class LamportClock {
  readonly replica: ReplicaId;
  #counter: number;

  constructor(replica: ReplicaId, counter = 0) {
    if (!isReplicaId(replica)) throw new InvalidInputError(`bad replica id: ${JSON.stringify(replica)}`);
    if (!isCounter(counter)) throw new InvalidInputError(`bad clock counter: ${counter}`);
    this.replica = replica;
    this.#counter = counter;
  }

  get counter(): number {
    return this.#counter;
  }

  /** A fresh timestamp, larger than every timestamp this clock has made or observed. */
  tick(): Timestamp {
    if (this.#counter >= Number.MAX_SAFE_INTEGER) throw new InvalidInputError('Lamport counter exhausted');
    this.#counter += 1;
    return { counter: this.#counter, replica: this.replica };
  }

  observe(ts: Timestamp): void {
    if (ts.counter > this.#counter) this.#counter = ts.counter;
  }
}
