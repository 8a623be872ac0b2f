// Membership and the causal-stability rule: which replicas can still produce ops, and below which timestamp no op can
// ever arrive again (so the CRDT log may be truncated and trash emptied there). Knows nothing of the tree's tables.
//
// The paper assumes a fixed replica set. arbor's is open: `arbor clone` can add a replica at any time, and a replica
// that truncated past a newcomer's first ops would drop them for good. The join protocol:
// - A replica registers (`members/<replica>/joined`, write-once, sealed) *before* it pulls anything or makes ops,
//   with `floor`: its Lamport counter then. Every op it will make has a larger counter.
// - A replica's published state proves more as it goes: a batch written with nothing left pending carries a
//   `horizon` (codec.ts): its clock (a floor for everything it publishes later) and what it had applied of everyone.
// - The bound of a member R, as known here: max(R's floor, the largest counter of R's ops applied here, the clock of
//   R's newest horizon applied here). For this replica itself: its floor or the clock of its own newest published
//   horizon — published, not local, so that a replica registering concurrently (not yet in our listing) finds
//   everything below the threshold when it pulls right after registering.
// - threshold = min over registered, non-retired members of their bounds. Every op still to come, from anyone, is
//   above it. A member that never publishes holds it at its floor; `arbor gc` names it, and `--retire` removes it.
// - A replica that has published batches but never registered (an older arbor) blocks truncation altogether.
// - Trash may be emptied only for deletions that every member has applied too (its horizon's `seen`): a replica
//   that saw an entry in trash cannot address it again.
// Read-only replicas make no ops, so they neither register nor hold anything back.
import type { FsCrypto } from '../chunks/crypto.js';
import { compareTimestamps } from '../crdt/clock.js';
import type { ReplicaId, Timestamp } from '../crdt/types.js';
import { InvalidInputError } from '../errors.js';
import type { Remote } from '../remote/types.js';
import type { Horizon } from './codec.js';

/** Not a valid replica id ([A-Za-z0-9_-]), so no real replica can ever be it: "someone may still join". */
export const FUTURE_REPLICA = '~joining';

/**
 * The replica set to pass to FileTree's `replicas` option: its own automatic truncation (every 1024 commits, at
 * close) never happens, since it cannot know the membership; GC truncates with the rule above (FileTree.truncateBelow).
 */
export function stabilityReplicas(self: ReplicaId): () => Iterable<ReplicaId> {
  return () => [self, FUTURE_REPLICA];
}

const REPLICA = /^[A-Za-z0-9_-]{1,32}$/;
/** Sorts after every replica id ([A-Za-z0-9_-] are all below '~'): (n, '~') is above every op with counter n. */
export const ABOVE_EVERY_REPLICA = '~';

export interface Member {
  readonly replica: ReplicaId;
  /** Every op this replica makes has a larger Lamport counter. */
  readonly floor: number;
  /** Wall-clock ms of the registration. */
  readonly time: number;
  /** Set once the replica was retired (`arbor gc --retire`): it must never publish again. */
  readonly retired?: { readonly time: number; readonly by: ReplicaId };
}

export function joinedKey(replica: ReplicaId): string {
  return `members/${replica}/joined`;
}
export function retiredKey(replica: ReplicaId): string {
  return `members/${replica}/retired`;
}

function checkReplica(replica: string): void {
  if (!REPLICA.test(replica)) throw new InvalidInputError(`'${replica}' is not a replica id`);
}

/**
 * Register `replica` with `floor` (write-once). Returns false if it was registered already: the first registration
 * stands, and its floor is no larger than any later one would be.
 */
export async function registerMember(
  remote: Remote,
  crypto: FsCrypto,
  replica: ReplicaId,
  floor: number,
): Promise<boolean> {
  checkReplica(replica);
  const key = joinedKey(replica);
  const body = { version: 1, replica, floor, time: Date.now() };
  return remote.putIfAbsent(key, crypto.sealObject('member', key, Buffer.from(JSON.stringify(body))));
}

/** Retire `replica` for good (write-once): it no longer holds truncation back, and refuses to publish. */
export async function retireMember(
  remote: Remote,
  crypto: FsCrypto,
  replica: ReplicaId,
  by: ReplicaId,
): Promise<boolean> {
  checkReplica(replica);
  const key = retiredKey(replica);
  const body = { version: 1, replica, by, time: Date.now() };
  return remote.putIfAbsent(key, crypto.sealObject('member', key, Buffer.from(JSON.stringify(body))));
}

export function isRetired(remote: Remote, replica: ReplicaId): Promise<boolean> {
  return remote.exists(retiredKey(replica));
}

function open(crypto: FsCrypto, key: string, sealed: Uint8Array): Record<string, unknown> {
  const v = JSON.parse(Buffer.from(crypto.openObject('member', key, sealed)).toString('utf8')) as unknown;
  if (typeof v !== 'object' || v === null)
    throw new InvalidInputError(`remote object ${key} is not a member record`);
  return v as Record<string, unknown>;
}

/** Every registered replica, with its retirement if any. */
export async function readMembers(remote: Remote, crypto: FsCrypto): Promise<Map<ReplicaId, Member>> {
  const joined = new Map<ReplicaId, Member>();
  const retired = new Map<ReplicaId, { time: number; by: ReplicaId }>();
  for (const key of await remote.list('members/')) {
    const m = /^members\/([^/]+)\/(joined|retired)$/.exec(key);
    if (!m || !REPLICA.test(m[1]!)) continue;
    const replica = m[1]!;
    const v = open(crypto, key, await remote.get(key));
    if (v.replica !== replica) throw new InvalidInputError(`remote object ${key} names another replica`);
    const time = typeof v.time === 'number' ? v.time : 0;
    if (m[2] === 'joined') {
      if (typeof v.floor !== 'number' || !Number.isSafeInteger(v.floor) || v.floor < 0) {
        throw new InvalidInputError(`remote object ${key} has no valid floor`);
      }
      joined.set(replica, { replica, floor: v.floor, time });
    } else {
      retired.set(replica, { time, by: typeof v.by === 'string' ? v.by : '?' });
    }
  }
  const out = new Map<ReplicaId, Member>();
  for (const [r, m] of joined) {
    const ret = retired.get(r);
    out.set(r, ret === undefined ? m : { ...m, retired: ret });
  }
  return out;
}

/** What this replica knows of another one's published state. */
export interface PeerKnowledge {
  /** Largest counter of that replica's ops applied here. */
  readonly applied: number;
  /** Its newest horizon applied here. */
  readonly horizon?: Horizon;
}

export interface StabilityInput {
  readonly self: ReplicaId;
  readonly members: ReadonlyMap<ReplicaId, Member>;
  /** Replicas with published op batches. */
  readonly publishers: Iterable<ReplicaId>;
  /** Replicas with published batches not applied here yet. */
  readonly unapplied: ReadonlySet<ReplicaId>;
  /** Clock of this replica's own newest published horizon. */
  readonly ownClock: number | undefined;
  readonly peers: ReadonlyMap<ReplicaId, PeerKnowledge>;
}

export interface MemberBound {
  readonly replica: ReplicaId;
  /** Every op this replica will still publish has a larger counter. */
  readonly bound: number;
  /** Where the bound comes from, for messages. */
  readonly source: 'floor' | 'ops' | 'horizon';
}

export interface Stability {
  /** Ops with a smaller timestamp can never arrive again; undefined when nothing is stable. */
  readonly threshold: Timestamp | undefined;
  readonly bounds: readonly MemberBound[];
  /** Why the threshold is not higher: the member with the smallest bound, or a reason nothing is stable. */
  readonly blocker: string | undefined;
  /** Has every member that can still make ops applied the op at `ts`? */
  knownToAll(ts: Timestamp): boolean;
}

/** The stability rule (see the top of this file). Pure. */
export function computeStability(input: StabilityInput): Stability {
  const none = (blocker: string): Stability => ({
    threshold: undefined,
    bounds: [],
    blocker,
    knownToAll: () => false,
  });
  const me = input.members.get(input.self);
  if (me === undefined) return none(`this replica (${input.self}) is not registered on the remote yet`);
  if (me.retired !== undefined) return none(`this replica (${input.self}) was retired`);
  for (const r of input.publishers) {
    if (!input.members.has(r)) {
      return none(
        `replica ${r} has published ops but never registered (an older arbor?); ` +
          `run \`arbor sync\` there with this version, or retire it with \`arbor gc <dir> --retire ${r}\``,
      );
    }
  }
  const bounds: MemberBound[] = [];
  const live: ReplicaId[] = [];
  for (const m of input.members.values()) {
    if (m.retired !== undefined) {
      // What a retired replica published before it went is still to be applied everywhere: not below anything yet.
      if (input.unapplied.has(m.replica)) {
        return none(`retired replica ${m.replica} has published batches not applied here yet; sync first`);
      }
      continue;
    }
    live.push(m.replica);
    let bound = m.floor;
    let source: MemberBound['source'] = 'floor';
    if (m.replica === input.self) {
      if (input.ownClock !== undefined && input.ownClock > bound) {
        bound = input.ownClock;
        source = 'horizon';
      }
    } else {
      const p = input.peers.get(m.replica);
      if (p !== undefined && p.applied > bound) {
        bound = p.applied;
        source = 'ops';
      }
      if (p?.horizon !== undefined && p.horizon.clock > bound) {
        bound = p.horizon.clock;
        source = 'horizon';
      }
    }
    bounds.push({ replica: m.replica, bound, source });
  }
  bounds.sort((a, b) => a.bound - b.bound || (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : 0));
  const low = bounds[0]!;
  // Every op still to come has a counter > low.bound: everything up to (low.bound, any replica id) is stable.
  const threshold: Timestamp = { counter: low.bound, replica: ABOVE_EVERY_REPLICA };
  const blocker =
    low.source === 'floor'
      ? `replica ${low.replica} has published nothing since it registered (floor ${low.bound}); ` +
        `run \`arbor sync\` on it, or \`arbor gc <dir> --retire ${low.replica}\` if it is gone for good`
      : `replica ${low.replica} has published up to clock ${low.bound}`;
  const knownToAll = (ts: Timestamp): boolean => {
    for (const r of live) {
      if (r === input.self || r === ts.replica) continue;
      if ((input.peers.get(r)?.horizon?.seen[ts.replica] ?? -1) < ts.counter) return false;
    }
    return true;
  };
  return { threshold, bounds, blocker, knownToAll };
}

/** Is `ts` below the threshold (stable)? */
export function isStable(s: Stability, ts: Timestamp): boolean {
  return s.threshold !== undefined && compareTimestamps(ts, s.threshold) < 0;
}
