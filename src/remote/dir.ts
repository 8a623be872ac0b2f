// The directory backend (the embedded default): objects are files under a root; knows nothing of chunks or ops.
// Write-once: bytes go to a temp file that is fsynced, then hard-linked to the final name. link(2) fails with
// EEXIST instead of replacing, so an existing object is never touched, and readers never see a partial file.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { Dirent } from 'node:fs';
import { dirname, join } from 'node:path';
import { RemoteNotFoundError, RemoteUnavailableError } from '../errors.js';
import { checkKey, checkPrefix, checkRange, compareKeys } from './keys.js';
import { withRetry, type RetryOptions } from './retry.js';
import type { ByteRange, Remote } from './types.js';
import { formatRemoteUrl } from './url.js';

export interface DirRemoteOptions {
  /** fsync files and directories before reporting success (default true; tests of other parts may turn it off). */
  readonly fsync?: boolean;
  readonly retry?: RetryOptions;
}

/** Temp files live here (same filesystem as the objects, so link() works); dot-names never appear in list(). */
const TMP_DIR = '.arbor-tmp';
/** Temp files older than this are leftovers of a crashed writer. */
const STALE_TMP_MS = 60 * 60 * 1000;

function errCode(err: unknown): string | undefined {
  return err && typeof err === 'object' && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

export class DirRemote implements Remote {
  readonly url: string;
  readonly root: string;
  private readonly fsync: boolean;
  private readonly retry: RetryOptions;
  /** Directories known to exist (mkdir -p done once per prefix). */
  private readonly madeDirs = new Set<string>();
  private tmpSwept = false;

  constructor(root: string, opts: DirRemoteOptions = {}) {
    this.root = root;
    this.url = formatRemoteUrl({ kind: 'dir', path: root });
    this.fsync = opts.fsync ?? true;
    this.retry = { attempts: 2, ...opts.retry };
  }

  private unavailable(what: string, err: unknown): RemoteUnavailableError {
    const code = errCode(err) ?? (err instanceof Error ? err.message : String(err));
    return new RemoteUnavailableError(`${this.url}: ${what} failed (${code})`, { cause: err });
  }

  /** One operation with this remote's retries; whatever the filesystem throws becomes RemoteUnavailableError. */
  private retried<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(what, fn, this.retry, (err) => this.unavailable(what, err));
  }

  private async fsyncDir(path: string): Promise<void> {
    if (!this.fsync) return;
    const fh = await fsp.open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** mkdir -p (the root included), remembered per directory; new entries are fsynced into their parents. */
  private async mkdirp(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    try {
      await fsp.mkdir(dir);
      // A new directory entry is durable only once its parent is fsynced.
      await this.fsyncDir(dirname(dir));
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT' && dirname(dir) !== dir) {
        await this.mkdirp(dirname(dir));
        this.madeDirs.delete(dir);
        return this.mkdirp(dir);
      }
      if (code !== 'EEXIST') throw err;
    }
    this.madeDirs.add(dir);
  }

  private async sweepTmp(tmpDir: string): Promise<void> {
    if (this.tmpSwept) return;
    this.tmpSwept = true;
    const now = Date.now();
    for (const name of await fsp.readdir(tmpDir).catch(() => [] as string[])) {
      const p = join(tmpDir, name);
      const st = await fsp.stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > STALE_TMP_MS) await fsp.unlink(p).catch(() => undefined);
    }
  }

  putIfAbsent(key: string, data: Uint8Array): Promise<boolean> {
    return this.create(key, `put ${key}`, async (tmp) => {
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
    });
  }

  /** The file's bytes are copied by the kernel (copy_file_range or sendfile), never through this process. */
  putFileIfAbsent(key: string, file: string): Promise<boolean> {
    return this.create(key, `put ${key}`, async (tmp) => {
      await fsp.copyFile(file, tmp, fsConstants.COPYFILE_EXCL);
      if (this.fsync) {
        const fh = await fsp.open(tmp, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
    });
  }

  /** Write-once create: `fill` writes (and fsyncs) a fresh temp file, which is then linked to the final name. */
  private async create(key: string, what: string, fill: (tmp: string) => Promise<void>): Promise<boolean> {
    checkKey(key);
    return this.retried(what, async () => {
      const final = join(this.root, key);
      const tmpDir = join(this.root, TMP_DIR);
      const tmp = join(tmpDir, `${randomBytes(12).toString('hex')}.tmp`);
      try {
        if (await this.existsNow(final)) return false;
        await this.mkdirp(dirname(final));
        await this.mkdirp(tmpDir);
        await this.sweepTmp(tmpDir);
        await fill(tmp);
        try {
          await fsp.link(tmp, final);
        } catch (err) {
          if (errCode(err) === 'EEXIST') return false;
          if (errCode(err) === 'ENOENT') this.madeDirs.clear(); // someone removed a directory behind our back
          throw err;
        }
        await this.fsyncDir(dirname(final));
        return true;
      } finally {
        await fsp.unlink(tmp).catch(() => undefined);
      }
    });
  }

  private async existsNow(path: string): Promise<boolean> {
    try {
      return (await fsp.stat(path)).isFile();
    } catch (err) {
      if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return false;
      throw err;
    }
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    checkKey(key);
    if (range) checkRange(range);
    return this.retried(`get ${key}`, async () => {
      let fh: fsp.FileHandle;
      try {
        fh = await fsp.open(join(this.root, key), 'r');
      } catch (err) {
        const code = errCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw new RemoteNotFoundError(key);
        throw err;
      }
      try {
        const size = (await fh.stat()).size;
        const start = Math.min(range?.offset ?? 0, size);
        const end = range ? Math.min(size, start + range.length) : size;
        const out = new Uint8Array(end - start);
        let done = 0;
        while (done < out.length) {
          const { bytesRead } = await fh.read(out, done, out.length - done, start + done);
          if (bytesRead === 0) break; // truncated under us: return what is there; the chunk layer verifies
          done += bytesRead;
        }
        return done === out.length ? out : out.subarray(0, done);
      } finally {
        await fh.close();
      }
    });
  }

  async exists(key: string): Promise<boolean> {
    checkKey(key);
    return this.retried(`exists ${key}`, () => this.existsNow(join(this.root, key)));
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix);
    return this.retried(`list ${prefix}`, async () => {
      const slash = prefix.lastIndexOf('/');
      const base = slash < 0 ? '' : prefix.slice(0, slash);
      const out: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        let entries: Dirent[];
        try {
          entries = await fsp.readdir(rel ? join(this.root, rel) : this.root, { withFileTypes: true });
        } catch (err) {
          if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return;
          throw err;
        }
        for (const e of entries) {
          if (e.name.startsWith('.')) continue; // temp files and anything that is not a valid key
          const key = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) {
            // Descend only where keys could still match the prefix.
            if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) await walk(key);
          } else if (e.isFile() && key.startsWith(prefix)) {
            out.push(key);
          }
        }
      };
      await walk(base);
      return out.sort(compareKeys);
    });
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    return this.retried(`delete ${key}`, async () => {
      try {
        await fsp.unlink(join(this.root, key));
      } catch (err) {
        if (errCode(err) !== 'ENOENT' && errCode(err) !== 'ENOTDIR') throw err;
      }
    });
  }

  /** Reachable = the root exists and is a directory. */
  async ping(): Promise<void> {
    let isDir: boolean;
    try {
      isDir = (await fsp.stat(this.root)).isDirectory();
    } catch (err) {
      throw this.unavailable('stat of the root directory', err);
    }
    if (!isDir) throw new RemoteUnavailableError(`${this.url}: not a directory`);
  }

  async close(): Promise<void> {}
}
