// Random filesystem edits for the replication property tests (replicator.test.ts, gc.test.ts): a small name space,
// so edits collide, move into each other's directories and hit each other's files.
import fc from 'fast-check';
import type { Arbor } from '../../index.js';

export type Edit =
  | { op: 'write'; p: string; v: number }
  | { op: 'mkdir'; p: string }
  | { op: 'rm'; p: string }
  | { op: 'mv'; p: string; q: string }
  | { op: 'link'; p: string; q: string }
  | { op: 'chmod'; p: string; m: number };

const name = fc.constantFrom('a', 'b', 'c');
const path = fc.oneof(
  name.map((x) => `/${x}`),
  fc.tuple(name, name).map(([x, y]) => `/${x}/${y}`),
);

/** Edits of every kind, each as likely as the others; `rmWeight` makes removals that many times as likely. */
export function editArb(o: { chmod?: boolean; rmWeight?: number } = {}): fc.Arbitrary<Edit> {
  const kinds: Array<{ arbitrary: fc.Arbitrary<Edit>; weight: number }> = [
    { arbitrary: fc.record({ op: fc.constant('write' as const), p: path, v: fc.nat(99) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('mkdir' as const), p: path }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('rm' as const), p: path }), weight: o.rmWeight ?? 1 },
    { arbitrary: fc.record({ op: fc.constant('mv' as const), p: path, q: path }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('link' as const), p: path, q: path }), weight: 1 },
  ];
  if (o.chmod !== false) {
    kinds.push({
      arbitrary: fc.record({
        op: fc.constant('chmod' as const),
        p: path,
        m: fc.integer({ min: 0o400, max: 0o777 }),
      }),
      weight: 1,
    });
  }
  return fc.oneof(...kinds);
}

/** Apply one edit; the errors a filesystem answers with (ENOENT, EEXIST, …) are expected, anything else is not. */
export async function applyEdit(a: Arbor, e: Edit): Promise<void> {
  try {
    if (e.op === 'write') await a.writeFile(e.p, `v${e.v}`);
    else if (e.op === 'mkdir') await a.mkdir(e.p);
    else if (e.op === 'rm') await a.rm(e.p, { recursive: true });
    else if (e.op === 'mv') await a.rename(e.p, e.q);
    else if (e.op === 'link') await a.link(e.p, e.q);
    else await a.chmod(e.p, e.m);
  } catch (err) {
    if (!/^E[A-Z]+$/.test(String((err as { code?: string }).code))) throw err;
  }
}
