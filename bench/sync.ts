// `npm run bench -- sync [--json] [files=N] [mounted]`: replication speed on the dir backend — propagation latency
// through the background sync loop, clone of a large tree with and without a checkpoint, remote ops applied per second.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cloneWorkspace,
  initWorkspace,
  openWorkspace as openWs,
  type Workspace,
} from '../src/cli/workspace.js';
import { Arbor } from '../src/index.js';
import { startSyncLoop } from '../src/sync/loop.js';
import { Replicator } from '../src/sync/replicator.js';
import type { BenchOptions, Metric } from './types.js';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const canMount = process.getuid?.() === 0 && existsSync('/dev/fuse');

function arbor(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], (err, _o, stderr) =>
      err ? reject(new Error(`arbor ${args[0]} failed: ${String(stderr).trim()}`)) : resolve(),
    );
  });
}

/**
 * Mounted: a file written and closed through A's mount until B's mount reads the same bytes, both daemons running
 * their background loops with default settings (1 s interval while active, 10 s idle; a close pushes after 300 ms). Then
 * remote ops applied per second by B's mounted loop: A (library) publishes a burst of creates, timed until B's
 * mount shows the last one.
 */
async function mountedRun(
  tmp: string,
  log: BenchOptions['log'],
  burst: number,
): Promise<{ lat: number[]; opsPerS: number }> {
  const remote = join(tmp, 'remote-mnt');
  const [da, db] = [join(tmp, 'ma-dir'), join(tmp, 'mb-dir')];
  const [ma, mb] = [join(tmp, 'ma'), join(tmp, 'mb')];
  await mkdir(ma);
  await mkdir(mb);
  await arbor('init', da, remote, '256');
  await arbor('clone', db, remote, '256', '--key-file', join(da, 'key'));
  await arbor('mount', da, ma);
  const lat: number[] = [];
  try {
    await arbor('mount', db, mb);
    try {
      for (let i = 0; i < 20; i++) {
        // A random pause first: writing right after the previous arrival would phase-lock with B's pull cycle.
        await sleep(Math.random() * 1500);
        await sleep(Math.random() * 300);
        const body = `payload ${i} ${Date.now()}`;
        const t0 = performance.now();
        await writeFile(join(ma, `p${i}.txt`), body);
        for (;;) {
          try {
            if ((await readFile(join(mb, `p${i}.txt`), 'utf8')) === body) break;
          } catch {
            /* not there yet */
          }
          await sleep(5);
        }
        lat.push(performance.now() - t0);
      }
      log(`mounted propagation: ${lat.length} files`);
    } finally {
      await arbor('unmount', mb);
    }
  } finally {
    await arbor('unmount', ma);
  }
  // Ops applied by a mounted loop: publish a burst from A (library), time B's mount until the last name appears.
  const a = await openWs(da);
  let ops: number;
  try {
    const fa = new Arbor(a.tree);
    await fa.mkdir('/burst');
    for (let i = 0; i < burst; i++) await (await fa.open(`/burst/f${i}`, 'w')).close();
    const r = await new Replicator(a).sync();
    ops = r.pushedOps;
  } finally {
    await a.close();
  }
  await arbor('mount', db, mb);
  const t0 = performance.now();
  try {
    for (;;) {
      try {
        await stat(join(mb, 'burst', `f${burst - 1}`));
        break;
      } catch {
        await sleep(20);
      }
    }
  } finally {
    await arbor('unmount', mb);
  }
  const secs = (performance.now() - t0) / 1000;
  log(`mounted apply: ${ops} ops visible through B's mount in ${secs.toFixed(1)} s`);
  return { lat, opsPerS: ops / secs };
}

/** A file written and closed on A until B's tree (pulled by its own background loop) reads the same bytes. */
async function propagation(tmp: string, remote: string, log: BenchOptions['log']): Promise<number[]> {
  const a = await initWorkspace(join(tmp, 'pa'), remote, { cacheBytes: 256 << 20 });
  const b = await clone(a, join(tmp, 'pb'), remote);
  const intervalMs = 100;
  const la = await startSyncLoop(a, { intervalMs, pushDelayMs: 20 });
  const lb = await startSyncLoop(b, { intervalMs, pushDelayMs: 20 });
  const fa = new Arbor(a.tree);
  const fb = new Arbor(b.tree);
  const out: number[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      await sleep(Math.random() * 300);
      const body = `payload ${i} ${Date.now()}`;
      const t0 = performance.now();
      await fa.writeFile(`/p${i}.txt`, body);
      for (;;) {
        try {
          if ((await fb.readFile(`/p${i}.txt`, 'utf8')) === body) break;
        } catch {
          /* not there yet */
        }
        await sleep(2);
      }
      out.push(performance.now() - t0);
    }
    log(`propagation: ${out.length} files, loop interval ${intervalMs} ms, push delay 20 ms`);
  } finally {
    await la.stop();
    await lb.stop();
    await a.close();
    await b.close();
  }
  return out;
}

async function clone(src: Workspace, dir: string, remote: string): Promise<Workspace> {
  const keyFile = join(src.dir, 'key');
  return cloneWorkspace(dir, remote, { keyFile, cacheBytes: 256 << 20 });
}

export async function run(opts: BenchOptions): Promise<Record<string, Metric>> {
  const log = opts.log;
  const files = Number(opts.args.find((a) => a.startsWith('files='))?.slice(6) ?? 100_000);
  const tmp = await mkdtemp(join(tmpdir(), 'arbor-bench-sync-'));
  const metrics: Record<string, Metric> = {};
  try {
    log(
      `load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    const burst = Number(opts.args.find((a) => a.startsWith('burst='))?.slice(6) ?? 10_000);
    let mountedOps: number | undefined;
    if (canMount && !opts.args.includes('unmounted')) {
      const m = await mountedRun(tmp, log, burst);
      metrics.propagation_ms_p50 = {
        value: Math.round(pct(m.lat, 50) * 10) / 10,
        unit: 'ms',
        note: 'close() on mount A until mount B reads it; both daemons’ background loops at their defaults (1 s active, 10 s idle interval; 100 ms push delay), dir backend',
      };
      metrics.propagation_ms_p95 = { value: Math.round(pct(m.lat, 95) * 10) / 10, unit: 'ms' };
      mountedOps = m.opsPerS;
    } else {
      const prop = await propagation(tmp, join(tmp, 'remote-prop'), log);
      metrics.propagation_ms_p50 = {
        value: Math.round(pct(prop, 50) * 10) / 10,
        unit: 'ms',
        note: 'NOT MOUNTED (no root or /dev/fuse): library write+close on A until readable on B, background loops',
      };
      metrics.propagation_ms_p95 = { value: Math.round(pct(prop, 95) * 10) / 10, unit: 'ms' };
    }

    // A large tree: `files` empty files in directories of 1000, made on A and published.
    const remote = join(tmp, 'remote-big');
    const a = await initWorkspace(join(tmp, 'a'), remote, { cacheBytes: 256 << 20 });
    const fa = new Arbor(a.tree);
    let t0 = performance.now();
    for (let i = 0; i < files; i++) {
      if (i % 1000 === 0) await fa.mkdir(`/d${i / 1000}`);
      const h = await fa.open(`/d${Math.floor(i / 1000)}/f${i}`, 'w');
      await h.close();
    }
    log(`made ${files} files in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const ra = new Replicator(a);
    t0 = performance.now();
    const pushed = await ra.sync();
    log(
      `pushed ${pushed.pushedBatches} batches (${pushed.pushedOps} ops) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // Clone without a checkpoint: replay every batch. CPU time beside wall time: on a shared machine it is the steadier.
    const cpu = (): number => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    let c0 = cpu();
    t0 = performance.now();
    const b = await clone(a, join(tmp, 'b'), remote);
    const rb = new Replicator(b);
    const pulled = await rb.pull();
    const noCp = (performance.now() - t0) / 1000;
    const noCpCpu = cpu() - c0;
    const opsPerS = pulled.ops / noCp;
    log(`clone without checkpoint: ${pulled.batches} batches, ${pulled.ops} ops, ${noCp.toFixed(1)} s`);
    const nb = b.tree.snapshot().size;
    await b.close();

    // With a checkpoint.
    await ra.writeCheckpoint();
    c0 = cpu();
    t0 = performance.now();
    const c = await clone(a, join(tmp, 'c'), remote);
    const rc = new Replicator(c);
    const cp = await rc.restoreLatestCheckpoint();
    const after = await rc.pull();
    const withCp = (performance.now() - t0) / 1000;
    const withCpCpu = cpu() - c0;
    log(
      `clone with checkpoint: ${cp.loaded} entries from the checkpoint, then ${after.batches} batches, ${withCp.toFixed(1)} s`,
    );
    const nc = c.tree.snapshot().size;
    await c.close();
    if (nb !== nc || nb < files) throw new Error(`clones disagree: ${nb} vs ${nc} paths for ${files} files`);

    metrics[`clone_${Math.round(files / 1000)}k_files_s`] = {
      value: Math.round(noCp * 100) / 100,
      unit: 's',
      note: 'no checkpoint: replays every op batch (dir backend)',
    };
    metrics[`clone_${Math.round(files / 1000)}k_files_checkpoint_s`] = {
      value: Math.round(withCp * 100) / 100,
      unit: 's',
      baseline: Math.round(noCp * 100) / 100,
      ratio: Math.round((noCp / withCp) * 100) / 100,
      note: 'from the newest checkpoint; ratio = speed-up over replay',
    };
    metrics[`clone_${Math.round(files / 1000)}k_files_cpu_s`] = {
      value: Math.round(noCpCpu * 100) / 100,
      unit: 's',
      note: 'CPU time (user+sys) of the replay clone',
    };
    metrics[`clone_${Math.round(files / 1000)}k_files_checkpoint_cpu_s`] = {
      value: Math.round(withCpCpu * 100) / 100,
      unit: 's',
      baseline: Math.round(noCpCpu * 100) / 100,
      ratio: Math.round((noCpCpu / withCpCpu) * 100) / 100,
      note: 'CPU time of the checkpoint clone; ratio = CPU saved over replay',
    };
    metrics.remote_ops_applied_per_s =
      mountedOps !== undefined
        ? {
            value: Math.round(mountedOps),
            unit: 'ops/s',
            note: `a ${burst}-create burst from another replica until visible through a mount running its loop`,
          }
        : {
            value: Math.round(opsPerS),
            unit: 'ops/s',
            note: 'NOT MOUNTED: fetch + open + apply of remote batches during the replay clone',
          };
    metrics.clone_replay_ops_applied_per_s = {
      value: Math.round(opsPerS),
      unit: 'ops/s',
      note: 'fetch + open + apply during the replay clone (library)',
    };
    await a.close();
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return metrics;
}
