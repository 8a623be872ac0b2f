// `npm run bench -- crdt`: the tree CRDT on a realistic 100k-node tree — local op latency, batched remote throughput
// with real undo/redo, memory per node (in a child with --expose-gc), and replay of 1M logged ops.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CrdtTree, TreeReplica, decodeOpBatch, encodeOpBatch, nodeIdFor } from '../src/crdt/index.js';
import type { Move, NodeId } from '../src/crdt/index.js';
import type { BenchOptions, Metric } from './types.js';

type Meta = string; // a file name, as tree/'s link nodes carry (plus a few small fields in reality)

const PAPER_LOCAL_US = 1.5; // Kleppmann et al. 2021, hand-written code: median local op 1–2 µs
const PAPER_REMOTE_OPS_S = 5700; // same paper: saturation throughput for remote ops
const NODES = 100_000;

/** Seeded PRNG (mulberry32): every run measures the same tree and the same op sequence. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Shape {
  dirs: NodeId[];
  /** Directories by depth (root is depth 0): directory moves stay within a level, so depth stays realistic. */
  dirsAt: NodeId[][];
  files: NodeId[];
  depthOf: Map<NodeId, number>;
  ops: Move<Meta>[];
}

/**
 * Creation ops for a tree of `n` nodes: directories hold 10–100 entries; about 1 entry in 12 is a directory, and new
 * entries go into a random directory that still has room, so depth spreads over ~6–10 levels like a real home dir.
 */
function buildShape(replica: TreeReplica<Meta>, n: number, rand: () => number): Shape {
  const dirs: NodeId[] = [];
  const dirsAt: NodeId[][] = [['root']];
  const files: NodeId[] = [];
  const depthOf = new Map<NodeId, number>([['root', 0]]);
  const open: { id: NodeId; room: number }[] = [{ id: 'root', room: 10 + Math.floor(rand() * 91) }];
  const ops: Move<Meta>[] = [];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(rand() * open.length);
    const parent = open[k]!;
    const depth = depthOf.get(parent.id)! + 1;
    const isDir = depth < 10 && (rand() < 1 / 12 || open.length < 3);
    const ts = replica.clock.tick();
    const child = nodeIdFor(ts);
    ops.push({ ts, parent: parent.id, meta: isDir ? `dir${i}` : `file${i}.txt`, child });
    depthOf.set(child, depth);
    if (isDir) {
      dirs.push(child);
      (dirsAt[depth] ??= []).push(child);
      open.push({ id: child, room: 10 + Math.floor(rand() * 91) });
    } else files.push(child);
    if (--parent.room === 0) {
      open[k] = open[open.length - 1]!;
      open.pop();
    }
  }
  return { dirs, dirsAt, files, depthOf, ops };
}

/** A realistic local op: file renames/moves and deletes, 2% directory moves (which may be skipped as cycles). */
function randomMove(shape: Shape, rand: () => number): { parent: NodeId; meta: Meta; child: NodeId } {
  const parent = rand() < 0.02 ? 'trash' : shape.dirs[Math.floor(rand() * shape.dirs.length)]!;
  if (rand() < 0.98) {
    const child = shape.files[Math.floor(rand() * shape.files.length)]!;
    return { parent, meta: `renamed${Math.floor(rand() * 1e6)}.txt`, child };
  }
  // A directory moves to another directory at its parent's depth: the cycle check runs (it walks up from the new
  // parent), the shape keeps its depth, as real reorganisations mostly do.
  const child = shape.dirs[Math.floor(rand() * shape.dirs.length)]!;
  const level = shape.dirsAt[shape.depthOf.get(child)! - 1]!;
  return {
    parent: level[Math.floor(rand() * level.length)]!,
    meta: `moved-dir${Math.floor(rand() * 1e6)}`,
    child,
  };
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function percentile(xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * CPU milliseconds (user + system) of this process. Throughput is measured in CPU time so that other work on a shared
 * 2-core machine does not show up as CRDT slowness; wall time is logged beside it.
 */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function depthStats(t: CrdtTree<Meta>): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (const [, p] of t.nodes()) {
    let d = 1;
    for (let q = t.get(p.parent); q !== undefined; q = t.get(q.parent)) d++;
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / t.size, max };
}

function sameTree(a: CrdtTree<Meta>, b: CrdtTree<Meta>): boolean {
  if (a.size !== b.size) return false;
  for (const [id, p] of a.nodes()) {
    const q = b.get(id);
    if (q === undefined || q.parent !== p.parent || q.meta !== p.meta) return false;
  }
  return true;
}

/** Heap bytes per node of a 100k-node tree (ids, meta, placements, child index; log truncated away). Child process. */
function heapChild(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const settle = (): number => {
    for (let i = 0; i < 3; i++) gc();
    return process.memoryUsage().heapUsed;
  };
  const h0 = settle();
  const rep = new TreeReplica<Meta>('A');
  // The shape (and its op array) is a temporary: after this line only the tree holds ids and meta.
  rep.tree.applyBatch(buildShape(rep, NODES, rng(1)).ops);
  const withLog = settle();
  rep.tree.truncateLogBelow(rep.clock.tick());
  const h1 = settle();
  const out = {
    bytesPerNode: (h1 - h0) / rep.tree.size,
    bytesPerNodeWithLog: (withLog - h0) / rep.tree.size,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function measureHeap(log: (s: string) => void): { bytesPerNode: number; bytesPerNodeWithLog: number } {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ['--expose-gc', self, '--heap-child'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) {
    log(`heap child failed: ${r.stderr}`);
    return { bytesPerNode: NaN, bytesPerNodeWithLog: NaN };
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    bytesPerNode: number;
    bytesPerNodeWithLog: number;
  };
}

export async function run(opts: BenchOptions): Promise<Record<string, Metric>> {
  const { log } = opts;
  const rand = rng(42);

  // ---- the 100k-node tree ----
  const a = new TreeReplica<Meta>('A');
  const shape = buildShape(a, NODES, rand);
  let t0 = nowMs();
  a.tree.applyBatch(shape.ops);
  const buildMs = nowMs() - t0;
  let depthSum = 0;
  let depthMax = 0;
  for (const f of shape.files) {
    const d = shape.depthOf.get(f)!;
    depthSum += d;
    depthMax = Math.max(depthMax, d);
  }
  log(
    `tree: ${a.tree.size} nodes, ${shape.dirs.length} directories, file depth mean ` +
      `${(depthSum / shape.files.length).toFixed(1)} max ${depthMax}; built in ${buildMs.toFixed(0)} ms`,
  );

  // ---- local ops: timed in groups of 10 (a timer read costs ~0.1 µs itself); median and p99 over the groups ----
  const GROUPS = 10_000;
  const GROUP = 10;
  const samples: number[] = new Array(GROUPS);
  const moves = Array.from({ length: GROUP }, () => randomMove(shape, rand));
  for (let g = 0; g < GROUPS; g++) {
    for (let i = 0; i < GROUP; i++) moves[i] = randomMove(shape, rand);
    const s = process.hrtime.bigint();
    for (let i = 0; i < GROUP; i++) {
      const m = moves[i]!;
      a.move(m.parent, m.meta, m.child);
    }
    samples[g] = Number(process.hrtime.bigint() - s) / 1000 / GROUP;
  }
  const localMedian = median(samples);
  log(
    `local op: median ${localMedian.toFixed(2)} µs, p99 ${percentile(samples, 0.99).toFixed(2)} µs ` +
      `(${GROUPS} groups of ${GROUP} ops, wall time)`,
  );

  // ---- the floor: the bare Map/Set work and log record a move needs, timed the same way on the same machine ----
  const floorNodes = new Map<NodeId, { parent: NodeId; meta: Meta }>();
  const floorKids = new Map<NodeId, Set<NodeId>>();
  for (const [id, p] of a.tree.nodes()) {
    floorNodes.set(id, { parent: p.parent, meta: p.meta });
    let set = floorKids.get(p.parent);
    if (set === undefined) floorKids.set(p.parent, (set = new Set()));
    set.add(id);
  }
  const floorLog: unknown[] = [];
  const floorSamples: number[] = new Array(GROUPS);
  let floorCounter = 0;
  for (let g = 0; g < GROUPS; g++) {
    for (let i = 0; i < GROUP; i++) moves[i] = randomMove(shape, rand);
    const s = process.hrtime.bigint();
    for (let i = 0; i < GROUP; i++) {
      const m = moves[i]!;
      const old = floorNodes.get(m.child)!;
      const from = floorKids.get(old.parent)!;
      from.delete(m.child);
      if (from.size === 0) floorKids.delete(old.parent);
      floorNodes.set(m.child, { parent: m.parent, meta: m.meta });
      let to = floorKids.get(m.parent);
      if (to === undefined) floorKids.set(m.parent, (to = new Set()));
      to.add(m.child);
      floorLog.push({ op: { ts: { counter: ++floorCounter, replica: 'A' }, ...m }, old });
    }
    floorSamples[g] = Number(process.hrtime.bigint() - s) / 1000 / GROUP;
  }
  const floorMedian = median(floorSamples);
  log(
    `floor (bare Map/Set update + log record, no cycle check, no change set): median ${floorMedian.toFixed(2)} µs`,
  );

  // ---- remote ops interleaved with local ones: B starts from A's state, both work concurrently, then exchange ----
  a.tree.truncateLogBelow(a.clock.tick());
  let c0 = cpuMs();
  const restored = CrdtTree.restore<Meta>(
    a.tree.nodes(),
    a.tree.log(),
    a.tree.truncatedBelow,
    a.tree.latestSeen().values(),
  );
  const restoreMs = cpuMs() - c0;
  const b = new TreeReplica<Meta>('B', restored);
  const exchange = (
    batch: number,
    rounds: number,
    oneByOne: boolean,
  ): { ops: number; ms: number; wallMs: number } => {
    let ops = 0;
    let ms = 0;
    let wallMs = 0;
    for (let r = 0; r < rounds; r++) {
      const fromA: Move<Meta>[] = [];
      const fromB: Move<Meta>[] = [];
      // Interleaved timestamps: A and B tick in lockstep, so each side's whole batch is concurrent with the other's.
      for (let i = 0; i < batch; i++) {
        const ma = randomMove(shape, rand);
        fromA.push(a.move(ma.parent, ma.meta, ma.child));
        const mb = randomMove(shape, rand);
        fromB.push(b.move(mb.parent, mb.meta, mb.child));
      }
      const w = nowMs();
      const s = cpuMs();
      if (oneByOne) {
        for (const op of fromB) a.receive([op]);
        for (const op of fromA) b.receive([op]);
      } else {
        a.receive(fromB);
        b.receive(fromA);
      }
      ms += cpuMs() - s;
      wallMs += nowMs() - w;
      ops += 2 * batch;
    }
    return { ops, ms, wallMs };
  };
  exchange(500, 4, false); // warm-up
  const BATCH = 500;
  const batched = exchange(BATCH, 60, false);
  const remoteOpsPerS = batched.ops / (batched.ms / 1000);
  log(
    `remote ops, batches of ${BATCH} concurrent with ${BATCH} local ops (each batch undoes/redoes ~${BATCH} entries): ` +
      `${remoteOpsPerS.toFixed(0)} ops/s (${batched.ops} ops in ${batched.ms.toFixed(0)} ms CPU, ` +
      `${batched.wallMs.toFixed(0)} ms wall)`,
  );
  const single = exchange(100, 4, true);
  const unbatchedOpsPerS = single.ops / (single.ms / 1000);
  log(
    `same workload, one remote op at a time (the paper's way), batch window 100: ${unbatchedOpsPerS.toFixed(0)} ops/s`,
  );
  const converged = sameTree(a.tree, b.tree);
  log(`replicas A and B converged after the exchanges: ${converged}`);
  if (!converged) throw new Error('benchmark replicas diverged');

  // ---- the wire: encode + decode of the same batches ----
  const sample: Move<Meta>[] = [...a.tree.log()].slice(-BATCH).map((e) => e.op);
  const encoded: Uint8Array[] = [];
  c0 = cpuMs();
  for (let i = 0; i < 200; i++)
    encoded.push(encodeOpBatch({ version: 1, replica: 'A', seq: i, ops: sample }));
  const encodeOpsPerS = (200 * BATCH) / ((cpuMs() - c0) / 1000);
  c0 = cpuMs();
  for (const enc of encoded) {
    decodeOpBatch<Meta>(enc, (x) => {
      if (typeof x !== 'string') throw new TypeError('meta');
      return x;
    });
  }
  const decodeOpsPerS = (200 * BATCH) / ((cpuMs() - c0) / 1000);
  const bytes = encoded[0]!.length;
  // A remote op is decoded once and applied once: the receive path's combined rate.
  const receiveOpsPerS = 1 / (1 / decodeOpsPerS + 1 / remoteOpsPerS);
  log(
    `codec: ${(bytes / BATCH).toFixed(1)} bytes/op; encode ${encodeOpsPerS.toFixed(0)} ops/s, decode ` +
      `${decodeOpsPerS.toFixed(0)} ops/s (CPU); decode + batched apply ${receiveOpsPerS.toFixed(0)} ops/s`,
  );

  // ---- replay of 1M logged ops into an empty tree ----
  const MILLION = 1_000_000;
  const replayOps: Move<Meta>[] = shape.ops.slice();
  const gen = new TreeReplica<Meta>('G');
  gen.clock.observe(shape.ops[shape.ops.length - 1]!.ts);
  while (replayOps.length < MILLION) {
    const m = randomMove(shape, rand);
    replayOps.push(gen.makeMove(m.parent, m.meta, m.child));
  }
  t0 = nowMs();
  c0 = cpuMs();
  const replay = CrdtTree.fromOps(replayOps);
  const replayS = (cpuMs() - c0) / 1000;
  const replayDepth = depthStats(replay);
  log(
    `replay: ${MILLION} ops into an empty tree in ${replayS.toFixed(2)} s CPU, ${((nowMs() - t0) / 1000).toFixed(2)} s ` +
      `wall (${replay.size} nodes, log ${replay.logLength}, depth mean ${replayDepth.mean.toFixed(1)} max ${replayDepth.max})`,
  );

  // ---- memory, measured in a child with --expose-gc ----
  const heap = measureHeap(log);
  log(
    `memory: ${heap.bytesPerNode.toFixed(0)} bytes/node (tree only), ${heap.bytesPerNodeWithLog.toFixed(0)} with its creation log`,
  );
  log(`restore of ${a.tree.size} nodes from materialized state (no replay): ${restoreMs.toFixed(0)} ms CPU`);

  return {
    local_op_us_median: {
      value: localMedian,
      unit: 'µs',
      baseline: PAPER_LOCAL_US,
      ratio: PAPER_LOCAL_US / localMedian,
      note: 'paper: 1–2 µs; median over groups of 10 ops; ratio = baseline/value (higher is better)',
    },
    local_op_floor_us_median: {
      value: floorMedian,
      unit: 'µs',
      note: 'the bare Map/Set work of a move on this machine, for scale (a busy machine inflates both)',
    },
    remote_ops_per_s: {
      value: remoteOpsPerS,
      unit: 'ops/s',
      baseline: PAPER_REMOTE_OPS_S,
      ratio: remoteOpsPerS / PAPER_REMOTE_OPS_S,
      note: `batches of ${BATCH}, each concurrent with ${BATCH} local ops (undo/redo every batch); CPU time; goal ≥ 50000`,
    },
    remote_ops_per_s_unbatched: {
      value: unbatchedOpsPerS,
      unit: 'ops/s',
      baseline: PAPER_REMOTE_OPS_S,
      ratio: unbatchedOpsPerS / PAPER_REMOTE_OPS_S,
      note: 'same workload applied one op at a time (each undoes/redoes the newer local ops); CPU time',
    },
    bytes_per_node: {
      value: heap.bytesPerNode,
      unit: 'B',
      note: 'heap per node incl. id, meta (a file name) and child index; log truncated',
    },
    bytes_per_node_with_log: {
      value: heap.bytesPerNodeWithLog,
      unit: 'B',
      note: 'before truncating the creation log',
    },
    replay_1m_ops_s: {
      value: replayS,
      unit: 's',
      baseline: (MILLION * PAPER_LOCAL_US) / 1e6,
      ratio: (MILLION * PAPER_LOCAL_US) / 1e6 / replayS,
      note: 'CPU time; baseline = 1M × the paper’s 1.5 µs local op; ratio = baseline/value',
    },
    restore_100k_ms: {
      value: restoreMs,
      unit: 'ms',
      note: 'reopen from materialized nodes, no replay (CPU time)',
    },
    remote_ops_per_s_with_decode: {
      value: receiveOpsPerS,
      unit: 'ops/s',
      baseline: PAPER_REMOTE_OPS_S,
      ratio: receiveOpsPerS / PAPER_REMOTE_OPS_S,
      note: 'decode + batched apply, the whole receive path',
    },
    codec_encode_ops_per_s: { value: encodeOpsPerS, unit: 'ops/s', note: 'batches of 500 (CPU time)' },
    codec_decode_ops_per_s: {
      value: decodeOpsPerS,
      unit: 'ops/s',
      note: 'batches of 500, fully validated (CPU time)',
    },
    codec_bytes_per_op: { value: bytes / BATCH, unit: 'B' },
  };
}

if (process.argv.includes('--heap-child') && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  heapChild();
}
