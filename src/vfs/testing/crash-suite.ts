// The kill -9 crash suite: rounds of (mount, check the tree against the journal, write, kill -9 the daemon mid-write,
// arbor unmount). Sized by a profile (normal suite vs crash.long.test.ts).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { appendEntry, checkTree, readJournal, render, type Segs } from './crash-journal.js';
import { killQuietly, loadSkip, makeTarget, sleep, type Target } from './load.js';

const WRITER = fileURLToPath(new URL('./crash-writer.js', import.meta.url));

export interface CrashProfile {
  rounds: number;
  /** Operations the writer must have made durable in a round before the kill may come. */
  minDurableOps: number;
  /** The kill comes this long (uniformly random) after that. */
  maxDelayMs: number;
}

/** The checker itself, on a plain directory: it must catch a lost, a changed and an unknown file. */
export function checkerSelfTest(): void {
  it('the crash checker catches a lost fsynced file, one changed byte, and a file nobody wrote', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-check-'));
    try {
      const j = path.join(dir, 'journal.jsonl');
      fs.mkdirSync(path.join(dir, 'm', 'b'), { recursive: true });
      const a: Segs = [[7, 5000]];
      for (const p of ['b/a', 'b/lost']) {
        appendEntry(j, { phase: 'intent', op: 'create', path: p, segs: a });
        appendEntry(j, { phase: 'done', op: 'create', path: p, segs: a });
      }
      fs.writeFileSync(path.join(dir, 'm', 'b', 'a'), render(a));
      assert.deepEqual(checkTree(path.join(dir, 'm'), 'b', readJournal(j)).problems, [
        'b/lost: fsynced file is missing',
      ]);
      fs.writeFileSync(path.join(dir, 'm', 'b', 'lost'), render(a));
      assert.deepEqual(checkTree(path.join(dir, 'm'), 'b', readJournal(j)).problems, []);
      const changed = render(a);
      changed[4000] ^= 1;
      fs.writeFileSync(path.join(dir, 'm', 'b', 'a'), changed);
      fs.writeFileSync(path.join(dir, 'm', 'b', 'stray'), 'x');
      const problems = checkTree(path.join(dir, 'm'), 'b', readJournal(j)).problems;
      assert.equal(problems.length, 2, problems.join('\n'));
      assert.match(problems.join('\n'), /b\/a: content/);
      assert.match(problems.join('\n'), /b\/stray: a file no writer ever created/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

/**
 * The writer, resumed after a crash, on a plain directory: a path whose last operation was in flight (journalled as
 * intent, never done) may hold either outcome, so the writer must leave it alone — appending to what it assumes is
 * the old content would make the next check see a file that is neither (a false "fsynced data lost").
 */
export function writerResumeSelfTest(): void {
  it('the crash writer leaves alone paths whose operation was in flight at the crash', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-resume-'));
    try {
      const j = path.join(dir, 'journal.jsonl');
      const m = path.join(dir, 'm');
      fs.mkdirSync(path.join(m, 'b'), { recursive: true });
      // b/r: durable old content, then a replace that happened on disk but was never journalled done.
      const old: Segs = [[11, 3000]];
      const replaced: Segs = [[12, 5000]];
      appendEntry(j, { phase: 'intent', op: 'create', path: 'b/r', segs: old });
      appendEntry(j, { phase: 'done', op: 'create', path: 'b/r', segs: old });
      appendEntry(j, { phase: 'intent', op: 'replace', path: 'b/r', segs: replaced, tmp: 'b/r.tmp-9' });
      fs.writeFileSync(path.join(m, 'b', 'r'), render(replaced));
      // b/u: durable, then an unlink that happened but was never journalled done.
      appendEntry(j, { phase: 'intent', op: 'create', path: 'b/u', segs: old });
      appendEntry(j, { phase: 'done', op: 'create', path: 'b/u', segs: old });
      appendEntry(j, { phase: 'intent', op: 'unlink', path: 'b/u' });
      assert.deepEqual(checkTree(m, 'b', readJournal(j)).problems, []);
      const before = readJournal(j).length;
      // Short stints, each checked like a round: a bad resume shows as a "neither" content or a writer error.
      for (let stint = 1; stint <= 3; stint++) {
        const out = await new Promise<string>((resolve) => {
          const w = spawn(process.execPath, [WRITER, m, 'b', j, String(stint), '25'], {
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let o = '';
          w.stdout.setEncoding('utf8').on('data', (d: string) => (o += d));
          w.stderr.setEncoding('utf8').on('data', (d: string) => (o += d));
          w.on('exit', () => resolve(o));
        });
        assert.match(out, /^done 25/, `stint ${stint}: ${out}`);
        assert.deepEqual(checkTree(m, 'b', readJournal(j)).problems, [], `after stint ${stint}`);
      }
      const touched = readJournal(j)
        .slice(before)
        .filter((e) => e.path === 'b/r' || e.path === 'b/u');
      assert.deepEqual(touched, [], 'unsettled paths were left alone');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

export function crashSuite(title: string, profile: CrashProfile): void {
  describe(title, { skip: loadSkip() }, () => {
    let t: Target;
    let journal = '';
    let failed = false;
    const base = 'crash';
    before(async () => {
      t = makeTarget('arbor-crash-');
      journal = path.join(t.root, 'journal.jsonl');
      await t.create();
    });
    after(async () => {
      // A failure keeps the arbor directory, the remote and the journal for a post-mortem.
      await t?.destroy({ keep: failed });
      if (failed) process.stderr.write(`crash test: state and journal kept in ${t.root}\n`);
    });

    const check = (when: string): number => {
      const { problems, files } = checkTree(t.mnt, base, readJournal(journal));
      if (problems.length > 0) failed = true;
      assert.deepEqual(
        problems,
        [],
        `${when}: the tree disagrees with what was fsynced:\n${problems.join('\n')}`,
      );
      return files;
    };

    for (let round = 1; round <= profile.rounds; round++) {
      it(`round ${round}: kill -9 during writes, arbor unmount, remount: fsynced data intact, tree consistent`, async (ctx) => {
        await t.mount();
        if (round === 1) {
          fs.mkdirSync(path.join(t.mnt, base));
          const fd = fs.openSync(t.mnt, 'r');
          fs.fsyncSync(fd);
          fs.closeSync(fd);
        } else {
          check(`after crash ${round - 1} and remount`);
        }
        const durableBefore = readJournal(journal).filter((e) => e.phase === 'done').length;

        const writer = spawn(process.execPath, [WRITER, t.mnt, base, journal, String(round)], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        writer.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
        writer.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
        const writerExit = new Promise<void>((r) => writer.on('exit', () => r()));
        try {
          const t0 = Date.now();
          while (
            readJournal(journal).filter((e) => e.phase === 'done').length <
            durableBefore + profile.minDurableOps
          ) {
            assert.equal(writer.exitCode, null, `the writer stopped before the kill: ${out}`);
            assert.ok(
              Date.now() - t0 < 60_000,
              `the writer made fewer than ${profile.minDurableOps} ops durable in 60 s`,
            );
            await sleep(20);
          }
          await sleep(Math.floor(Math.random() * profile.maxDelayMs));
          assert.equal(writer.exitCode, null, `the writer stopped before the kill: ${out}`);
          const pid = t.daemonPid();
          assert.ok(pid !== undefined, 'no daemon process holds /dev/fuse for the mount');
          process.kill(pid, 'SIGKILL');
          // With the daemon gone the kernel aborts the connection, so the writer's next call fails and it exits.
          const timer = setTimeout(() => killQuietly(writer.pid!), 15_000);
          await writerExit;
          clearTimeout(timer);
        } finally {
          if (writer.exitCode === null) killQuietly(writer.pid!);
        }
        assert.match(out, /stopped after \d+ ops/, `the writer did not see the crash: ${out}`);
        ctx.diagnostic(`writer: ${out.trim()}`);
        await t.unmount(); // clears the mount the dead daemon left
        const fsck = await t.fsck();
        if (fsck.length > 0) failed = true;
        assert.deepEqual(fsck, [], `arbor fsck after crash ${round}`);
      });
    }

    it('after the last crash: remount shows every fsynced file intact, then a clean unmount', async () => {
      await t.mount();
      const files = check('after the last crash');
      const done = readJournal(journal).filter((e) => e.phase === 'done' && e.op !== 'mkdir').length;
      assert.ok(
        done >= profile.rounds * profile.minDurableOps,
        `only ${done} durable operations in all rounds`,
      );
      assert.ok(files > 0, 'no files survived at all');
      await t.unmount();
      assert.deepEqual(await t.fsck(), [], 'arbor fsck after the last clean unmount');
    });
  });
}
