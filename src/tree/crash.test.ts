// Crash test: a child runs a workload and is killed with SIGKILL at random points, many times; after each kill the
// state must reopen consistent and contain every op the child acknowledged (and nothing half-done).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openArbor } from '../index.js';
import type { Arbor } from '../index.js';
import { DirChunkStore } from './testing/dir-store.js';
import { MemChunkStore } from './testing/mem-store.js';
import { workloadOp } from './testing/crash-workload.js';
import { tempDir } from './testing/helpers.js';

const CHILD = fileURLToPath(new URL('./testing/crash-child.js', import.meta.url));
const ROUNDS = Number(process.env.ARBOR_CRASH_ROUNDS ?? 20);

/** Run the child until it has acknowledged at least `minAcks` ops, wait a random moment more, then SIGKILL it. */
function runAndKill(dir: string, round: number, minAcks: number, extraMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let last = -1;
    let buf = '';
    let err = '';
    let armed = false;
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) if (l.startsWith('ack ')) last = Number(l.slice(4));
      if (!armed && last + 1 >= minAcks) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), extraMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited on its own: ${err}`));
      else resolve(last);
    });
  });
}

/**
 * A synchronous, id-independent listing of round r's subtree: path, kind, nlink, size, current chunk ids, xattrs.
 * Synchronous so it can be taken inside a change event, between the transactions of one library call.
 */
function listing(fs: Arbor, r: number): string {
  const out: string[] = [];
  for (const [path, e] of fs.tree.snapshot()) {
    if (path !== `/r${r}` && !path.startsWith(`/r${r}/`)) continue;
    const a = fs.tree.getattr(e.node);
    let line = `${path} ${e.kind} nlink=${a.nlink} size=${a.size}`;
    if (e.kind === 'file') {
      const vs = fs.tree.versions(e.node);
      line += ` ${(vs[vs.length - 1]?.chunks ?? []).map((c) => c.id.slice(0, 8)).join('+')}`;
      line += ` x=${fs.tree.listxattr(e.node).join(',')}`;
    }
    out.push(line);
  }
  return out.join('\n');
}

/**
 * Every state round r may be in after n acknowledged ops: after op n-1 returned, and after each transaction of op n
 * (the op in flight at the kill; a library call like writeFile is several transactions).
 */
async function allowedStates(r: number, n: number): Promise<Set<string>> {
  const t = tempDir('arbor-crash-oracle-');
  const fs = await openArbor(t.dir, { store: new MemChunkStore(4096) });
  try {
    for (let i = 0; i < n; i++) await workloadOp(fs, r, i);
    const states = new Set([listing(fs, r)]);
    const off = fs.tree.onChange(() => states.add(listing(fs, r)));
    await workloadOp(fs, r, n);
    off();
    return states;
  } finally {
    await fs.close();
    t.cleanup();
  }
}

describe('crash safety', () => {
  it(`survives ${ROUNDS} SIGKILLs mid-workload with every acknowledged op intact`, async () => {
    const t = tempDir('arbor-crash-');
    const finals: string[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const minAcks = 5 + Math.floor(Math.random() * 60);
        const acked = await runAndKill(t.dir, round, minAcks, Math.floor(Math.random() * 30));
        const fs = await openArbor(t.dir, { store: new DirChunkStore(join(t.dir, 'chunks'), 4096) });
        try {
          fs.tree.verify();
          const got = listing(fs, round);
          // Ops 0..acked returned; op acked+1 was in flight at the kill: any of its transactions may have committed.
          const allowed = await allowedStates(round, acked + 1);
          assert.ok(
            allowed.has(got),
            `round ${round}: after ${acked + 1} acked ops the tree is\n${got}\nallowed:\n${[...allowed].join('\n--\n')}`,
          );
          // earlier rounds are untouched
          for (let r = 0; r < round; r++) assert.equal(listing(fs, r), finals[r]);
          finals.push(got);
        } finally {
          await fs.close();
        }
      }
    } finally {
      t.cleanup();
    }
  });
});
