// `arbor demo crdt` runs, converges, and tells the story the timestamps dictate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crdtDemo } from './demo.js';

test('the CRDT demo converges and explains which conflicting move won', () => {
  const text = crdtDemo();
  assert.match(text, /Converged: both replicas hold the same tree\./);
  assert.match(text, /5@desktop desktop moves photos under docs: applied/);
  assert.match(text, /5@laptop laptop moves docs under photos: would form a cycle/);
  assert.match(text, /6@laptop laptop renames it to report-final\.txt: the later move wins/);
  const final = text.slice(text.lastIndexOf('laptop: /'));
  assert.match(final, /report-final\.txt\s+└── report-final\.txt/);
});
