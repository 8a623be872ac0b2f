// The stability rule in isolation (membership.ts) and the horizon's wire form (codec.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { FsCrypto } from '../chunks/crypto.js';
import { openBatch, opsKey, sealBatch } from './codec.js';
import { computeStability, type Member, type PeerKnowledge } from './membership.js';

const member = (replica: string, floor: number, retired = false): [string, Member] => [
  replica,
  { replica, floor, time: 0, ...(retired ? { retired: { time: 0, by: 'x' } } : {}) },
];

describe('stability rule', () => {
  const peers = new Map<string, PeerKnowledge>([
    ['b', { applied: 9, horizon: { clock: 12, seen: { a: 7 } } }],
    ['c', { applied: 4 }],
  ]);
  it('is the minimum bound over registered, non-retired members; the self bound is its published horizon', () => {
    const s = computeStability({
      self: 'a',
      members: new Map([member('a', 0), member('b', 0), member('c', 2)]),
      publishers: ['a', 'b', 'c'],
      unapplied: new Set(),
      ownClock: 20,
      peers,
    });
    assert.deepEqual(s.threshold, { counter: 4, replica: '~' });
    assert.match(s.blocker!, /replica c has published up to clock 4/);
    assert.deepEqual(
      s.bounds.map((b) => [b.replica, b.bound, b.source]),
      [
        ['c', 4, 'ops'],
        ['b', 12, 'horizon'],
        ['a', 20, 'horizon'],
      ],
    );
    // Known to all: b's horizon saw a's ops up to 7; c published no horizon, so only its own ops count as seen by it.
    assert.equal(s.knownToAll({ counter: 3, replica: 'a' }), false);
    const noC = computeStability({
      self: 'a',
      members: new Map([member('a', 0), member('b', 0), member('c', 2, true)]),
      publishers: ['a', 'b', 'c'],
      unapplied: new Set(),
      ownClock: 20,
      peers,
    });
    assert.deepEqual(noC.threshold, { counter: 12, replica: '~' });
    assert.equal(noC.knownToAll({ counter: 7, replica: 'a' }), true);
    assert.equal(noC.knownToAll({ counter: 8, replica: 'a' }), false);
    assert.equal(noC.knownToAll({ counter: 100, replica: 'b' }), true, 'b has applied its own ops');
  });

  it('blocks on a silent member, an unregistered publisher, an unregistered self, unapplied batches of a retired one', () => {
    const base = { self: 'a', unapplied: new Set<string>(), ownClock: 20, peers };
    const silent = computeStability({
      ...base,
      members: new Map([member('a', 0), member('b', 0), member('d', 3)]),
      publishers: ['a', 'b'],
    });
    assert.equal(silent.threshold?.counter, 3);
    assert.match(silent.blocker!, /replica d has published nothing since it registered \(floor 3\)/);
    const legacy = computeStability({
      ...base,
      members: new Map([member('a', 0)]),
      publishers: ['a', 'old'],
    });
    assert.equal(legacy.threshold, undefined);
    assert.match(legacy.blocker!, /replica old has published ops but never registered/);
    const unregistered = computeStability({ ...base, members: new Map([member('b', 0)]), publishers: [] });
    assert.equal(unregistered.threshold, undefined);
    const retired = computeStability({
      ...base,
      members: new Map([member('a', 0), member('b', 0, true)]),
      publishers: ['a', 'b'],
      unapplied: new Set(['b']),
    });
    assert.equal(retired.threshold, undefined);
    assert.match(retired.blocker!, /retired replica b has published batches not applied here yet/);
  });

  it('a horizon survives the sealed wire form; a malformed one is dropped, not trusted', () => {
    const crypto = new FsCrypto(randomBytes(32));
    const batch = {
      version: 1 as const,
      replica: 'a',
      seq: 3,
      ops: [],
      horizon: { clock: 42, seen: { b: 7 } },
    };
    assert.deepEqual(openBatch(crypto, opsKey('a', 3), sealBatch(crypto, batch)).horizon, batch.horizon);
    const bad = { ...batch, horizon: { clock: -1, seen: {} } };
    assert.equal(openBatch(crypto, opsKey('a', 3), sealBatch(crypto, bad)).horizon, undefined);
  });
});
