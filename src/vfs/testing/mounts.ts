// Test helpers: a fresh arbor directory (real CachedChunkStore over a dir remote) mounted by the test daemon in a
// child process, so blocking tools never stall the server. Test-only; always stop() in after().
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initWorkspace } from '../../cli/workspace.js';
import { isMounted, unmount } from '../../fuse/mount.js';

const DAEMON = fileURLToPath(new URL('./daemon-main.js', import.meta.url));
export const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

export const canMount = process.getuid?.() === 0 && fs.existsSync('/dev/fuse');
export const mountSkip: string | false = canMount ? false : 'needs root and /dev/fuse';

/** A temp base holding `ws` (the arbor directory), `remote` and `mnt`. */
export async function tempArbor(
  prefix = 'arbor-vfs-',
): Promise<{ base: string; dir: string; remote: string; mnt: string }> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dir = path.join(base, 'ws');
  const remote = path.join(base, 'remote');
  const mnt = path.join(base, 'mnt');
  fs.mkdirSync(mnt);
  const ws = await initWorkspace(dir, remote, { cacheBytes: 256 << 20 });
  await ws.close();
  return { base, dir, remote, mnt };
}

export class TestMount {
  #next = 1;
  readonly #waiting = new Map<number, (m: { result?: unknown; error?: string }) => void>();
  readonly exited: Promise<number | null>;
  stderr = '';

  private constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    readonly mnt: string,
  ) {
    child.on('message', (raw) => {
      const m = raw as { id?: number; result?: unknown; error?: string };
      if (m.id !== undefined) this.#waiting.get(m.id)?.(m);
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((r) => child.on('exit', (code) => r(code)));
  }

  static async start(dir: string, mnt: string, args: string[] = []): Promise<TestMount> {
    const child = spawn(process.execPath, [DAEMON, dir, mnt, ...args], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const t = new TestMount(child, dir, mnt);
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: { ready?: boolean }) => m.ready && resolve());
      void t.exited.then((code) => reject(new Error(`daemon exited ${code}: ${t.stderr}`)));
    });
    return t;
  }

  get pid(): number {
    return this.child.pid!;
  }

  call(cmd: string, fields: Record<string, string> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.result)));
      this.child.send({ id, cmd, ...fields });
    });
  }

  /** Clean stop: the daemon unmounts, flushes and closes; then make sure the process and mount are gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
      await this.exited;
      clearTimeout(t);
    }
    if (isMounted(this.mnt)) await unmount(this.mnt, { lazy: true }).catch(() => undefined);
  }
}
