// Joining and leaving the replica set (the rule is in membership.ts): a replica registers before it pulls or
// publishes anything; an operator retires one that is gone for good. Knows nothing of the CLI.
import { InvalidInputError, ReplicaRetiredError } from '../errors.js';
import type { FileTree } from '../tree/filetree.js';
import { isRetired, readMembers, registerMember, retireMember } from './membership.js';
import type { SyncContext } from './replicator.js';
import { SyncState } from './state.js';

/**
 * The floor to register with: below every op this replica may still publish — its clock, or just under its oldest
 * unpublished op (a replica made before registration existed has ops waiting).
 */
export function registrationFloor(tree: FileTree, pushedLocal: number): number {
  let floor = tree.clockCounter;
  for (const b of tree.localOpsSince(pushedLocal)) {
    for (const op of b.ops) if (op.ts.counter - 1 < floor) floor = op.ts.counter - 1;
  }
  return Math.max(0, floor);
}

/**
 * Register this replica on the remote unless it is already (recorded locally). `arbor init` and `arbor clone` call
 * it before anything is pulled; sync calls it before pushing, for replicas made without it. Read-only replicas make
 * no ops and never register. Returns the registered floor (undefined for read-only replicas).
 */
export async function joinReplicaSet(ctx: SyncContext, state?: SyncState): Promise<number | undefined> {
  if (ctx.readOnly) return undefined;
  const st = state ?? new SyncState(ctx.db);
  const known = st.registeredFloor;
  if (known !== undefined) return known;
  const floor = registrationFloor(ctx.tree, st.pushed.local);
  let stored = floor;
  if (!(await registerMember(ctx.remote, ctx.crypto, ctx.replicaId, floor))) {
    // Registered by an earlier run that crashed before recording it: that first floor is the one others use.
    stored = (await readMembers(ctx.remote, ctx.crypto)).get(ctx.replicaId)?.floor ?? floor;
  }
  st.setRegisteredFloor(stored);
  return stored;
}

/** Refuse to publish once retired: replicas that truncated without us would drop our ops. */
export async function assertNotRetired(ctx: SyncContext): Promise<void> {
  if (await isRetired(ctx.remote, ctx.replicaId)) throw new ReplicaRetiredError(ctx.replicaId);
}

/**
 * Retire `replica` for good: it stops holding log truncation and trash emptying back, and can never publish again
 * (its unpublished changes are lost). Run from another replica, once the retired one is gone.
 */
export async function retireReplica(ctx: SyncContext, replica: string): Promise<boolean> {
  if (replica === ctx.replicaId) {
    throw new InvalidInputError('a replica cannot retire itself; run --retire from another replica');
  }
  const members = await readMembers(ctx.remote, ctx.crypto);
  if (!members.has(replica)) {
    throw new InvalidInputError(
      `replica ${replica} is not registered (registered: ${[...members.keys()].join(', ') || 'none'})`,
    );
  }
  return retireMember(ctx.remote, ctx.crypto, replica, ctx.replicaId);
}
