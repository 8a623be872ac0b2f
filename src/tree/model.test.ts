// Model-based property test: random operation sequences run against FileTree (path API) and a real directory on the
// local disk (node:fs); results, errnos and final trees must match.
import assert from 'node:assert/strict';
import { promises as nfs } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { openArbor } from '../index.js';
import type { Arbor } from '../index.js';
import { MemChunkStore } from './testing/mem-store.js';
import { tempDir } from './testing/helpers.js';

const NAMES = ['a', 'b', 'c'];
const nameArb = fc.constantFrom(...NAMES);
// Shallow paths dominate so that parents often exist and most ops get past ENOENT.
const pathArb = fc
  .oneof(
    { weight: 4, arbitrary: fc.tuple(nameArb) },
    { weight: 3, arbitrary: fc.tuple(nameArb, nameArb) },
    { weight: 1, arbitrary: fc.tuple(nameArb, nameArb, nameArb) },
  )
  .map((parts) => '/' + parts.join('/'));
const dataArb = fc.uint8Array({ maxLength: 3000 });

type Op =
  | { op: 'mkdir'; p: string }
  | { op: 'write'; p: string; data: Uint8Array }
  | { op: 'append'; p: string; data: Uint8Array }
  | { op: 'pwrite'; p: string; off: number; data: Uint8Array }
  | { op: 'read'; p: string }
  | { op: 'unlink'; p: string }
  | { op: 'rmdir'; p: string }
  | { op: 'rename'; p: string; q: string }
  | { op: 'link'; p: string; q: string }
  | { op: 'symlink'; target: string; p: string }
  | { op: 'readlink'; p: string }
  | { op: 'truncate'; p: string; len: number }
  | { op: 'stat'; p: string }
  | { op: 'lstat'; p: string }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'readdir'; p: string }
  | { op: 'rmrf'; p: string }
  | { op: 'wx'; p: string }
  /** Open p read-write, unlink it (or rename q over it), write through the handle, read back, close. */
  | { op: 'hold'; p: string; q: string | null; data: Uint8Array };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), p: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('write' as const), p: pathArb, data: dataArb }) },
  fc.record({ op: fc.constant('append' as const), p: pathArb, data: dataArb }),
  fc.record({
    op: fc.constant('pwrite' as const),
    p: pathArb,
    off: fc.integer({ min: 0, max: 5000 }),
    data: dataArb,
  }),
  fc.record({ op: fc.constant('read' as const), p: pathArb }),
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unlink' as const), p: pathArb }) },
  fc.record({ op: fc.constant('rmdir' as const), p: pathArb }),
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rename' as const), p: pathArb, q: pathArb }) },
  fc.record({ op: fc.constant('link' as const), p: pathArb, q: pathArb }),
  fc.record({
    op: fc.constant('symlink' as const),
    target: fc.constantFrom('a', 'b', 'a/b', 'c/a', 'zz'),
    p: pathArb,
  }),
  fc.record({ op: fc.constant('readlink' as const), p: pathArb }),
  fc.record({ op: fc.constant('truncate' as const), p: pathArb, len: fc.integer({ min: 0, max: 6000 }) }),
  fc.record({ op: fc.constant('stat' as const), p: pathArb }),
  fc.record({ op: fc.constant('lstat' as const), p: pathArb }),
  fc.record({ op: fc.constant('chmod' as const), p: pathArb, mode: fc.integer({ min: 0, max: 0o777 }) }),
  fc.record({ op: fc.constant('readdir' as const), p: pathArb }),
  fc.record({ op: fc.constant('rmrf' as const), p: pathArb }),
  fc.record({ op: fc.constant('wx' as const), p: pathArb }),
  fc.record({ op: fc.constant('hold' as const), p: pathArb, q: fc.option(pathArb), data: dataArb }),
);

interface Real {
  fs: Arbor;
  root: string;
}

type Outcome = { ok: unknown } | { err: string };
/** Outcome counts over all runs, so the test proves it exercised both successes and errno paths. */
const seen = { ok: 0, err: new Map<string, number>() };

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await fn() };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) throw e;
    return { err: code };
  }
}

function statView(s: { mode: number; size: number; nlink: number; isDirectory(): boolean }): unknown {
  // Directory sizes differ by filesystem (ext4 blocks vs arbor's 4096): compare only for non-directories.
  return { mode: s.mode, nlink: s.nlink, size: s.isDirectory() ? 'dir' : s.size };
}

async function onDisk(root: string, o: Op): Promise<unknown> {
  const P = (p: string): string => join(root, p);
  switch (o.op) {
    case 'mkdir':
      return nfs.mkdir(P(o.p));
    case 'write':
      return nfs.writeFile(P(o.p), o.data);
    case 'append':
      return nfs.appendFile(P(o.p), o.data);
    case 'wx':
      return nfs.writeFile(P(o.p), 'x', { flag: 'wx' });
    case 'pwrite': {
      const h = await nfs.open(P(o.p), 'r+');
      try {
        await h.write(o.data, 0, o.data.length, o.off);
      } finally {
        await h.close();
      }
      return undefined;
    }
    case 'read':
      return [...(await nfs.readFile(P(o.p)))].join(',');
    case 'unlink':
      return nfs.unlink(P(o.p));
    case 'rmdir':
      return nfs.rmdir(P(o.p));
    case 'rename':
      return nfs.rename(P(o.p), P(o.q));
    case 'link':
      return nfs.link(P(o.p), P(o.q));
    case 'symlink':
      return nfs.symlink(o.target, P(o.p));
    case 'readlink':
      return nfs.readlink(P(o.p));
    case 'truncate':
      return nfs.truncate(P(o.p), o.len);
    case 'stat':
      return statView(await nfs.stat(P(o.p)));
    case 'lstat':
      return statView(await nfs.lstat(P(o.p)));
    case 'chmod':
      return nfs.chmod(P(o.p), o.mode);
    case 'readdir':
      return (await nfs.readdir(P(o.p))).sort();
    case 'rmrf':
      return nfs.rm(P(o.p), { recursive: true });
    case 'hold': {
      const h = await nfs.open(P(o.p), 'r+');
      try {
        if (o.q === null) await nfs.unlink(P(o.p));
        else await nfs.rename(P(o.q), P(o.p));
        await h.write(o.data, 0, o.data.length, 1);
        const st = await h.stat();
        const buf = Buffer.alloc(st.size);
        await h.read(buf, 0, st.size, 0);
        return [st.nlink, [...buf].join(',')];
      } finally {
        await h.close();
      }
    }
  }
}

async function onArbor(fs: Arbor, o: Op): Promise<unknown> {
  switch (o.op) {
    case 'mkdir':
      return fs.mkdir(o.p);
    case 'write':
      return fs.writeFile(o.p, o.data);
    case 'append':
      return fs.appendFile(o.p, o.data);
    case 'wx':
      return fs.writeFile(o.p, 'x', { flag: 'wx' });
    case 'pwrite': {
      const h = await fs.open(o.p, 'r+');
      try {
        await h.write(o.data, o.off);
      } finally {
        await h.close();
      }
      return undefined;
    }
    case 'read':
      return [...(await fs.readFile(o.p))].join(',');
    case 'unlink':
      return fs.unlink(o.p);
    case 'rmdir':
      return fs.rmdir(o.p);
    case 'rename':
      return fs.rename(o.p, o.q);
    case 'link':
      return fs.link(o.p, o.q);
    case 'symlink':
      return fs.symlink(o.target, o.p);
    case 'readlink':
      return fs.readlink(o.p);
    case 'truncate':
      return fs.truncate(o.p, o.len);
    case 'stat':
      return statView(await fs.stat(o.p));
    case 'lstat':
      return statView(await fs.lstat(o.p));
    case 'chmod':
      return fs.chmod(o.p, o.mode);
    case 'readdir':
      return fs.readdir(o.p);
    case 'rmrf':
      return fs.rm(o.p, { recursive: true });
    case 'hold': {
      const h = await fs.open(o.p, 'r+');
      try {
        if (o.q === null) await fs.unlink(o.p);
        else await fs.rename(o.q, o.p);
        await h.write(o.data, 1);
        const st = await h.stat();
        const buf = await h.read(st.size, 0);
        return [st.nlink, [...buf].join(',')];
      } finally {
        await h.close();
      }
    }
  }
}

class OpCommand implements fc.AsyncCommand<object, Real> {
  constructor(readonly o: Op) {}
  check(): boolean {
    return true;
  }
  async run(_m: object, r: Real): Promise<void> {
    const want = await outcome(() => onDisk(r.root, this.o));
    const got = await outcome(() => onArbor(r.fs, this.o));
    if ('ok' in want) seen.ok++;
    else seen.err.set(want.err, (seen.err.get(want.err) ?? 0) + 1);
    assert.deepEqual(
      got,
      want,
      `${this.toString()}: arbor ${JSON.stringify(got)} vs disk ${JSON.stringify(want)}`,
    );
  }
  toString(): string {
    const o = this.o as Record<string, unknown>;
    return JSON.stringify(o, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v));
  }
}

/** Walk both trees and compare kinds, contents, link counts, modes and symlink targets. */
async function compareTrees(fs: Arbor, root: string, rel = ''): Promise<void> {
  const disk = (await nfs.readdir(join(root, rel))).sort();
  const arb = await fs.readdir(rel || '/');
  assert.deepEqual(arb, disk, `entries of ${rel || '/'}`);
  for (const name of disk) {
    const p = `${rel}/${name}`;
    const ds = await nfs.lstat(join(root, p));
    const as = await fs.lstat(p);
    assert.deepEqual(statView(as), statView(ds), `lstat ${p}`);
    if (ds.isDirectory()) await compareTrees(fs, root, p);
    else if (ds.isSymbolicLink()) assert.equal(await fs.readlink(p), await nfs.readlink(join(root, p)));
    else assert.deepEqual(await fs.readFile(p), await nfs.readFile(join(root, p)), `content of ${p}`);
  }
}

describe('FileTree vs a real directory (model-based)', () => {
  it('random op sequences give the same results, errnos and trees', async () => {
    const t = tempDir('arbor-model-');
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.commands([opArb.map((o) => new OpCommand(o))], { maxCommands: 60, size: 'large' }),
          async (cmds) => {
            const run = n++;
            const root = join(t.dir, `disk${run}`);
            await nfs.mkdir(root);
            const fs = await openArbor(join(t.dir, `arbor${run}`), { store: new MemChunkStore(512) });
            try {
              await fc.asyncModelRun(() => ({ model: {}, real: { fs, root } }), cmds);
              await compareTrees(fs, root);
              fs.tree.verify();
            } finally {
              await fs.close();
              await nfs.rm(root, { recursive: true, force: true });
              await nfs.rm(join(t.dir, `arbor${run}`), { recursive: true, force: true });
            }
          },
        ),
        { numRuns: Number(process.env.ARBOR_MODEL_RUNS ?? 150) },
      );
    } finally {
      t.cleanup();
    }
    process.stderr.write(JSON.stringify([seen.ok, ...seen.err]) + '\n');
    assert.ok(seen.ok > 100, `only ${seen.ok} successful ops`);
    for (const code of ['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY']) {
      assert.ok((seen.err.get(code) ?? 0) > 0, `${code} never exercised: ${JSON.stringify([...seen.err])}`);
    }
  });
});
