// The crash test's workload, run as its own process: creates, replaces (temp + rename), appends and unlinks files
// under <mnt>/<base>, journalling each operation before it starts and after its fsyncs return. Runs until an
// operation fails (the daemon was killed: ENOTCONN) or `maxOps`. Usage: crash-writer <mnt> <base> <journal> <seed> [maxOps]
import fs from 'node:fs';
import path from 'node:path';
import { appendEntry, bytesOf, expectations, readJournal, type Segs } from './crash-journal.js';

const [mnt, base, journal, seedArg, maxArg] = process.argv.slice(2);
if (!mnt || !base || !journal || !seedArg) {
  process.stderr.write('usage: crash-writer <mnt> <base> <journal> <seed> [maxOps]\n');
  process.exit(2);
}
const maxOps = Number(maxArg ?? Infinity);
let rng = Number(seedArg) * 2654435761 || 1;
function rand(n: number): number {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng % n;
}

/** Sizes around the interesting edges: empty, sub-page, page, chunk-ish and multi-MiB. */
const SIZES = [0, 1, 100, 4095, 4096, 65_537, 300_000, 1 << 20, (3 << 20) + 17];

const abs = (rel: string): string => path.join(mnt, rel);

function fsyncDir(rel: string): void {
  const fd = fs.openSync(abs(rel), 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function writeAll(rel: string, segs: Segs, flags: string): void {
  const fd = fs.openSync(abs(rel), flags, 0o644);
  try {
    for (const [seed, len] of segs) {
      const data = bytesOf(seed, len);
      // Uneven write sizes, so writes straddle pages and chunk boundaries.
      for (let off = 0; off < data.length;) {
        const n = Math.min(data.length - off, 1 + rand(200_000));
        fs.writeSync(fd, data, off, n);
        off += n;
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// Resume from the journal: the files that are durably present, the directories made. A path whose last operation
// was in flight at the crash (intent journalled, done never) may hold either outcome — a replace may have renamed
// over it, an unlink removed it, an append landed after its fsync — so it is left alone from now on: appending to
// what the journal says is its content would make the next check see content that is neither (a false "lost").
const state = expectations(readJournal(journal));
const files = new Map<string, Segs>();
const dirs: string[] = [base];
for (const [p, x] of state) {
  if (x.isDir) dirs.push(p);
  else if (x.durable && x.maybe.length === 0 && x.appendTo === undefined) files.set(p, x.durable);
}

let ops = 0;
const tag = `s${seedArg}`;
try {
  for (; ops < maxOps; ops++) {
    const pick = rand(100);
    const existing = [...files.keys()];
    if (pick < 8 && dirs.length < 12) {
      const d = path.join(dirs[rand(dirs.length)]!, `d-${tag}-${ops}`);
      fs.mkdirSync(abs(d));
      fsyncDir(path.dirname(d));
      appendEntry(journal, { phase: 'done', op: 'mkdir', path: d });
      dirs.push(d);
    } else if (pick < 55 || existing.length === 0) {
      const p = path.join(dirs[rand(dirs.length)]!, `f-${tag}-${ops}`);
      const segs: Segs = [[rand(1 << 30) + 1, SIZES[rand(SIZES.length)]!]];
      appendEntry(journal, { phase: 'intent', op: 'create', path: p, segs });
      writeAll(p, segs, 'wx');
      fsyncDir(path.dirname(p));
      appendEntry(journal, { phase: 'done', op: 'create', path: p, segs });
      files.set(p, segs);
    } else if (pick < 72) {
      const p = existing[rand(existing.length)]!;
      const tmp = `${p}.tmp-${ops}`;
      const segs: Segs = [[rand(1 << 30) + 1, SIZES[rand(SIZES.length)]!]];
      appendEntry(journal, { phase: 'intent', op: 'replace', path: p, segs, tmp });
      writeAll(tmp, segs, 'wx');
      fs.renameSync(abs(tmp), abs(p));
      fsyncDir(path.dirname(p));
      appendEntry(journal, { phase: 'done', op: 'replace', path: p, segs, tmp });
      files.set(p, segs);
    } else if (pick < 90) {
      const p = existing[rand(existing.length)]!;
      const segs: Segs = [...files.get(p)!, [rand(1 << 30) + 1, SIZES[rand(SIZES.length)]!]];
      appendEntry(journal, { phase: 'intent', op: 'append', path: p, segs });
      writeAll(p, [segs[segs.length - 1]!], 'a');
      appendEntry(journal, { phase: 'done', op: 'append', path: p, segs });
      files.set(p, segs);
    } else {
      const p = existing[rand(existing.length)]!;
      appendEntry(journal, { phase: 'intent', op: 'unlink', path: p });
      fs.unlinkSync(abs(p));
      fsyncDir(path.dirname(p));
      appendEntry(journal, { phase: 'done', op: 'unlink', path: p });
      files.delete(p);
    }
  }
  process.stdout.write(`done ${ops}\n`);
} catch (err) {
  // Expected when the daemon dies under us (ENOTCONN / ECONNABORTED); the test decides whether it was.
  process.stdout.write(`stopped after ${ops} ops: ${(err as NodeJS.ErrnoException).code ?? String(err)}\n`);
}
