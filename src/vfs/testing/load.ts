// Test fixtures for driving a mounted filesystem under load (fio, stress-ng, crash rounds); knows arbor only through its CLI.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMounted, unmount } from '../../fuse/mount.js';

/** The built CLI, run as a user would (`node dist/src/cli/main.js …`). */
export const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
const MEMFS = fileURLToPath(new URL('../../fuse/examples/memfs-main.js', import.meta.url));

export const canMount = process.getuid?.() === 0 && fs.existsSync('/dev/fuse');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a program without blocking the event loop (the daemon may be this process's child); never rejects. The
 * program gets its own process group, and a timeout kills the whole group (stress-ng forks one child per stressor).
 */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; cwd?: string } = {},
): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const cap = (s: string, d: string): string => (s.length > 64 << 20 ? s : s + d);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout = cap(stdout, d)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = cap(stderr, d)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + String(err) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const note = timedOut ? `\n[killed after ${opts.timeoutMs ?? 120_000} ms]` : '';
      resolve({ code: timedOut ? 124 : (code ?? (signal ? 128 : 1)), stdout, stderr: stderr + note });
    });
  });
}

export async function runOk(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until `mnt` is (or is no longer) in the mount table; the mount table, not a stat, so a dead daemon can't hang us. */
export async function waitMounted(
  mnt: string,
  want: boolean,
  timeoutMs = 30_000,
  child?: ChildProcess,
): Promise<void> {
  const t0 = Date.now();
  while (isMounted(mnt) !== want) {
    if (child && child.exitCode !== null)
      throw new Error(`daemon exited ${child.exitCode} before ${mnt} was mounted`);
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`${mnt} ${want ? 'not mounted' : 'still mounted'} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** PIDs of processes holding /dev/fuse whose command line names `mnt` (finds a daemon that put itself in the background). */
export function fuseDaemonPids(mnt: string): number[] {
  const abs = path.resolve(mnt);
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv.some((a) => path.resolve(a) === abs)) continue;
      const fds = fs.readdirSync(`/proc/${name}/fd`);
      if (fds.some((fd) => safeReadlink(`/proc/${name}/fd/${fd}`) === '/dev/fuse')) out.push(Number(name));
    } catch {
      // the process went away while we looked
    }
  }
  return out;
}

/** SIGKILL a process we started, ignoring one that is already gone. */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function safeReadlink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** A filesystem under test: mount, unmount, and the daemon's pid for crash tests. */
export interface Target {
  readonly kind: 'arbor' | 'memfs';
  readonly root: string;
  readonly mnt: string;
  /** Prepare state (arbor init); once per target. */
  create(): Promise<void>;
  /** Mount; `foreground` keeps the daemon as our child so its pid is known. */
  mount(opts?: { foreground?: boolean }): Promise<void>;
  /** Clear the mount the way a user would (also after a crash). */
  unmount(): Promise<void>;
  daemonPid(): number | undefined;
  /** Offline consistency check of the stored state (`arbor fsck`); problems, empty when clean. Unmounted only. */
  fsck(): Promise<string[]>;
  /** What the daemon wrote to stderr (foreground mode), for failure messages. */
  log(): string;
  /** Unmount if mounted, kill what we started, remove the temp dir (kept, for a post-mortem, with `keep`). */
  destroy(opts?: { keep?: boolean }): Promise<void>;
}

/** arbor through its CLI: `arbor init <dir> <remote>`, `arbor mount <dir> <mnt>`, `arbor unmount <mnt>`. */
export class ArborTarget implements Target {
  readonly kind = 'arbor';
  readonly dir: string;
  readonly remote: string;
  readonly mnt: string;
  #child: ChildProcess | undefined;
  #stderr = '';

  constructor(readonly root: string) {
    this.dir = path.join(root, 'state');
    this.remote = path.join(root, 'remote');
    this.mnt = path.join(root, 'mnt');
    fs.mkdirSync(this.mnt, { recursive: true });
  }

  /** Whether the CLI has a working `mount` command yet (the harness runs on memfs until then). */
  static available(): boolean {
    return fs.existsSync(fileURLToPath(new URL('../../cli/commands/mount.js', import.meta.url)));
  }

  cli(args: string[], timeoutMs = 120_000): Promise<Result> {
    return run(process.execPath, [CLI, ...args], { timeoutMs });
  }

  async create(): Promise<void> {
    fs.mkdirSync(this.remote, { recursive: true });
    const r = await this.cli(['init', this.dir, this.remote]);
    if (r.code !== 0) throw new Error(`arbor init failed (${r.code}): ${r.stderr}`);
  }

  async mount(opts: { foreground?: boolean } = {}): Promise<void> {
    if (!opts.foreground) {
      const r = await this.cli(['mount', this.dir, this.mnt]);
      if (r.code !== 0) throw new Error(`arbor mount failed (${r.code}): ${r.stderr}`);
      if (!isMounted(this.mnt)) throw new Error(`arbor mount returned 0 but ${this.mnt} is not mounted`);
      return;
    }
    this.#stderr = '';
    // With UV_THREADPOOL_SIZE set the CLI serves in this very process (else it re-executes itself).
    const child = spawn(process.execPath, [CLI, 'mount', this.dir, this.mnt, '--foreground'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.#stderr = (this.#stderr + d).slice(-20_000);
    });
    this.#child = child;
    try {
      await waitMounted(this.mnt, true, 60_000, child);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n${this.#stderr}`, { cause: err });
    }
  }

  async unmount(): Promise<void> {
    const r = await this.cli(['unmount', this.mnt]);
    if (r.code !== 0) throw new Error(`arbor unmount failed (${r.code}): ${r.stderr}`);
    if (isMounted(this.mnt)) throw new Error(`arbor unmount returned 0 but ${this.mnt} is still mounted`);
    await this.#reap();
  }

  /** A foreground daemon must exit once unmounted; give it a moment, then make sure. */
  async #reap(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  async fsck(): Promise<string[]> {
    const r = await this.cli(['fsck', this.dir]);
    if (r.code === 0) return [];
    const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
    return lines.length > 0 ? lines : [`arbor fsck exited ${r.code}: ${r.stderr.trim()}`];
  }

  /** The process that holds /dev/fuse for this mount (a background mount's daemon is not our child). */
  daemonPid(): number | undefined {
    return fuseDaemonPids(this.mnt)[0] ?? (this.#child?.exitCode === null ? this.#child.pid : undefined);
  }

  /** The daemon's stderr: ours in foreground mode, else the tail of <dir>/mount.log. */
  log(): string {
    if (this.#child) return this.#stderr;
    try {
      return fs.readFileSync(path.join(this.dir, 'mount.log'), 'utf8').slice(-20_000);
    } catch {
      return '';
    }
  }

  async destroy(opts: { keep?: boolean } = {}): Promise<void> {
    const pids = fuseDaemonPids(this.mnt);
    if (isMounted(this.mnt)) {
      const r = await this.cli(['unmount', this.mnt]).catch(() => undefined);
      if (!r || r.code !== 0) await unmount(this.mnt, { lazy: true }).catch(() => undefined);
    }
    if (this.#child && this.#child.exitCode === null) this.#child.kill('SIGKILL');
    await this.#reap();
    // A daemon that outlived its mount (wedged in a handler) would spin forever: it is ours, end it.
    await sleep(500);
    for (const pid of pids) killQuietly(pid);
    if (!opts.keep) fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** The src/fuse in-memory example, for developing the harness itself (ARBOR_LOAD_TARGET=memfs); keeps nothing across mounts. */
export class MemfsTarget implements Target {
  readonly kind = 'memfs';
  readonly mnt: string;
  #child: ChildProcess | undefined;
  #stderr = '';

  constructor(readonly root: string) {
    this.mnt = path.join(root, 'mnt');
    fs.mkdirSync(this.mnt, { recursive: true });
  }

  async create(): Promise<void> {}

  async mount(): Promise<void> {
    const child = spawn(process.execPath, [MEMFS, this.mnt], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.#stderr += d));
    this.#child = child;
    await waitMounted(this.mnt, true, 30_000, child);
  }

  async unmount(): Promise<void> {
    await unmount(this.mnt);
    const child = this.#child;
    this.#child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    }
  }

  daemonPid(): number | undefined {
    return this.#child?.pid;
  }

  async fsck(): Promise<string[]> {
    return [];
  }

  log(): string {
    return this.#stderr;
  }

  async destroy(): Promise<void> {
    await unmount(this.mnt, { lazy: true }).catch(() => undefined);
    if (this.#child && this.#child.exitCode === null) this.#child.kill('SIGKILL');
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** The target the load tests use: arbor, unless ARBOR_LOAD_TARGET=memfs asks for the harness's own check. */
export function makeTarget(prefix: string): Target {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (process.env.ARBOR_LOAD_TARGET === 'memfs') return new MemfsTarget(root);
  return new ArborTarget(root);
}

/** Skip reason for the load tests, or false when they can run. */
export function loadSkip(): string | false {
  if (!canMount) return 'needs root and /dev/fuse';
  if (process.env.ARBOR_LOAD_TARGET === 'memfs') return false;
  if (!ArborTarget.available()) return 'arbor mount is not built (dist/src/cli/commands/mount.js missing)';
  return false;
}

// ---------------------------------------------------------------- fio

export interface FioJob {
  name: string;
  /** fio --rw: write, randwrite, rw, randrw, … */
  rw: string;
  bs: string;
  /** Per-job file size. */
  size: string;
  numjobs: number;
  ioengine?: string;
  /** More fio options, `--key=value`. */
  extra?: string[];
}

export interface FioReport {
  code: number;
  /** Jobs whose `error` field is non-zero, with fio's message. */
  failedJobs: string[];
  /** Lines fio printed about verification (bad magic, crc mismatch, …). */
  verifyMessages: string[];
  writtenBytes: number;
  readBytes: number;
  stderr: string;
  command: string;
}

interface FioJson {
  jobs?: Array<{ jobname: string; error: number; read: { io_bytes: number }; write: { io_bytes: number } }>;
}

/**
 * Run one fio workload in `dir` with crc32c verification. `verifyOnly` re-reads what an earlier run wrote
 * (same job options, so the same offsets and seeds) without writing: the check after a remount.
 */
export async function runFio(
  dir: string,
  job: FioJob,
  opts: { verifyOnly?: boolean } = {},
): Promise<FioReport> {
  const out = path.join(os.tmpdir(), `fio-${process.pid}-${job.name}-${Date.now()}.json`);
  const args = [
    `--name=${job.name}`,
    `--directory=${dir}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--size=${job.size}`,
    `--numjobs=${job.numjobs}`,
    `--ioengine=${job.ioengine ?? 'psync'}`,
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_fatal=0',
    '--verify_state_save=0', // else fio drops *-verify.state files into the cwd
    '--randrepeat=1',
    '--randseed=20261121',
    '--group_reporting=0',
    '--output-format=json',
    `--output=${out}`,
    ...(opts.verifyOnly ? ['--verify_only'] : []),
    ...(job.extra ?? []),
  ];
  const r = await run('fio', args, { timeoutMs: 600_000 });
  let parsed: FioJson = {};
  try {
    parsed = JSON.parse(stripToJson(fs.readFileSync(out, 'utf8'))) as FioJson;
  } catch {
    // fio died before writing its report: the exit code and stderr tell why
  }
  fs.rmSync(out, { force: true });
  const jobs = parsed.jobs ?? [];
  const failedJobs = jobs.filter((j) => j.error !== 0).map((j) => `${j.jobname}: error ${j.error}`);
  if (jobs.length === 0) failedJobs.push(`no job report (fio exit ${r.code})`);
  const text = r.stderr + '\n' + r.stdout;
  const verifyMessages = text.split('\n').filter((l) => /verify|crc32c|bad magic|bad header/i.test(l));
  return {
    code: r.code,
    failedJobs,
    verifyMessages,
    writtenBytes: jobs.reduce((s, j) => s + j.write.io_bytes, 0),
    readBytes: jobs.reduce((s, j) => s + j.read.io_bytes, 0),
    stderr: r.stderr.slice(-4000),
    command: `fio ${args.join(' ')}`,
  };
}

/** fio may print warnings before the JSON object in its output file. */
function stripToJson(s: string): string {
  const i = s.indexOf('{');
  return i < 0 ? s : s.slice(i);
}

// ---------------------------------------------------------------- stress-ng

export interface StressReport {
  code: number;
  /** stressor → failure lines. Empty means no stressor failed. */
  failed: Map<string, string[]>;
  /** Stressors that skipped themselves (feature missing in the filesystem or kernel), with stress-ng's reason. */
  skipped: Map<string, string>;
  /** Stressor → bogo ops completed (from the metrics table). */
  ops: Map<string, number>;
  output: string;
  command: string;
}

/**
 * Run the given filesystem stressors, one instance each, all at once in `dir`, with --verify. stress-ng 0.15 has
 * no pass/fail summary, so failures are its `fail:` lines, `terminated with an error` lines and errors naming a
 * stressor; skips are its `skipping` lines; progress is the bogo-ops column of the metrics table.
 */
export async function runStressNg(
  dir: string,
  stressors: string[],
  opts: { timeoutS: number; extra?: string[] },
): Promise<StressReport> {
  const args = [
    '--temp-path',
    dir,
    '--timeout',
    `${opts.timeoutS}s`,
    '--verify',
    '--metrics-brief',
    ...stressors.flatMap((s) => [`--${s}`, '1']),
    ...(opts.extra ?? []),
  ];
  const r = await run('stress-ng', args, { timeoutMs: (opts.timeoutS * 4 + 120) * 1000 });
  const output = r.stdout + r.stderr;
  const failed = new Map<string, string[]>();
  const skipped = new Map<string, string>();
  const ops = new Map<string, number>();
  const add = (name: string, line: string): void => {
    failed.set(name, [...(failed.get(name) ?? []), line.trim()]);
  };
  for (const line of output.split('\n')) {
    let m = /stress-ng: fail: +\[\d+\] ([\w-]+): (.*)/.exec(line);
    if (m) add(m[1]!, line);
    m = /process \[\d+\] \(([\w-]+)\) terminated with an error/.exec(line);
    if (m) add(m[1]!, line);
    m = /stress-ng: error: +\[\d+\] ([\w-]+): (.*)/.exec(line);
    if (m && stressors.includes(m[1]!)) add(m[1]!, line);
    m = /stress-ng: \w+: +\[\d+\] ([\w-]+): (.*skipping.*)/.exec(line);
    if (m) skipped.set(m[1]!, m[2]!);
    m = /stress-ng: metrc: +\[\d+\] ([\w-]+) +(\d+) +[\d.]+ /.exec(line);
    if (m && stressors.includes(m[1]!)) ops.set(m[1]!, Number(m[2]));
  }
  // Exit 3 (no resources) and 4 (not implemented) accompany skips, which are reported separately.
  if (![0, 3, 4].includes(r.code) && failed.size === 0)
    add('stress-ng', `exit ${r.code} without a failed stressor: ${output.slice(-2000)}`);
  return { code: r.code, failed, skipped, ops, output, command: `stress-ng ${args.join(' ')}` };
}
