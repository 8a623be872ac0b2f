// StateDb's group commit: queued writes are invisible to other connections until a flush, a tx that throws leaves
// nothing of itself (also when a read flushed in its middle), reads see queued writes, the timer and close commit.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { tempDirs } from '../testing/temp-dirs.js';
import { StateDb } from './db.js';

const newDir = tempDirs();

/** The database as another process would see it: a second connection, only committed transactions. */
function committed(path: string): { kv: Record<string, string>; nodes: Record<string, string | null> } {
  const d = new Database(path, { readonly: true });
  try {
    const kv = Object.fromEntries(
      (d.prepare('SELECT key, value FROM kv').all() as Array<{ key: string; value: string }>).map((r) => [
        r.key,
        r.value,
      ]),
    );
    const nodes = Object.fromEntries(
      (d.prepare('SELECT id, regs FROM nodes').all() as Array<{ id: string; regs: string | null }>).map(
        (r) => [r.id, r.regs],
      ),
    );
    return { kv, nodes };
  } finally {
    d.close();
  }
}

async function open(groupCommitMs = 60_000): Promise<{ db: StateDb; path: string }> {
  const path = join(await newDir('arbor-statedb-'), 'state.sqlite3');
  return { db: new StateDb(path, { groupCommitMs }), path };
}

describe('StateDb group commit', () => {
  it('queues writes until a flush; reads of this connection see them (and flush first)', async () => {
    const { db, path } = await open();
    db.tx(() => db.kvSet('a', '1'));
    db.tx(() => db.setRegs('n', 'r1'));
    assert.equal(db.queued, 2);
    assert.deepEqual(committed(path).kv, {});
    assert.equal(db.getRegs('n'), 'r1'); // a pending key: flushed first
    assert.equal(db.queued, 0);
    assert.deepEqual(committed(path), { kv: { a: '1' }, nodes: { n: 'r1' } });
    db.tx(() => db.kvSet('b', '2'));
    assert.equal(db.getRegs('other'), null); // not pending: no flush needed
    assert.equal(db.queued, 1);
    assert.equal(db.kvGet('b'), '2');
    db.close();
  });

  it('a tx that throws leaves none of its writes; earlier ones are kept', async () => {
    const { db, path } = await open();
    db.tx(() => db.kvSet('a', '1'));
    assert.throws(() =>
      db.tx(() => {
        db.kvSet('b', '2');
        db.tx(() => db.setRegs('x', 'r')); // nested: part of the outer unit
        throw new Error('boom');
      }),
    );
    db.flush();
    assert.deepEqual(committed(path), { kv: { a: '1' }, nodes: {} });
    db.close();
  });

  it('a read that flushes inside a tx keeps that tx one unit: rolled back on throw, committed at its end', async () => {
    const { db, path } = await open();
    db.tx(() => db.setRegs('n1', 'r1'));
    assert.throws(() =>
      db.tx(() => {
        db.setRegs('n2', 'r2');
        assert.equal(db.getRegs('n1'), 'r1'); // flushes in the middle of this tx
        db.kvSet('c', '3'); // runs at once inside the open transaction
        throw new Error('boom');
      }),
    );
    assert.deepEqual(committed(path), { kv: {}, nodes: { n1: 'r1' } });
    db.tx(() => {
      db.setRegs('n3', 'r3');
      assert.equal(db.getRegs('n3'), 'r3');
      db.kvSet('d', '4');
    });
    // Committed when the tx ended, with nothing left queued.
    assert.equal(db.queued, 0);
    assert.deepEqual(committed(path), { kv: { d: '4' }, nodes: { n1: 'r1', n3: 'r3' } });
    db.close();
  });

  it('commits on its own after the window, and at close', async () => {
    const { db, path } = await open(5);
    db.tx(() => db.kvSet('a', '1'));
    const deadline = Date.now() + 5000;
    while (committed(path).kv.a === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    assert.equal(committed(path).kv.a, '1');
    db.tx(() => db.kvSet('b', '2'));
    db.close();
    assert.deepEqual(committed(path).kv, { a: '1', b: '2' });
  });

  it('a failed flush keeps the queue for the retry', async () => {
    const { db, path } = await open();
    db.db.pragma('busy_timeout = 0');
    db.tx(() => db.kvSet('a', '1'));
    // Another connection holds the write lock: the flush cannot begin (SQLITE_BUSY), and nothing is lost.
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    assert.throws(() => db.flush(), /locked|busy/i);
    assert.equal(db.queued, 1);
    other.exec('ROLLBACK');
    other.close();
    db.flush();
    assert.deepEqual(committed(path).kv, { a: '1' });
    db.close();
  });

  it('setRegsLater: one queued write per node and group, holding its registers when the group runs', async () => {
    const path = join(await newDir('arbor-statedb-'), 'state.sqlite3');
    const regs = new Map<string, string>();
    const db = new StateDb(path, { groupCommitMs: 60_000, regsOf: (id) => regs.get(id) ?? null });
    for (let i = 1; i <= 3; i++) {
      regs.set('dir', `d${i}`);
      db.tx(() => {
        db.kvSet(`op${i}`, '1');
        db.setRegsLater('dir');
      });
    }
    assert.equal(db.queued, 4); // three kv rows and one register write
    assert.deepEqual(committed(path).nodes, {});
    assert.equal(db.getRegs('dir'), 'd3'); // pending: flushed first, with the registers as of the last op
    assert.deepEqual(committed(path).nodes, { dir: 'd3' });
    // A tx that throws drops its own queued register write; one queued by an earlier tx stays.
    regs.set('a', 'a1');
    db.tx(() => db.setRegsLater('a'));
    assert.throws(() =>
      db.tx(() => {
        regs.set('b', 'b1');
        db.setRegsLater('b');
        db.setRegsLater('a');
        throw new Error('boom');
      }),
    );
    regs.set('b', 'b2');
    db.tx(() => db.setRegsLater('b')); // queued anew: the dropped one no longer counts
    db.flush();
    assert.deepEqual(committed(path).nodes, { dir: 'd3', a: 'a1', b: 'b2' });
    // A purge between two register writes: the second one is written after the delete, not merged before it.
    regs.set('p', 'p1');
    db.tx(() => db.setRegsLater('p'));
    db.tx(() => db.purgeNode('p'));
    regs.set('p', 'p2');
    db.tx(() => db.setRegsLater('p'));
    db.flush();
    assert.equal(committed(path).nodes.p, 'p2');
    db.close();
  });

  it('without groupCommitMs every tx commits at once', async () => {
    const path = join(await newDir('arbor-statedb-'), 'state.sqlite3');
    const db = new StateDb(path);
    db.tx(() => db.kvSet('a', '1'));
    assert.equal(db.queued, 0);
    assert.deepEqual(committed(path).kv, { a: '1' });
    db.close();
  });
});
