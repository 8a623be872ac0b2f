// Multi-replica tests: concurrent changes on 3 replicas, exchanged in random orders, must converge with no visible
// duplicate names, no cycles, true nlink, and every written version kept; plus the conflict-naming rules.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { openArbor } from '../index.js';
import type { Arbor } from '../index.js';
import type { TreeOpBatch } from './types.js';
import { MemChunkStore } from './testing/mem-store.js';
import { tempDir } from './testing/helpers.js';

const REPLICAS = ['A', 'B', 'C'] as const;
const nameArb = fc.constantFrom('a', 'b', 'c', 'd');
const pathArb = fc
  .oneof({ weight: 3, arbitrary: fc.tuple(nameArb) }, { weight: 2, arbitrary: fc.tuple(nameArb, nameArb) })
  .map((p) => '/' + p.join('/'));

type Op =
  | { op: 'mkdir' | 'unlink' | 'rmdir' | 'rmrf'; p: string }
  | { op: 'write'; p: string; v: number }
  | { op: 'rename' | 'link'; p: string; q: string }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'xattr'; p: string; v: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), p: pathArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), p: pathArb, v: fc.nat(1000) }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constantFrom('unlink' as const, 'rmdir' as const), p: pathArb }),
  },
  fc.record({ op: fc.constant('rmrf' as const), p: pathArb }),
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constantFrom('rename' as const, 'link' as const), p: pathArb, q: pathArb }),
  },
  fc.record({ op: fc.constant('chmod' as const), p: pathArb, mode: fc.integer({ min: 0, max: 0o777 }) }),
  fc.record({ op: fc.constant('xattr' as const), p: pathArb, v: fc.nat(100) }),
);

async function runOp(fs: Arbor, o: Op, tag: string): Promise<void> {
  try {
    switch (o.op) {
      case 'mkdir':
        return await fs.mkdir(o.p);
      case 'write':
        return await fs.writeFile(o.p, `${tag}:${o.v}`);
      case 'unlink':
        return await fs.unlink(o.p);
      case 'rmdir':
        return await fs.rmdir(o.p);
      case 'rmrf':
        return await fs.rm(o.p, { recursive: true });
      case 'rename':
        return await fs.rename(o.p, o.q);
      case 'link':
        return await fs.link(o.p, o.q);
      case 'chmod':
        return await fs.chmod(o.p, o.mode);
      case 'xattr':
        return await fs.setxattr(o.p, 'user.v', String(o.v));
    }
  } catch (e) {
    if (!/^E[A-Z]+$/.test(String((e as { code?: string }).code))) throw e;
  }
}

/** A step of the schedule: replica r runs ops, or replica `to` receives up to n pending batches from `from`. */
type Step = { kind: 'ops'; r: number; ops: Op[] } | { kind: 'sync'; from: number; to: number; n: number };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('ops' as const), r: fc.nat(2), ops: fc.array(opArb, { maxLength: 6 }) }),
  fc.record({
    kind: fc.constant('sync' as const),
    from: fc.nat(2),
    to: fc.nat(2),
    n: fc.integer({ min: 1, max: 4 }),
  }),
);

async function allPaths(fs: Arbor): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [path, e] of fs.tree.snapshot()) {
    let desc = `${e.kind}:${e.node}`;
    if (e.kind === 'file') desc += ':' + (await fs.readFile(path)).toString('hex');
    out.set(path, desc);
  }
  return out;
}

async function checkConverged(fss: Arbor[], written: Map<string, string[]>): Promise<void> {
  const snaps = await Promise.all(fss.map(allPaths));
  for (let i = 1; i < fss.length; i++)
    assert.deepEqual([...snaps[i]!], [...snaps[0]!], `replica ${i} differs from 0`);
  const fs = fss[0]!;
  fs.tree.verify();
  // no duplicate visible names, true nlink
  const linkCount = new Map<string, number>();
  const walk = (dir: string): void => {
    const names = fs.tree.readdir(dir).map((e) => e.name);
    assert.equal(new Set(names).size, names.length, `duplicate names in ${dir}`);
    for (const e of fs.tree.readdir(dir)) {
      if (e.name === '.' || e.name === '..') continue;
      if (e.kind === 'dir') walk(e.nodeId);
      else if (!e.nodeId.includes('#')) linkCount.set(e.nodeId, (linkCount.get(e.nodeId) ?? 0) + 1);
    }
  };
  walk('root');
  for (const [node, n] of linkCount) assert.equal(fs.tree.getattr(node).nlink, n, `nlink of ${node}`);
  // every written version is kept in history on every replica
  for (const f of fss) {
    for (const [node, ids] of written) {
      const have = new Set(f.tree.versions(node).map((v) => v.id));
      for (const id of ids) assert.ok(have.has(id), `version ${id} of ${node} lost on ${f.tree.replica}`);
    }
  }
}

function recordWritten(batches: TreeOpBatch[], written: Map<string, string[]>): void {
  for (const b of batches) {
    for (const op of b.ops) {
      if (op.type !== 'version') continue;
      const l = written.get(op.node) ?? [];
      l.push(op.version.id);
      written.set(op.node, l);
    }
  }
}

async function exchange(fss: Arbor[], pos: number[][], from: number, to: number, n: number): Promise<void> {
  if (from === to) return;
  const batches = fss[from]!.tree.localOpsSince(pos[to]![from]!).slice(0, n);
  for (const b of batches) {
    fss[to]!.tree.applyRemote(b);
    pos[to]![from] = b.seq;
  }
}

describe('three replicas', () => {
  it('converge after random concurrent changes delivered in random orders', async () => {
    const t = tempDir('arbor-replicas-');
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(stepArb, { maxLength: 25 }), fc.boolean(), async (steps, reopen) => {
          const base = join(t.dir, `run${run++}`);
          const store = new MemChunkStore(256);
          let clock = 1_700_000_000_000_000_000n;
          const now = (): bigint => (clock += 1_000_000_000n);
          const open = (i: number): Promise<Arbor> =>
            openArbor(join(base, REPLICAS[i]!), {
              store,
              replica: REPLICAS[i]!,
              now,
              replicas: () => REPLICAS,
            });
          const fss = await Promise.all(REPLICAS.map((_, i) => open(i)));
          const pos = REPLICAS.map(() => REPLICAS.map(() => 0));
          try {
            for (const s of steps) {
              if (s.kind === 'ops') for (const o of s.ops) await runOp(fss[s.r]!, o, REPLICAS[s.r]!);
              else await exchange(fss, pos, s.from, s.to, s.n);
            }
            if (reopen) {
              for (let i = 0; i < fss.length; i++) {
                await fss[i]!.close();
                fss[i] = await open(i);
              }
            }
            // deliver everything, including re-delivery of old batches (must be a no-op), until no replica makes
            // new ops (rescuing entries of concurrently removed directories is a local op)
            for (let round = 0; ; round++) {
              assert.ok(round < 10, 'replicas keep making repair ops');
              const seqs = fss.map((f) => f.tree.localSeq);
              for (let from = 0; from < 3; from++) {
                for (let to = 0; to < 3; to++) {
                  if (from === to) continue;
                  for (const b of fss[from]!.tree.localOpsSince(0)) fss[to]!.tree.applyRemote(b);
                }
              }
              if (fss.every((f, i) => f.tree.localSeq === seqs[i])) break;
            }
            const written = new Map<string, string[]>();
            for (const f of fss) recordWritten(f.tree.localOpsSince(0), written);
            await checkConverged(fss, written);
          } finally {
            for (const f of fss) await f.close();
          }
        }),
        { numRuns: Number(process.env.ARBOR_REPLICA_RUNS ?? 80) },
      );
    } finally {
      t.cleanup();
    }
  });

  it('concurrent creates of one name: both kept, the later as NAME~REPLICA', async () => {
    const t = tempDir();
    try {
      const store = new MemChunkStore();
      const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A' });
      const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B' });
      await a.writeFile('/x', 'from A');
      await b.writeFile('/x', 'from B');
      for (const batch of a.tree.localOpsSince(0)) b.tree.applyRemote(batch);
      for (const batch of b.tree.localOpsSince(0)) a.tree.applyRemote(batch);
      for (const fs of [a, b]) {
        const names = await fs.readdir('/');
        assert.equal(names.length, 2);
        assert.ok(names.includes('x'));
        const dup = names.find((n) => n !== 'x')!;
        assert.match(dup, /^x~[AB]$/);
        const other = dup.endsWith('~A') ? 'from A' : 'from B';
        assert.equal(await fs.readFile('/' + dup, 'utf8'), other);
      }
      assert.deepEqual(await a.readdir('/'), await b.readdir('/'));
      // the duplicate can be renamed away like any entry
      const dup = (await a.readdir('/')).find((n) => n !== 'x')!;
      await a.rename('/' + dup, '/y');
      assert.deepEqual(await a.readdir('/'), ['x', 'y']);
      await a.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });

  it('concurrent writes to one file: the later wins, the other becomes NAME.conflict-REPLICA-TIME.ext', async () => {
    const t = tempDir();
    try {
      const store = new MemChunkStore();
      const now = (): bigint => 1_763_700_000_000_000_000n; // 2025-11-21T04:40:00Z
      const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A', now });
      const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B', now });
      await a.writeFile('/doc.txt', 'base');
      for (const batch of a.tree.localOpsSince(0)) b.tree.applyRemote(batch);
      const seenA = a.tree.localSeq;
      await a.writeFile('/doc.txt', 'A edit');
      await b.writeFile('/doc.txt', 'B edit, longer');
      for (const batch of a.tree.localOpsSince(seenA)) b.tree.applyRemote(batch);
      for (const batch of b.tree.localOpsSince(0)) a.tree.applyRemote(batch);
      const listings = [await a.readdir('/'), await b.readdir('/')];
      assert.deepEqual(listings[0], listings[1]);
      assert.equal(listings[0]!.length, 2);
      const copy = listings[0]!.find((n) => n !== 'doc.txt')!;
      assert.match(copy, /^doc\.conflict-[AB]-20251121T044000\.txt$/);
      const contents = [await a.readFile('/doc.txt', 'utf8'), await a.readFile('/' + copy, 'utf8')];
      assert.deepEqual(contents.sort(), ['A edit', 'B edit, longer']);
      assert.equal(await b.readFile('/' + copy, 'utf8'), await a.readFile('/' + copy, 'utf8'));
      // renaming the copy keeps it as a real file; unlinking dismisses it on every replica
      await a.rename('/' + copy, '/kept.txt');
      assert.deepEqual(await a.readdir('/'), ['doc.txt', 'kept.txt']);
      for (const batch of a.tree.localOpsSince(0)) b.tree.applyRemote(batch);
      assert.deepEqual(await b.readdir('/'), ['doc.txt', 'kept.txt']);
      assert.equal((await a.versions('/doc.txt')).length, 3);
      await a.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });

  it('applyRemote reports changed nodes and directory names, and fires onChange', async () => {
    const t = tempDir();
    try {
      const store = new MemChunkStore();
      const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A' });
      const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B' });
      await a.mkdir('/d');
      await a.writeFile('/d/f', 'x');
      const events: Array<{ local: boolean; dirs: string[] }> = [];
      b.tree.onChange((c, local) => events.push({ local, dirs: c.dirs.flatMap((d) => d.names) }));
      const changes = a.tree.localOpsSince(0).map((batch) => b.tree.applyRemote(batch));
      const names = changes.flatMap((c) => c.dirs.flatMap((d) => d.names));
      assert.ok(names.includes('d') && names.includes('f'), JSON.stringify(changes));
      const f = b.resolve('/d/f');
      assert.ok(
        changes.some((c) => c.nodes.includes(f)),
        'the inode is reported',
      );
      assert.ok(events.length > 0 && events.every((e) => !e.local));
      // re-delivery changes nothing
      const again = a.tree.localOpsSince(0).map((batch) => b.tree.applyRemote(batch));
      assert.deepEqual(
        again.flatMap((c) => c.dirs),
        [],
      );
      assert.deepEqual(b.tree.peerPositions().get('A'), a.tree.localSeq);
      await a.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });

  it('an entry created in a directory removed concurrently is moved to /lost+found on every replica', async () => {
    const t = tempDir();
    try {
      const store = new MemChunkStore();
      const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A' });
      const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B' });
      await a.mkdir('/d');
      for (const batch of a.tree.localOpsSince(0)) b.tree.applyRemote(batch);
      const seenA = a.tree.localSeq;
      await a.rmdir('/d');
      await b.writeFile('/d/keep.txt', 'precious');
      for (const batch of a.tree.localOpsSince(seenA)) b.tree.applyRemote(batch);
      for (const batch of b.tree.localOpsSince(0)) a.tree.applyRemote(batch);
      for (const batch of a.tree.localOpsSince(seenA)) b.tree.applyRemote(batch);
      for (const fs of [a, b]) {
        assert.deepEqual(await fs.readdir('/'), ['lost+found']);
        assert.equal(await fs.readFile('/lost+found/keep.txt', 'utf8'), 'precious');
      }
      await a.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });

  it('a chmod on one replica and a rename and a write on another both survive', async () => {
    const t = tempDir();
    try {
      const store = new MemChunkStore();
      const a = await openArbor(join(t.dir, 'A'), { store, replica: 'A' });
      const b = await openArbor(join(t.dir, 'B'), { store, replica: 'B' });
      await a.writeFile('/f', 'v1');
      for (const batch of a.tree.localOpsSince(0)) b.tree.applyRemote(batch);
      const seen = a.tree.localSeq;
      await a.chmod('/f', 0o600);
      await b.rename('/f', '/g');
      await b.writeFile('/g', 'v2');
      for (const batch of a.tree.localOpsSince(seen)) b.tree.applyRemote(batch);
      for (const batch of b.tree.localOpsSince(0)) a.tree.applyRemote(batch);
      for (const fs of [a, b]) {
        assert.deepEqual(await fs.readdir('/'), ['g']);
        assert.equal((await fs.stat('/g')).mode, 0o100600);
        assert.equal(await fs.readFile('/g', 'utf8'), 'v2');
      }
      await a.close();
      await b.close();
    } finally {
      t.cleanup();
    }
  });
});
