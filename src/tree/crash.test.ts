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

/**
 * Run the child until it has acknowledged at least `minAcks` ops, wait a random moment more, then SIGKILL it.
 * Resolves with the last op acknowledged and the last one made durable (group commit; -1 if none).
 */
function runAndKill(
  dir: string,
  round: number,
  minAcks: number,
  extraMs: number,
  group = false,
): Promise<{ acked: number; durable: number }> {
  return new Promise((resolve, reject) => {
    const args = [CHILD, dir, String(round), ...(group ? ['group'] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let last = -1;
    let durable = -1;
    let buf = '';
    let err = '';
    let armed = false;
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('ack ')) last = Number(l.slice(4));
        if (l.startsWith('durable ')) durable = Number(l.slice(8));
      }
      if (!armed && last + 1 >= minAcks) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), extraMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited on its own: ${err}`));
      else resolve({ acked: last, durable });
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
 * Every state round r may be in when ops `from`..`to` - 1 returned and op `to` was in flight: after op from-1, and
 * after each transaction of the ops from..to (a library call like writeFile is several transactions). Without group
 * commit from = to: only the op in flight may be partly there.
 */
async function allowedStates(r: number, from: number, to: number): Promise<Set<string>> {
  const t = tempDir('arbor-crash-oracle-');
  const fs = await openArbor(t.dir, { store: new MemChunkStore(4096) });
  try {
    for (let i = 0; i < from; i++) await workloadOp(fs, r, i);
    const states = new Set([listing(fs, r)]);
    const off = fs.tree.onChange(() => states.add(listing(fs, r)));
    for (let i = from; i <= to; i++) await workloadOp(fs, r, i);
    off();
    return states;
  } finally {
    await fs.close();
    t.cleanup();
  }
}

/**
 * Rounds of: a child runs the workload and is SIGKILLed; the state must reopen consistent, hold round r in one of
 * the allowed states (every op up to `mustHave` of the kill, plus any whole transactions after it) and leave earlier
 * rounds as they were.
 */
async function crashRounds(group: boolean): Promise<void> {
  const t = tempDir('arbor-crash-');
  const finals: string[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const minAcks = 5 + Math.floor(Math.random() * 60);
      const { acked, durable } = await runAndKill(
        t.dir,
        round,
        minAcks,
        Math.floor(Math.random() * 30),
        group,
      );
      const fs = await openArbor(t.dir, { store: new DirChunkStore(join(t.dir, 'chunks'), 4096) });
      try {
        fs.tree.verify();
        const got = listing(fs, round);
        // Without group commit ops 0..acked are there and op acked+1 (in flight) may be partly; with it, only the
        // ops up to the last flushState must be, and any whole transactions after them may be.
        const from = group ? durable + 1 : acked + 1;
        const allowed = await allowedStates(round, from, acked + 1);
        assert.ok(
          allowed.has(got),
          `round ${round}: after ${acked + 1} acked ops (${durable + 1} durable) the tree is\n${got}\nallowed:\n${[...allowed].join('\n--\n')}`,
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
}

describe('crash safety', () => {
  it(`survives ${ROUNDS} SIGKILLs mid-workload with every acknowledged op intact`, () => crashRounds(false));
  it(`with group commit: survives ${ROUNDS} SIGKILLs with every flushed op intact, whole ops only`, () =>
    crashRounds(true));
});
