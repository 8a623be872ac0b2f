// Library-level replication tests on a dir remote: convergence under random schedules, write-once and crash-resume
// pushes, checkpoint clones equal replay clones, read-only replicas, the background loop offline and back, GC, fsck.
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cloneWorkspace, initWorkspace, paths, type Workspace } from '../cli/workspace.js';
import { RemoteUnavailableError } from '../errors.js';
import { Arbor } from '../index.js';
import type { Remote } from '../remote/types.js';
import { askMount } from './control.js';
import { fsck } from './fsck.js';
import { collectGarbage } from './gc.js';
import { startSyncLoop } from './loop.js';
import { Replicator, type SyncContext } from './replicator.js';
import { treeDigest } from './testing/digest.js';
import { applyEdit, editArb } from './testing/edits.js';
import { tempDirs } from '../testing/temp-dirs.js';

const tempDir = tempDirs();
const tmp = (): Promise<string> => tempDir('arbor-sync-');

const SMALL_CACHE = 64 << 20;

async function family(n: number): Promise<{ root: string; remote: string; ws: Workspace[] }> {
  const root = await tmp();
  const remote = join(root, 'remote');
  const first = await initWorkspace(join(root, 'r0'), remote, { cacheBytes: SMALL_CACHE });
  const ws = [first];
  for (let i = 1; i < n; i++) {
    ws.push(
      await cloneWorkspace(join(root, `r${i}`), remote, {
        keyFile: paths(first.dir).key,
        cacheBytes: SMALL_CACHE,
      }),
    );
  }
  return { root, remote, ws };
}

async function closeAll(ws: Workspace[]): Promise<void> {
  for (const w of ws) await w.close();
}

/** A remote that can be switched off (every call throws RemoteUnavailableError), to partition one replica. */
class Switchable implements Remote {
  up = true;
  calls = 0;
  constructor(private readonly inner: Remote) {}
  get url(): string {
    return this.inner.url;
  }
  private check(): void {
    this.calls++;
    if (!this.up) throw new RemoteUnavailableError('switched off');
  }
  async putIfAbsent(k: string, d: Uint8Array): Promise<boolean> {
    this.check();
    return this.inner.putIfAbsent(k, d);
  }
  async get(k: string, r?: { offset: number; length: number }): Promise<Uint8Array> {
    this.check();
    return this.inner.get(k, r);
  }
  async exists(k: string): Promise<boolean> {
    this.check();
    return this.inner.exists(k);
  }
  async list(p: string): Promise<string[]> {
    this.check();
    return this.inner.list(p);
  }
  async delete(k: string): Promise<void> {
    this.check();
    return this.inner.delete(k);
  }
  async ping(): Promise<void> {
    this.check();
  }
  async close(): Promise<void> {}
}

describe('replication through a dir remote', () => {
  it('three replicas converge under random edits and sync orders (property)', async () => {
    const { ws } = await family(3);
    const reps = ws.map((w) => new Replicator(w, { checkpointEvery: 0 }));
    const fss = ws.map((w) => new Arbor(w.tree));
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(fc.nat(2), fc.array(editArb(), { maxLength: 4 }), fc.nat(2)), {
            minLength: 1,
            maxLength: 6,
          }),
          async (steps) => {
            for (const [r, ops, s] of steps) {
              for (const o of ops) await applyEdit(fss[r]!, o);
              await reps[s]!.sync();
            }
            for (let round = 0; round < 2; round++) for (const r of reps) await r.sync();
            const d0 = await treeDigest(ws[0]!);
            assert.deepEqual(await treeDigest(ws[1]!), d0);
            assert.deepEqual(await treeDigest(ws[2]!), d0);
            for (const w of ws) w.tree.verify();
          },
        ),
        { numRuns: 12, verbose: true },
      );
    } finally {
      await closeAll(ws);
    }
  });

  it('pushes are write-once and resume after a crash between upload and bookkeeping', async () => {
    const { ws, remote } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    try {
      const fa = new Arbor(a.tree);
      await fa.writeFile('/x', 'one');
      const ra = new Replicator(a);
      await ra.sync();
      const dir = join(remote, 'ops', a.replicaId);
      const first = await readFile(join(dir, '0000000000000001'));
      // Crash simulation: plan the next batch and upload it, but "die" before recording it as pushed.
      await fa.writeFile('/y', 'two');
      const plan = { rseq: 2, from: ra.state.pushed.local + 1, to: a.tree.localSeq };
      ra.state.setPlan(plan);
      const flaky = new Switchable(a.remote);
      const crashing: SyncContext = { ...a, remote: flaky };
      const orig = flaky.putIfAbsent.bind(flaky);
      flaky.putIfAbsent = async (k, d) => {
        await orig(k, d);
        // The process dies right after the write reached the remote, before recording it.
        throw new RemoteUnavailableError('connection lost after the write');
      };
      await assert.rejects(new Replicator(crashing).sync(), RemoteUnavailableError);
      assert.equal(ra.state.pushed.rseq, 1, 'not recorded');
      const written = await readFile(join(dir, '0000000000000002'));
      // Restart: the same plan is re-sent, finds its object, completes; more writes go to seq 3.
      await fa.writeFile('/z', 'three');
      const r2 = new Replicator(a);
      await r2.sync();
      assert.deepEqual((await readdir(dir)).sort(), [
        '0000000000000001',
        '0000000000000002',
        '0000000000000003',
      ]);
      assert.ok((await readFile(join(dir, '0000000000000001'))).equals(first), 'never rewritten');
      assert.ok((await readFile(join(dir, '0000000000000002'))).equals(written), 'never rewritten');
      await new Replicator(b).sync();
      assert.deepEqual(await treeDigest(b), await treeDigest(a));
      assert.deepEqual(
        (await treeDigest(b)).map((l) => l.split(' ')[0]),
        ['/x', '/y', '/z'],
      );
    } finally {
      await closeAll(ws);
    }
  });

  it('a checkpoint clone equals a replay clone (renames, hard links, deletes, conflicts, chmod)', async () => {
    const { ws, root, remote } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    const extra: Workspace[] = [];
    try {
      const fa = new Arbor(a.tree);
      const fb = new Arbor(b.tree);
      const ra = new Replicator(a);
      const rb = new Replicator(b);
      await fa.mkdir('/d1');
      await fa.mkdir('/d2');
      await fa.writeFile('/d1/f', 'base');
      await fa.link('/d1/f', '/d2/hard');
      await fa.writeFile('/gone', 'x');
      await ra.sync();
      await rb.sync();
      await fa.writeFile('/d1/f', 'from a');
      await fb.writeFile('/d1/f', 'from b');
      await fb.rename('/d1', '/d2/moved');
      await fa.unlink('/gone');
      await fa.chmod('/d2/hard', 0o600);
      await ra.sync();
      await rb.sync();
      await ra.sync();
      assert.deepEqual(await treeDigest(b), await treeDigest(a));
      const seq = await ra.writeCheckpoint();
      assert.equal(seq, 1);
      await fa.writeFile('/after-checkpoint', 'later');
      await ra.sync();
      const key = paths(a.dir).key;
      const c = await cloneWorkspace(join(root, 'c'), remote, { keyFile: key, cacheBytes: SMALL_CACHE });
      extra.push(c);
      const rc = new Replicator(c);
      const cp = await rc.restoreLatestCheckpoint();
      assert.ok(cp.loaded > 0 && cp.from === `checkpoints/${a.replicaId}/0000000000000001`);
      const pulled = await rc.pull();
      assert.equal(pulled.batches, 1, 'only the batch after the checkpoint is fetched');
      const d = await cloneWorkspace(join(root, 'd'), remote, { keyFile: key, cacheBytes: SMALL_CACHE });
      extra.push(d);
      await new Replicator(d).pull();
      const da = await treeDigest(a);
      assert.ok(
        da.some((l) => l.includes('.conflict-')),
        da.join('\n'),
      );
      assert.deepEqual(await treeDigest(c), da);
      assert.deepEqual(await treeDigest(d), da);
      // Both newcomers keep working with everyone afterwards.
      await new Arbor(c.tree).writeFile('/from-c', 'c');
      await rc.sync();
      await ra.sync();
      assert.deepEqual(await treeDigest(a), await treeDigest(c));
    } finally {
      await closeAll([...ws, ...extra]);
    }
  });

  it('a backlog is split into remote batches of bounded size, in order, and applies the same', async () => {
    const { ws, remote } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    try {
      const fa = new Arbor(a.tree);
      await fa.mkdir('/d');
      for (let i = 0; i < 12; i++) await fa.writeFile(`/d/f${i}`, `content ${i}`);
      await fa.rename('/d/f0', '/moved');
      const r = await new Replicator(a, { maxOpsPerBatch: 10 }).sync();
      const names = (await readdir(join(remote, 'ops', a.replicaId))).sort();
      assert.ok(r.pushedBatches >= 5, `pushed ${r.pushedBatches} batches`);
      assert.equal(names.length, r.pushedBatches);
      assert.deepEqual(
        names,
        names.map((_, i) => String(i + 1).padStart(16, '0')),
      );
      await new Replicator(b).sync();
      assert.deepEqual(await treeDigest(b), await treeDigest(a));
    } finally {
      await closeAll(ws);
    }
  });

  it('a read-only replica pulls but never pushes', async () => {
    const { ws, root, remote } = await family(1);
    const a = ws[0]!;
    const sat = await cloneWorkspace(join(root, 'sat'), remote, {
      keyFile: paths(a.dir).key,
      readOnly: true,
      cacheBytes: SMALL_CACHE,
    });
    try {
      await new Arbor(a.tree).writeFile('/f', 'hello');
      await new Replicator(a).sync();
      await new Arbor(sat.tree).writeFile('/local-only', 'x');
      const r = await new Replicator(sat).sync();
      assert.equal(r.pushedBatches, 0);
      assert.equal(await new Arbor(sat.tree).readFile('/f', 'utf8'), 'hello');
      assert.deepEqual(await readdir(join(remote, 'ops')), [a.replicaId]);
    } finally {
      await closeAll([a, sat]);
    }
  });

  it('background cycles push without waiting for every dirty chunk; an explicit sync waits for all of them', async () => {
    const { ws } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    // A store whose "every upload" never finishes until released (a big file still being uploaded).
    let flushes = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const store: SyncContext['store'] = Object.create(a.store as object) as SyncContext['store'];
    store.flushUploads = async () => {
      flushes++;
      await released;
      await a.store.flushUploads?.();
    };
    const loop = await startSyncLoop({ ...a, store }, { intervalMs: 20, pushDelayMs: 5 });
    const fb = new Arbor(b.tree);
    const rb = new Replicator(b, { checkpointEvery: 0 });
    try {
      await new Arbor(a.tree).writeFile('/small', 'pushed while a flush would hang');
      const t0 = Date.now();
      while (!(await fb.exists('/small'))) {
        if (Date.now() - t0 > 20_000) assert.fail('the background loop never pushed');
        await rb.sync();
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(flushes, 0, 'background cycles do not wait for every upload');
      assert.equal(await fb.readFile('/small', 'utf8'), 'pushed while a flush would hang');
      let done = false;
      const explicit = loop.syncNow().then(() => (done = true));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(done, false, 'an explicit sync waits for every upload');
      assert.equal(flushes, 1);
      release();
      await explicit;
    } finally {
      release();
      await loop.stop();
      await closeAll([a, b]);
    }
  });

  it('the background loop works offline, backs off, catches up, reports changes and answers on its socket', async () => {
    const { ws } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    const flaky = new Switchable(b.remote);
    const bctx: SyncContext = { ...b, remote: flaky };
    const changes: string[][] = [];
    const la = await startSyncLoop(a, { intervalMs: 50, pushDelayMs: 5 });
    const lb = await startSyncLoop(bctx, {
      intervalMs: 50,
      pushDelayMs: 5,
      backoffBaseMs: 20,
      backoffMaxMs: 100,
      socketPath: paths(b.dir).socket,
      onChanges: (c) => changes.push(c.dirs.flatMap((d) => d.names)),
    });
    const until = async (cond: () => Promise<boolean> | boolean, what: string): Promise<void> => {
      const t0 = Date.now();
      while (!(await cond())) {
        if (Date.now() - t0 > 20_000) assert.fail(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const fa = new Arbor(a.tree);
    const fb = new Arbor(b.tree);
    try {
      await fa.writeFile('/one', '1');
      await until(() => fb.exists('/one'), 'propagation a → b');
      assert.ok(changes.flat().includes('one'), 'the pull reported the new name');
      flaky.up = false;
      await fb.writeFile('/offline', 'written while partitioned');
      assert.equal(await fb.readFile('/one', 'utf8'), '1', 'cached files stay readable offline');
      await until(() => lb.status().failures >= 2, 'failures to be counted');
      assert.equal(lb.status().reachable, false);
      const callsBefore = flaky.calls;
      await new Promise((r) => setTimeout(r, 150));
      assert.ok(
        flaky.calls - callsBefore < 20,
        `backoff limits retries (${flaky.calls - callsBefore} calls in 150 ms)`,
      );
      const s = (await askMount(paths(b.dir).socket, 'status')) as {
        reachable: boolean;
        pending: { localBatches: number };
      };
      assert.equal(s.reachable, false);
      assert.ok(s.pending.localBatches > 0);
      await fa.writeFile('/two', '2');
      flaky.up = true;
      await until(() => fb.exists('/two'), 'b to catch up');
      await until(() => fa.exists('/offline'), 'b’s offline write to reach a');
      assert.equal(lb.status().reachable, true);
      const synced = (await askMount(paths(b.dir).socket, 'sync')) as { pending: { localBatches: number } };
      assert.equal(synced.pending.localBatches, 0);
    } finally {
      await la.stop();
      await lb.stop();
      await closeAll(ws);
    }
  });

  it('gc deletes only chunks unreferenced for the grace period; fsck finds a corrupted chunk', async () => {
    const { ws, remote } = await family(2);
    const [a, b] = ws as [Workspace, Workspace];
    try {
      const fa = new Arbor(a.tree);
      await fa.writeFile('/keep', 'kept content');
      await fa.writeFile('/old', 'first version');
      const ra = new Replicator(a);
      await ra.sync();
      await fa.writeFile('/old', 'second version');
      await ra.sync();
      // B has applied the second version; announcing it lets GC prune the first (until then it must stay).
      const rb = new Replicator(b);
      await rb.sync();
      const early = await collectGarbage(ra, { graceMs: 0, retention: { versions: 1 }, dryRun: true });
      assert.equal(early.unreferenced, 0, 'B has not said it saw the newer version');
      await rb.sync({ announce: true });
      const chunkFiles = async (): Promise<string[]> => {
        const out: string[] = [];
        for (const d of await readdir(join(remote, 'chunks')))
          for (const f of await readdir(join(remote, 'chunks', d))) out.push(f);
        return out.sort();
      };
      const before = await chunkFiles();
      assert.equal(before.length, 3);
      // Keep-all: nothing is garbage. Keep 1 version: the first version's chunk waits out the grace period.
      const g0 = await collectGarbage(ra, { graceMs: 0 });
      assert.equal(g0.deleted, 0);
      const now = Date.now();
      const g1 = await collectGarbage(ra, { graceMs: 60_000, retention: { versions: 1 }, now });
      assert.equal(g1.unreferenced, 1);
      assert.equal(g1.deleted, 0);
      assert.equal(g1.waiting, 1);
      const g2 = await collectGarbage(ra, { graceMs: 60_000, retention: { versions: 1 }, now: now + 61_000 });
      assert.equal(g2.deleted, 1);
      assert.equal((await chunkFiles()).length, 2);
      assert.deepEqual((await fsck(b)).problems, []);
      assert.equal(await new Arbor(b.tree).readFile('/old', 'utf8'), 'second version');
      // Corrupt a live chunk on the remote: fsck lists it and names the file.
      const live = (await chunkFiles())[0]!;
      const p = join(remote, 'chunks', live.slice(0, 2), live);
      const bytes = await readFile(p);
      bytes[bytes.length - 1]! ^= 1;
      await writeFile(p, bytes);
      const report = await fsck(b);
      assert.equal(report.problems.length, 1, report.problems.join('\n'));
      assert.match(report.problems[0]!, /^\/(keep|old): chunk .*corrupt/);
    } finally {
      await closeAll(ws);
    }
  });
});
