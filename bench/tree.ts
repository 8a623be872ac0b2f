// Tree benchmark: library-API create rate (100k files in 1k directories), reopen time, bytes per file on disk and in
// memory. Content goes to an in-memory chunk store, so this measures the tree and its SQLite state only.
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { openArbor } from '../src/index.js';
import type { Arbor } from '../src/index.js';
import { MemChunkStore } from '../src/tree/testing/mem-store.js';
import type { BenchOptions, Metric } from './types.js';

function dirBytes(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir)) n += statSync(join(dir, name)).size;
  return n;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1e6;
}

/** A full GC even without --expose-gc (the flag can be set at run time; `gc` is then visible in a new context). */
const gc: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

export async function run(opts: BenchOptions): Promise<Record<string, Metric>> {
  const files = Number(opts.args.find((a) => a.startsWith('--files='))?.slice(8) ?? 100_000);
  const dirs = Math.max(1, Math.round(files / 100));
  const base = mkdtempSync(join(tmpdir(), 'arbor-bench-tree-'));
  const store = new MemChunkStore();
  try {
    let fs: Arbor | undefined = await openArbor(base, { store, replica: 'bench' });
    opts.log(`creating ${files} files in ${dirs} directories`);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let d = 0; d < dirs; d++) await fs.mkdir(`/d${d}`);
    const payload = Buffer.from('x');
    for (let i = 0; i < files; i++) {
      await fs.writeFile(`/d${i % dirs}/f${i}`, payload);
      if (i % 20000 === 19999) opts.log(`  ${i + 1} files`);
    }
    const createS = (performance.now() - t0) / 1000;
    const createCpu = cpuSeconds(c0);
    await fs.close();
    fs = undefined; // let the creating instance be collected before measuring the reopened one
    const disk = dirBytes(base);

    const m0 = heapUsed();
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    fs = await openArbor(base, { store, replica: 'bench' });
    const reopenS = (performance.now() - t1) / 1000;
    const reopenCpu = cpuSeconds(c1);
    // touch every directory so lazily built state is counted too
    const m1 = heapUsed();
    let seen = 0;
    const reopened: Arbor = fs;
    for (let d = 0; d < dirs; d++) seen += reopened.tree.readdir(reopened.resolve(`/d${d}`)).length - 2;
    if (seen !== files) throw new Error(`reopened tree lists ${seen} files, expected ${files}`);
    await reopened.close();
    return {
      create_files_per_s: {
        value: Math.round(files / createS),
        unit: 'files/s',
        note: `${files} writeFile calls (create + 1-byte content, one transaction each) in ${dirs} dirs: ${createS.toFixed(2)} s wall, ${createCpu.toFixed(2)} s CPU (${Math.round(files / createCpu)} files per CPU-second)`,
      },
      reopen_100k_files_s: {
        value: Number(reopenS.toFixed(3)),
        unit: 's',
        note: `goal < 1 s; ${files} files; ${reopenCpu.toFixed(3)} s CPU`,
      },
      bytes_per_file_disk: {
        value: Math.round(disk / files),
        unit: 'B',
        note: 'state.sqlite3 + WAL after close',
      },
      bytes_per_file_memory: {
        value: Math.round((m1 - m0) / files),
        unit: 'B',
        note: 'JS heap held by the reopened tree, after full GCs (before any directory listing is cached)',
      },
    };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
