// `npm run bench -- fuse [--json] [--dir D] [--size-mib N] [--files N] [--rounds N] [--phases P,...]`: arbor's mount
// side by side with a plain local directory and libfuse3's C passthrough_ll, in one run on one backing disk. Needs
// root and /dev/fuse. `--phases` (any of write, read, meta; default all) runs only some phases, for iterating on one.
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unmount } from '../src/fuse/mount.js';
import {
  CLI,
  fuseDaemonPids,
  killQuietly,
  run as exec,
  runOk,
  waitMounted,
} from '../src/vfs/testing/load.js';
import type { BenchOptions, Metric } from './types.js';

const EXAMPLES = '/usr/share/doc/libfuse3-dev/examples';
const MB = 1e6;

interface Knobs {
  dir: string;
  sizeMib: number;
  files: number;
  rounds: number;
  phases: ReadonlySet<Phase>;
}

const PHASES = ['write', 'read', 'meta'] as const;
type Phase = (typeof PHASES)[number];

function knobs(args: string[]): Knobs {
  const val = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(name + '='))?.slice(name.length + 1);
  };
  return {
    dir: val('--dir') ?? os.tmpdir(),
    sizeMib: Number(val('--size-mib') ?? 1024),
    files: Number(val('--files') ?? 10_000),
    rounds: Number(val('--rounds') ?? 5),
    phases: phasesOf(val('--phases')),
  };
}

function phasesOf(arg: string | undefined): ReadonlySet<Phase> {
  if (arg === undefined) return new Set(PHASES);
  const names = arg.split(',').filter((p) => p !== '');
  for (const p of names)
    if (!(PHASES as readonly string[]).includes(p)) throw new Error(`--phases: unknown phase '${p}'`);
  // Reading needs the file the write phase made.
  if (names.includes('read') && !names.includes('write')) names.push('write');
  return new Set(names as Phase[]);
}

/** One filesystem under test: where its files go, and how it is taken down. */
interface Target {
  name: 'arbor' | 'passthrough' | 'local';
  dir: string;
  stop(): Promise<void>;
  /** Resolves once the target's own background work is done (arbor: every dirty chunk uploaded). */
  idle?(): Promise<void>;
}

/**
 * Incompressible bytes that no other seed's stream contains: AES-128-CTR keystream under a key derived from the
 * seed, so arbor's dedup and compression get nothing for free. (A xorshift32 stream per seed did not do that: all
 * its seeds lie on one cycle, and the default seeds' rounds 1 and 3 shared ~780 MiB at a 244 MiB shift, which
 * arbor deduplicated.)
 */
async function writeNoise(file: string, bytes: number, seed: number): Promise<void> {
  const key = createHash('sha256').update(`arbor bench noise ${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const fd = fs.openSync(file, 'w');
  const piece = 8 << 20;
  const zeros = Buffer.alloc(piece);
  for (let off = 0; off < bytes; off += piece) {
    const n = Math.min(piece, bytes - off);
    fs.writeSync(fd, cipher.update(zeros.subarray(0, n)));
  }
  fs.closeSync(fd);
}

/** Copy passthrough_ll.c (and its helper header; either may be gzipped) to `dir` and compile it. */
async function buildPassthrough(dir: string, log: BenchOptions['log']): Promise<string> {
  for (const name of ['passthrough_ll.c', 'passthrough_helpers.h']) {
    const plain = path.join(EXAMPLES, name);
    if (fs.existsSync(plain)) fs.copyFileSync(plain, path.join(dir, name));
    else if (fs.existsSync(plain + '.gz')) {
      fs.writeFileSync(
        path.join(dir, name),
        (await import('node:zlib')).gunzipSync(fs.readFileSync(plain + '.gz')),
      );
    } else if (name.endsWith('.c')) throw new Error(`${plain}(.gz) not found: apt-get install libfuse3-dev`);
  }
  const flags = (await runOk('pkg-config', ['fuse3', '--cflags', '--libs'])).trim().split(/\s+/);
  const bin = path.join(dir, 'passthrough_ll');
  await runOk('gcc', ['-O2', '-Wall', '-I', dir, path.join(dir, 'passthrough_ll.c'), '-o', bin, ...flags]);
  log(`built ${bin} from ${EXAMPLES}/passthrough_ll.c`);
  return bin;
}

async function startPassthrough(bin: string, root: string): Promise<Target> {
  const backing = path.join(root, 'pt-backing');
  const mnt = path.join(root, 'pt-mnt');
  fs.mkdirSync(backing);
  fs.mkdirSync(mnt);
  // Its defaults (multi-threaded, timeout=1, cache=auto, no writeback): the C example as Debian ships it. Its 1 s
  // timeout is right for it (it cannot know when the backing directory changes); arbor's mount keeps names and
  // attributes for 60 s because it tells the kernel about every change it did not make through it (vfs/daemon.ts).
  const child: ChildProcess = spawn(bin, ['-f', '-o', `source=${backing}`, mnt], { stdio: 'ignore' });
  await waitMounted(mnt, true, 30_000, child);
  return {
    name: 'passthrough',
    dir: mnt,
    stop: async () => {
      await unmount(mnt).catch(() => unmount(mnt, { lazy: true }));
      if (child.exitCode === null) {
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await new Promise((r) => child.once('exit', r));
        clearTimeout(t);
      }
    },
  };
}

async function startArbor(root: string): Promise<Target> {
  const state = path.join(root, 'arbor-state');
  const remote = path.join(root, 'arbor-remote');
  const mnt = path.join(root, 'arbor-mnt');
  fs.mkdirSync(mnt);
  await runOk(process.execPath, [CLI, 'init', state, remote]);
  await runOk(process.execPath, [CLI, 'mount', state, mnt]);
  return {
    name: 'arbor',
    dir: mnt,
    idle: async () => {
      const deadline = Date.now() + 1_800_000;
      for (;;) {
        const out = await runOk(process.execPath, [CLI, 'status', state, '--json']);
        const pending = (JSON.parse(out) as { cache: { pendingUploads: number } }).cache.pendingUploads;
        if (pending === 0) return;
        if (Date.now() > deadline)
          throw new Error(`arbor still has ${pending} chunks to upload after 30 min`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    stop: async () => {
      const pids = fuseDaemonPids(mnt);
      const r = await exec(process.execPath, [CLI, 'unmount', mnt]);
      if (r.code !== 0) await unmount(mnt, { lazy: true }).catch(() => undefined);
      await new Promise((res) => setTimeout(res, 500));
      for (const pid of pids) killQuietly(pid);
    },
  };
}

async function timed(fn: () => Promise<void> | void): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function dd(input: string, output: string): Promise<void> {
  await runOk('dd', [`if=${input}`, `of=${output}`, 'bs=1M'], { timeoutMs: 1_800_000 });
}

/**
 * Start a timed phase from a quiet machine: every target's background work from the phase before (the kernel's
 * writeback of dirty pages, arbor's chunk uploads) would otherwise run during the next measurement, whichever
 * target that measures.
 */
async function settle(targets: readonly Target[]): Promise<void> {
  for (const t of targets) await t.idle?.();
  await runOk('sync', []);
}

async function dropCaches(): Promise<void> {
  await runOk('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type Series = Record<string, Record<Target['name'], number[]>>;

export async function run(opts: BenchOptions): Promise<Record<string, Metric>> {
  const k = knobs(opts.args);
  const log = opts.log;
  if (process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse'))
    throw new Error('the fuse bench needs root and /dev/fuse');
  const root = fs.mkdtempSync(path.join(k.dir, 'arbor-bench-fuse-'));
  const disk = (await runOk('df', ['--output=source,fstype', root]))
    .trim()
    .split('\n')
    .pop()!
    .trim()
    .replace(/\s+/g, ' ');
  log(
    `backing directory ${root} (${disk}); ${k.sizeMib} MiB sequential, ${k.files} files, ${k.rounds} rounds`,
  );
  const targets: Target[] = [];
  const series: Series = {};
  /** Seconds from the start of arbor's dd until its last chunk of that file was uploaded, per round. */
  const drain: number[] = [];
  const add = (metric: string, t: Target['name'], v: number): void => {
    series[metric] ??= { arbor: [], passthrough: [], local: [] };
    series[metric][t].push(v);
  };
  try {
    const bin = await buildPassthrough(fs.mkdtempSync(path.join(root, 'build-')), log);
    const localDir = path.join(root, 'local');
    fs.mkdirSync(localDir);
    targets.push({ name: 'local', dir: localDir, stop: async () => {} });
    targets.push(await startPassthrough(bin, root));
    targets.push(await startArbor(root));

    const bytes = k.sizeMib << 20;
    for (let r = 0; r < k.rounds; r++) {
      // A fresh source per round so arbor's dedup never sees data it already stored; it is in the page cache.
      const src = path.join(root, `src-${r}.bin`);
      if (k.phases.has('write')) await writeNoise(src, bytes, 0x5eed + r);
      // Each round starts with another target, so none is always measured right after the same neighbour (whose
      // freed page cache and background work the next one inherits: on the measurement VMs, free memory goes back to
      // the host, and the first touch of such a page costs far more than a reuse).
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of k.phases.has('write') ? order : []) {
        const f = path.join(t.dir, `seq-${r}.bin`);
        await settle(targets);
        const w = await timed(() => dd(src, f));
        add('seq_write', t.name, bytes / MB / w);
        if (t.idle) {
          // Not part of the write's time (arbor acknowledges writes once they are in its local cache, as a disk
          // filesystem does once they are in the page cache), but reported: how long the upload backlog lasts.
          const d = await timed(() => t.idle!());
          drain.push(w + d);
        }
        let rd = NaN;
        if (k.phases.has('read')) {
          await dd(f, '/dev/null'); // warm
          rd = await timed(() => dd(f, '/dev/null'));
          add('seq_read', t.name, bytes / MB / rd);
        }
        fs.rmSync(f);
        log(
          `round ${r + 1} ${t.name}: write ${(bytes / MB / w).toFixed(0)} MB/s` +
            (Number.isNaN(rd) ? '' : `, read ${(bytes / MB / rd).toFixed(0)} MB/s`),
        );
      }
      fs.rmSync(src, { force: true });

      for (const t of k.phases.has('meta') ? order : []) {
        await settle(targets);
        const d = path.join(t.dir, `meta-${r}`);
        fs.mkdirSync(d);
        const names = Array.from({ length: k.files }, (_, i) => path.join(d, `f${i}`));
        const c = await timed(() => {
          for (const n of names) {
            fs.closeSync(fs.openSync(n, 'wx'));
            fs.statSync(n);
          }
        });
        await dropCaches();
        const s = await timed(() => {
          for (const n of names) fs.statSync(n);
        });
        const u = await timed(() => {
          for (const n of names) fs.unlinkSync(n);
        });
        fs.rmdirSync(d);
        add('create', t.name, k.files / c);
        add('cold_stat', t.name, k.files / s);
        add('unlink', t.name, k.files / u);
        log(
          `round ${r + 1} ${t.name}: create+close+stat ${(k.files / c).toFixed(0)}/s, cold stat ${(k.files / s).toFixed(0)}/s, ` +
            `unlink ${(k.files / u).toFixed(0)}/s`,
        );
      }
    }
  } finally {
    for (const t of targets.reverse())
      await t.stop().catch((err: unknown) => log(`stopping ${t.name}: ${String(err)}`));
    fs.rmSync(root, { recursive: true, force: true });
  }

  const out: Record<string, Metric> = {};
  const bytes = k.sizeMib << 20;
  const where = `backing dir on ${disk} under ${k.dir}; median of ${k.rounds}; each phase after sync and arbor's uploads`;
  const units: Record<string, [string, string]> = {
    seq_write: ['MB/s', `dd bs=1M of ${k.sizeMib} MiB incompressible data from a page-cached file, no fsync`],
    seq_read: ['MB/s', `dd bs=1M of the same file, warm (read once before)`],
    create: ['ops/s', `${k.files} × open(O_CREAT|O_EXCL)+close+stat in one directory`],
    cold_stat: ['ops/s', `stat of the ${k.files} files after sync + drop_caches`],
    unlink: ['ops/s', `unlink of the ${k.files} files`],
  };
  for (const [metric, [unit, what]] of Object.entries(units)) {
    const s = series[metric];
    if (s === undefined) continue; // a phase not run
    const m = { arbor: median(s.arbor), passthrough: median(s.passthrough), local: median(s.local) };
    out[`${metric}_arbor`] = {
      value: Math.round(m.arbor),
      unit,
      baseline: Math.round(m.passthrough),
      ratio: m.arbor / m.passthrough,
      note: `${what}; baseline = passthrough_ll; ${where}`,
    };
    out[`${metric}_passthrough`] = {
      value: Math.round(m.passthrough),
      unit,
      note: `libfuse3 passthrough_ll; ${where}`,
    };
    out[`${metric}_local`] = { value: Math.round(m.local), unit, note: `plain directory; ${where}` };
  }
  const goal = (metric: string, name: string, target: number): void => {
    const s = series[metric];
    if (s === undefined) return;
    const ratio = median(s.arbor) / median(s.passthrough);
    out[name] = {
      value: Number(ratio.toFixed(3)),
      unit: 'x',
      baseline: target,
      ratio: ratio / target,
      note: `arbor / passthrough_ll, higher is better; goal ≥ ${target}`,
    };
  };
  if (drain.length > 0) {
    out.seq_write_uploaded_arbor = {
      value: Math.round(bytes / MB / median(drain)),
      unit: 'MB/s',
      note: `${k.sizeMib} MiB / (dd time + time until every chunk was on the remote, a directory on the same disk); ${where}`,
    };
  }
  goal('seq_write', 'seq_write_vs_passthrough', 0.8);
  goal('seq_read', 'seq_read_vs_passthrough', 1.0);
  goal('create', 'create_vs_passthrough', 1.0);
  goal('cold_stat', 'cold_stat_vs_passthrough', 1.0);
  goal('unlink', 'unlink_vs_passthrough', 1.0);
  return out;
}
