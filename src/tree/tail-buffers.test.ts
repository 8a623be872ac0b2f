// TailBuffers: reuse only when every chunk view cut from a buffer was swapped for its ref.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TailBuffers } from './tail-buffers.js';

const MIB = 1024 * 1024;

test('small tails are ordinary memory; large ones are shared', () => {
  const t = new TailBuffers();
  assert.ok(!(t.take(1000).buffer instanceof SharedArrayBuffer));
  assert.ok(t.take(MIB).buffer instanceof SharedArrayBuffer);
});

test('a retired buffer is reused only after all its chunk views settled swapped', () => {
  const t = new TailBuffers();
  const a = t.take(MIB);
  t.cut(a.subarray(0, 1000));
  t.cut(a.subarray(1000, 2000));
  t.retire(a);
  assert.notEqual(t.take(MIB).buffer, a.buffer, 'views in flight: not reused');
  t.settled(a.subarray(0, 1000), true);
  assert.notEqual(t.take(MIB).buffer, a.buffer, 'one view still in flight');
  t.settled(a.subarray(1000, 2000), true);
  assert.equal(t.take(MIB).buffer, a.buffer);
  assert.notEqual(t.take(MIB).buffer, a.buffer, 'handed out once');
});

test('a view not swapped pins its buffer for good; views of a buffer and too-small spares are never reused', () => {
  const t = new TailBuffers();
  const a = t.take(MIB);
  t.cut(a.subarray(0, 10));
  t.retire(a);
  t.settled(a.subarray(0, 10), false);
  assert.notEqual(t.take(MIB).buffer, a.buffer);
  t.retire(a);
  assert.notEqual(t.take(MIB).buffer, a.buffer, 'pinned buffers are not taken back');

  const b = t.take(MIB);
  t.retire(b.subarray(10)); // a view (e.g. made by splitting a segment) may share the buffer with live bytes
  assert.notEqual(t.take(MIB).buffer, b.buffer);
  const c = t.take(MIB);
  t.retire(c);
  assert.notEqual(t.take(2 * MIB).buffer, c.buffer);
  t.clear();
  assert.notEqual(t.take(MIB).buffer, c.buffer, 'clear drops the spares');
});
