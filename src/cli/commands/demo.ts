// `arbor demo crdt`: two replicas make conflicting moves offline, exchange encoded op batches and converge.
// Uses only the public API of src/crdt; touches no disk and no network.
import type { Command } from 'commander';
import {
  CrdtTree,
  TreeReplica,
  compareTimestamps,
  decodeOpBatch,
  encodeOpBatch,
  formatTimestamp,
  type Move,
  type NodeId,
} from '../../crdt/index.js';

type Name = string;

function render(tree: CrdtTree<Name>, rootId: NodeId, label: string): string[] {
  const lines = [label];
  // Iterative depth-first walk; children sorted by name so both replicas print identically when they agree.
  const stack: { id: NodeId; prefix: string; last: boolean }[] = [];
  const push = (parent: NodeId, prefix: string): void => {
    const kids = [...tree.children(parent)].sort((x, y) =>
      tree.get(x)!.meta.localeCompare(tree.get(y)!.meta),
    );
    for (let i = kids.length - 1; i >= 0; i--)
      stack.push({ id: kids[i]!, prefix, last: i === kids.length - 1 });
  };
  push(rootId, '');
  while (stack.length) {
    const { id, prefix, last } = stack.pop()!;
    lines.push(`${prefix}${last ? '└── ' : '├── '}${tree.get(id)!.meta}`);
    push(id, prefix + (last ? '    ' : '│   '));
  }
  return lines;
}

function sideBySide(a: TreeReplica<Name>, b: TreeReplica<Name>): string {
  const left = [
    ...render(a.tree, 'root', `${a.replica}: /`),
    ...render(a.tree, 'trash', `${a.replica}: trash`),
  ];
  const right = [
    ...render(b.tree, 'root', `${b.replica}: /`),
    ...render(b.tree, 'trash', `${b.replica}: trash`),
  ];
  const width = Math.max(...left.map((l) => l.length)) + 6;
  const rows = Math.max(left.length, right.length);
  const out: string[] = [];
  for (let i = 0; i < rows; i++) out.push(`  ${(left[i] ?? '').padEnd(width)}${right[i] ?? ''}`);
  return out.join('\n');
}

function describe(tree: CrdtTree<Name>, op: Move<Name>): string {
  const name = (id: NodeId): string => (id === 'root' || id === 'trash' ? id : (tree.get(id)?.meta ?? id));
  return `  ${formatTimestamp(op.ts).padEnd(12)} move ${name(op.child)} → under ${name(op.parent)} as "${op.meta}"`;
}

function validateName(x: unknown): Name {
  if (typeof x !== 'string' || x.length === 0 || x.length > 255 || x.includes('/'))
    throw new TypeError('bad name');
  return x;
}

/** The demo as text: deterministic, so it can be tested and read. */
export function crdtDemo(): string {
  const out: string[] = [];
  const say = (s = ''): void => {
    out.push(s);
  };
  const laptop = new TreeReplica<Name>('laptop');
  const desktop = new TreeReplica<Name>('desktop');

  // A shared starting point: the laptop creates it, the desktop receives it.
  const photos = laptop.create('root', 'photos');
  const docs = laptop.create('root', 'docs');
  const report = laptop.create(docs.child, 'report.txt');
  const projects = laptop.create('root', 'projects');
  desktop.receive([photos, docs, report, projects]);
  say('Two replicas share one tree:');
  say(sideBySide(laptop, desktop));

  say();
  say('Both go offline and make conflicting changes:');
  // Describe each op before applying it, so the names shown are the ones the user saw.
  const offline = (rep: TreeReplica<Name>, parent: NodeId, name: Name, child: NodeId): Move<Name> => {
    const op = rep.makeMove(parent, name, child);
    say(describe(rep.tree, op));
    rep.tree.apply(op);
    return op;
  };
  say('  laptop:');
  const l1 = offline(laptop, photos.child, 'docs', docs.child); // mv docs photos/
  const l2 = offline(laptop, projects.child, 'report-final.txt', report.child); // mv docs/report.txt projects/report-final.txt
  say('  desktop:');
  const d1 = offline(desktop, docs.child, 'photos', photos.child); // mv photos docs/  (with l1: a cycle)
  const d2 = offline(desktop, 'trash', 'report.txt', report.child); // rm docs/report.txt
  say();
  say(sideBySide(laptop, desktop));

  // Exchange op batches through the wire format, as sync/ does through the remote.
  const fromLaptop = encodeOpBatch({ version: 1, replica: 'laptop', seq: 1, ops: [l1, l2] });
  const fromDesktop = encodeOpBatch({ version: 1, replica: 'desktop', seq: 1, ops: [d1, d2] });
  const atDesktop = desktop.receive(decodeOpBatch(fromLaptop, validateName).ops);
  const atLaptop = laptop.receive(decodeOpBatch(fromDesktop, validateName).ops);

  say();
  say(
    `They reconnect and swap op batches (${fromLaptop.length} and ${fromDesktop.length} bytes); each applies the ` +
      `other's in one undo/redo pass (laptop: ${atLaptop.changes.length} nodes changed, desktop: ` +
      `${atDesktop.changes.length}).`,
  );
  say(
    'Ops are ordered by Lamport timestamp (counter, then replica id), so both replicas replay the same history:',
  );
  // The story is read off the converged tree, not assumed: whichever op the timestamps favour is the one reported.
  const [first, second] = compareTimestamps(d1.ts, l1.ts) < 0 ? [d1, l1] : [l1, d1];
  const who = (op: Move<Name>): string => op.ts.replica;
  const what = (op: Move<Name>): string => (op === d1 ? 'photos under docs' : 'docs under photos');
  say(`  ${formatTimestamp(first.ts)} ${who(first)} moves ${what(first)}: applied`);
  say(
    `  ${formatTimestamp(second.ts)} ${who(second)} moves ${what(second)}: would form a cycle, so it is skipped (kept in the log)`,
  );
  const [early, late] = compareTimestamps(d2.ts, l2.ts) < 0 ? [d2, l2] : [l2, d2];
  const verb = (op: Move<Name>): string =>
    op === d2 ? 'deletes report.txt' : 'renames it to report-final.txt';
  say(
    `  ${formatTimestamp(early.ts)} ${who(early)} ${verb(early)}; ${formatTimestamp(late.ts)} ${who(late)} ${verb(late)}: the later move wins`,
  );
  say();
  say(sideBySide(laptop, desktop));
  const same =
    JSON.stringify([...laptop.tree.nodes()].sort()) === JSON.stringify([...desktop.tree.nodes()].sort());
  say();
  say(same ? 'Converged: both replicas hold the same tree.' : 'DIVERGED: the replicas disagree (a bug).');
  if (!same) throw new Error('crdt demo: replicas diverged');
  return out.join('\n');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('demonstrations (crdt: two replicas make conflicting moves offline and converge)')
    .argument('<what>', 'what to demonstrate: crdt')
    .action((what: string) => {
      if (what !== 'crdt') throw new Error(`no demo named '${what}' (try: arbor demo crdt)`);
      process.stdout.write(crdtDemo() + '\n');
    });
}
