// The crash test's journal: what a writer has made durable (fsync of file and directory returned) and what was in
// flight, and the check of a mounted tree against it. Knows nothing of arbor; file contents come from seeds.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** A file's content as a list of (seed, length) pieces, so the checker can regenerate it byte for byte. */
export type Segs = Array<[seed: number, len: number]>;

/**
 * One journal line. `intent` is written before an operation starts, `done` after its fsyncs returned:
 * - create/replace: the path's content becomes `segs` (replace = write a temp file, fsync, rename over, fsync dir);
 * - append: `segs` is the full new content; the old content is a prefix of it;
 * - unlink: the path goes away.
 */
export interface Entry {
  phase: 'intent' | 'done';
  op: 'create' | 'replace' | 'append' | 'unlink' | 'mkdir';
  path: string;
  segs?: Segs;
  /** replace: the temp name used on the way. */
  tmp?: string;
}

/** Deterministic, incompressible bytes (xorshift32), so arbor's dedup and compression can't make it easy. */
export function bytesOf(seed: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let s = seed >>> 0 || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    b.writeUInt32LE(s, i);
  }
  for (; i < len; i++) b[i] = (seed + i) & 255;
  return b;
}

export function render(segs: Segs): Buffer {
  return Buffer.concat(segs.map(([seed, len]) => bytesOf(seed, len)));
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function appendEntry(journal: string, e: Entry): void {
  fs.appendFileSync(journal, JSON.stringify(e) + '\n');
}

export function readJournal(journal: string): Entry[] {
  if (!fs.existsSync(journal)) return [];
  return fs
    .readFileSync(journal, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Entry);
}

/** Per path: the durable state and what an unfinished operation may have left instead. */
export interface Expect {
  /** Durable content, or null for "durably absent", undefined if never durable. */
  durable: Segs | null | undefined;
  /** Contents an unfinished operation may have produced (null = absent). */
  maybe: Array<Segs | null>;
  /** An unfinished append: any prefix of this content at least as long as the durable content is allowed. */
  appendTo?: Segs;
  isDir?: boolean;
}

export function expectations(entries: Entry[]): Map<string, Expect> {
  const m = new Map<string, Expect>();
  const get = (p: string): Expect => {
    let e = m.get(p);
    if (!e) m.set(p, (e = { durable: undefined, maybe: [] }));
    return e;
  };
  for (const e of entries) {
    const x = get(e.path);
    if (e.op === 'mkdir') {
      x.isDir = true;
      continue;
    }
    if (e.phase === 'intent') {
      if (e.op === 'unlink') x.maybe.push(null);
      else if (e.op === 'append') x.appendTo = e.segs!;
      else x.maybe.push(e.segs!);
      if (e.tmp) get(e.tmp).maybe.push(e.segs!, null);
    } else {
      x.durable = e.op === 'unlink' ? null : e.segs!;
      x.maybe = [];
      delete x.appendTo;
      if (e.tmp) get(e.tmp).maybe = [null];
    }
  }
  return m;
}

/**
 * Walk the mounted tree and compare it with the journal. Returns a list of problems (empty = consistent):
 * every durable file has exactly its content, nothing durable is missing, nothing unknown appeared, every
 * entry stats and reads fully, and no directory lists a name twice.
 */
export function checkTree(
  mnt: string,
  base: string,
  entries: Entry[],
): { problems: string[]; files: number } {
  const want = expectations(entries);
  const problems: string[] = [];
  const seen = new Set<string>();
  let files = 0;
  const walk = (rel: string): void => {
    const abs = path.join(mnt, rel);
    let names: string[];
    try {
      names = fs.readdirSync(abs);
    } catch (err) {
      problems.push(`readdir ${rel}: ${(err as Error).message}`);
      return;
    }
    if (new Set(names).size !== names.length)
      problems.push(`readdir ${rel} lists a name twice: ${names.join(',')}`);
    for (const name of names) {
      const r = path.join(rel, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(path.join(mnt, r));
      } catch (err) {
        problems.push(`lstat ${r} (listed by readdir): ${(err as Error).message}`);
        continue;
      }
      seen.add(r);
      if (st.isDirectory()) {
        walk(r);
        continue;
      }
      files++;
      let data: Buffer;
      try {
        data = fs.readFileSync(path.join(mnt, r));
      } catch (err) {
        problems.push(`read ${r}: ${(err as Error).message}`);
        continue;
      }
      if (data.length !== st.size) problems.push(`${r}: read ${data.length} bytes but stat says ${st.size}`);
      const x = want.get(r);
      if (!x) {
        problems.push(`${r}: a file no writer ever created`);
        continue;
      }
      if (!allowed(x, data)) {
        problems.push(
          `${r}: content (${data.length} bytes, sha ${sha(data).slice(0, 12)}) is neither the fsynced version ` +
            `(${x.durable ? render(x.durable).length + ' bytes' : String(x.durable)}) nor an in-flight one`,
        );
      }
    }
  };
  walk(base);
  for (const [p, x] of want) {
    if (x.isDir) {
      if (!seen.has(p)) problems.push(`${p}: directory made durable (mkdir + fsync of parent) is missing`);
      continue;
    }
    if (x.durable && !seen.has(p) && !x.maybe.includes(null)) problems.push(`${p}: fsynced file is missing`);
    if (x.durable === null && seen.has(p) && x.maybe.length === 0)
      problems.push(`${p}: durably unlinked file is back`);
  }
  return { problems, files };
}

function allowed(x: Expect, data: Buffer): boolean {
  const h = sha(data);
  const candidates = [...(x.durable ? [x.durable] : []), ...x.maybe.filter((s): s is Segs => s !== null)];
  if (candidates.some((s) => sha(render(s)) === h)) return true;
  if (x.durable === undefined && x.maybe.length > 0 && isPrefixOfAny(data, candidates)) return true; // a create in flight
  if (x.appendTo) {
    const full = render(x.appendTo);
    const min = x.durable ? render(x.durable).length : 0;
    return data.length >= min && data.length <= full.length && full.subarray(0, data.length).equals(data);
  }
  return false;
}

/** A create that never reached its fsync may show any prefix of what was being written. */
function isPrefixOfAny(data: Buffer, candidates: Segs[]): boolean {
  return candidates.some((s) => {
    const full = render(s);
    return data.length <= full.length && full.subarray(0, data.length).equals(data);
  });
}
