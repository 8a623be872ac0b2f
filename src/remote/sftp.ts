// The SFTP backend (ssh2 over one persistent SSH connection with a small pool of SFTP channels); knows nothing of chunks.
// Write-once: bytes go to a temp file under <root>/.arbor-tmp (opened O_EXCL, written, fsync@openssh.com), which is
// then hard-linked to the final name with hardlink@openssh.com. link(2) on the server fails when the name exists,
// so an existing object is never replaced (posix-rename@openssh.com would replace it) and readers never see a
// partial object. If the link fails and the final name exists, the answer is "already there" (false).
import { readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, type ConnectConfig, type SFTPWrapper, type Stats } from 'ssh2';
import { InvalidInputError, RemoteNotFoundError, RemoteUnavailableError } from '../errors.js';
import { checkKey, checkPrefix, checkRange, compareKeys } from './keys.js';
import { defaultKnownHostsPath, hostPattern, verifyHostKey } from './known-hosts.js';
import { FinalRemoteError, withRetry, withTimeout, type RetryOptions } from './retry.js';
import type { ByteRange, Remote } from './types.js';
import { formatRemoteUrl, type SftpLocation } from './url.js';

export interface SftpRemoteOptions {
  /** known_hosts file for trust-on-first-use (default: the URL's ?known_hosts=, else defaultKnownHostsPath()). */
  readonly knownHostsFile?: string;
  /** Private key contents; overrides the URL's ?key= and the defaults. */
  readonly privateKey?: string | Buffer;
  /** SFTP channels opened on the one connection (default 4; OpenSSH allows 10 sessions by default). */
  readonly channels?: number;
  readonly retry?: RetryOptions;
  /** Connect + handshake timeout in ms (default 10000). */
  readonly connectTimeoutMs?: number;
  /** Timeout of one operation in ms; on expiry the connection is dropped and rebuilt (default 30000). */
  readonly opTimeoutMs?: number;
  /** SSH keepalive interval in ms; 3 unanswered keepalives drop the connection (default 5000). */
  readonly keepaliveIntervalMs?: number;
}

const TMP_DIR = '.arbor-tmp';
/** Temp files older than this (seconds) are leftovers of a writer that died before unlinking them. */
const STALE_TMP_S = 3600;
/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
/**
 * Bytes per READ/WRITE call. OpenSSH advertises ~255 KiB through limits@openssh.com; ssh2 splits a call into
 * requests of the server's limit by itself (32 KiB without the extension), so this is safe with any server.
 */
const IO_PIECE = 255 * 1024;
/** READ/WRITE calls kept in flight per object. */
const IO_WINDOW = 16;

interface Conn {
  readonly client: Client;
  readonly channels: SFTPWrapper[];
  next: number;
  dead: boolean;
}

function statusCode(err: unknown): number | undefined {
  const c = err && typeof err === 'object' && 'code' in err ? (err as { code: unknown }).code : undefined;
  return typeof c === 'number' ? c : undefined;
}

function describe(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string') return e.code;
    if (typeof e.message === 'string') return e.message;
  }
  return String(err);
}

/** What ssh2 says when the server did not advertise an extension. */
const UNSUPPORTED = /does not support this extended request/;

const isDir = (attrs: { mode: number }) => (attrs.mode & 0o170000) === 0o040000;
const isFile = (attrs: { mode: number }) => (attrs.mode & 0o170000) === 0o100000;

function cb<T>(fn: (done: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

export class SftpRemote implements Remote {
  readonly url: string;
  private readonly loc: SftpLocation;
  private readonly opts: SftpRemoteOptions;
  private readonly root: string;
  private readonly knownHosts: string;
  private conn: Promise<Conn> | undefined;
  private closed = false;
  private readonly madeDirs = new Set<string>();
  private hostKeyProblem: Error | undefined;
  private tmpSwept = false;

  constructor(loc: SftpLocation, opts: SftpRemoteOptions = {}) {
    this.loc = loc;
    this.opts = opts;
    this.root = loc.path;
    this.url = formatRemoteUrl(loc);
    this.knownHosts = opts.knownHostsFile ?? loc.knownHostsPath ?? defaultKnownHostsPath();
  }

  // ---- connection -------------------------------------------------------------------------------------------

  private authConfig(): Pick<ConnectConfig, 'privateKey' | 'agent' | 'passphrase'> {
    const out: Pick<ConnectConfig, 'privateKey' | 'agent' | 'passphrase'> = {};
    if (this.opts.privateKey !== undefined) {
      out.privateKey = this.opts.privateKey;
    } else {
      const explicit = this.loc.keyPath ?? process.env.ARBOR_SSH_KEY;
      if (explicit) {
        try {
          out.privateKey = readFileSync(explicit);
        } catch (err) {
          throw new FinalRemoteError(`${this.url}: cannot read the SSH key ${explicit} (${describe(err)})`);
        }
      } else {
        for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
          try {
            out.privateKey = readFileSync(join(homedir(), '.ssh', name));
            break;
          } catch {
            // try the next default key
          }
        }
      }
    }
    if (process.env.ARBOR_SSH_KEY_PASSPHRASE) out.passphrase = process.env.ARBOR_SSH_KEY_PASSPHRASE;
    if (process.env.SSH_AUTH_SOCK) out.agent = process.env.SSH_AUTH_SOCK;
    if (out.privateKey === undefined && out.agent === undefined) {
      throw new FinalRemoteError(
        `${this.url}: no SSH key (give ?key=/path, set ARBOR_SSH_KEY, create ~/.ssh/id_ed25519 or run ssh-agent)`,
      );
    }
    return out;
  }

  private connect(): Promise<Conn> {
    const auth = this.authConfig();
    const client = new Client();
    this.hostKeyProblem = undefined;
    return new Promise<Conn>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        client.destroy();
        if (err instanceof RemoteUnavailableError) reject(err);
        else if (this.hostKeyProblem) reject(this.hostKeyProblem);
        else if (/authentication methods failed/i.test(describe(err))) {
          reject(
            new FinalRemoteError(`${this.url}: SSH authentication failed (check the key)`, { cause: err }),
          );
        } else
          reject(
            new RemoteUnavailableError(`${this.url}: cannot connect (${describe(err)})`, { cause: err }),
          );
      };
      client.on('error', fail);
      client.on('close', () =>
        fail(new RemoteUnavailableError(`${this.url}: connection closed during setup`)),
      );
      client.on('ready', () => {
        const n = Math.max(1, this.opts.channels ?? 4);
        // A server with a lower session limit than `channels` still works with the channels it grants.
        Promise.allSettled(
          Array.from({ length: n }, () => cb<SFTPWrapper>((done) => client.sftp(done))),
        ).then((results) => {
          const channels = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
          if (channels.length === 0) {
            fail((results[0] as PromiseRejectedResult).reason);
            return;
          }
          if (settled) return;
          settled = true;
          const conn: Conn = { client, channels, next: 0, dead: false };
          const die = () => {
            conn.dead = true;
          };
          client.removeAllListeners('error');
          client.removeAllListeners('close');
          client.on('error', die);
          client.on('close', die);
          for (const ch of channels) ch.on('close', die);
          resolve(conn);
        }, fail);
      });
      client.connect({
        host: this.loc.host,
        port: this.loc.port,
        username: this.loc.user ?? userInfo().username,
        ...auth,
        readyTimeout: this.opts.connectTimeoutMs ?? 10_000,
        keepaliveInterval: this.opts.keepaliveIntervalMs ?? 5000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          let verdict;
          try {
            verdict = verifyHostKey(this.knownHosts, this.loc.host, this.loc.port, key);
          } catch (err) {
            this.hostKeyProblem = new FinalRemoteError(
              `${this.url}: cannot use known-hosts file ${this.knownHosts} (${describe(err)})`,
            );
            return false;
          }
          if (verdict === 'mismatch') {
            this.hostKeyProblem = new FinalRemoteError(
              `${this.url}: the host key of ${hostPattern(this.loc.host, this.loc.port)} differs from the one recorded in ` +
                `${this.knownHosts} (possible man-in-the-middle); remove that line to trust the new key`,
            );
            return false;
          }
          return true;
        },
      });
    });
  }

  /** The live connection, opened (once, shared by concurrent callers) when there is none or it died. */
  private async connection(): Promise<Conn> {
    for (;;) {
      if (this.closed) throw new FinalRemoteError(`${this.url}: remote is closed`);
      if (!this.conn) {
        const fresh = this.connect();
        this.conn = fresh;
        fresh.catch(() => {
          if (this.conn === fresh) this.conn = undefined;
        });
      }
      const p = this.conn;
      const c = await p;
      if (!c.dead) return c;
      if (this.conn === p) this.conn = undefined;
    }
  }

  private drop(conn: Conn): void {
    conn.dead = true;
    conn.client.destroy();
  }

  /**
   * Runs one operation on a channel of the shared connection with the per-op timeout and bounded retries.
   * Errors that carry an SFTP status are the server's answer and are mapped by `fn` or passed through;
   * anything else means the connection is in trouble: it is dropped and the op retried on a fresh one.
   */
  private run<T>(what: string, fn: (sftp: SFTPWrapper) => Promise<T>, retry?: RetryOptions): Promise<T> {
    return withRetry(
      what,
      async () => {
        const conn = await this.connection();
        if (conn.dead) throw new RemoteUnavailableError(`${this.url}: ${what}: connection lost`);
        const sftp = conn.channels[conn.next++ % conn.channels.length] as SFTPWrapper;
        try {
          return await withTimeout(fn(sftp), this.opts.opTimeoutMs ?? 30_000, `${this.url}: ${what}`, () =>
            this.drop(conn),
          );
        } catch (err) {
          if (
            err instanceof RemoteNotFoundError ||
            err instanceof InvalidInputError ||
            err instanceof RemoteUnavailableError
          ) {
            if (err instanceof RemoteUnavailableError && !(err instanceof FinalRemoteError)) this.drop(conn);
            throw err;
          }
          const code = statusCode(err);
          if (code === PERMISSION_DENIED)
            throw new FinalRemoteError(`${this.url}: ${what}: permission denied`, { cause: err });
          if (code === undefined) this.drop(conn);
          throw new RemoteUnavailableError(`${this.url}: ${what} failed (${describe(err)})`, { cause: err });
        }
      },
      { timeoutMs: 0, ...this.opts.retry, ...retry },
    );
  }

  // ---- helpers on one channel ----------------------------------------------------------------------------------

  private path(key: string): string {
    return `${this.root}/${key}`;
  }

  private async statOrUndefined(sftp: SFTPWrapper, path: string): Promise<Stats | undefined> {
    try {
      return await cb<Stats>((d) => sftp.stat(path, d));
    } catch (err) {
      if (statusCode(err) === NO_SUCH_FILE) return undefined;
      throw err;
    }
  }

  private async mkdirp(sftp: SFTPWrapper, dir: string): Promise<void> {
    if (this.madeDirs.has(dir) || dir === '' || dir === '/') return;
    try {
      await cb<void>((d) => sftp.mkdir(dir, d));
    } catch (err) {
      if (statusCode(err) === NO_SUCH_FILE) {
        await this.mkdirp(sftp, dir.slice(0, dir.lastIndexOf('/')));
        await this.mkdirp(sftp, dir);
        return;
      }
      // FAILURE is what OpenSSH answers for EEXIST; make sure it really is a directory.
      const st = await this.statOrUndefined(sftp, dir);
      if (!st || !isDir(st)) throw err;
    }
    this.madeDirs.add(dir);
  }

  private async writeAll(sftp: SFTPWrapper, handle: Buffer, data: Uint8Array): Promise<void> {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let next = 0;
    const worker = async () => {
      while (next < buf.length) {
        const off = next;
        const len = Math.min(IO_PIECE, buf.length - off);
        next += len;
        await cb<void>((d) => sftp.write(handle, buf, off, len, off, (err) => d(err)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(IO_WINDOW, Math.ceil(buf.length / IO_PIECE)) }, worker));
  }

  /** Reads [start, end) into a new buffer with several READ requests in flight; stops early at EOF. */
  private async readRange(
    sftp: SFTPWrapper,
    handle: Buffer,
    start: number,
    end: number,
  ): Promise<Uint8Array> {
    const out = Buffer.alloc(end - start);
    let next = 0;
    let eofAt = out.length;
    const worker = async () => {
      while (next < out.length) {
        let off = next;
        const pieceEnd = Math.min(out.length, off + IO_PIECE);
        next = pieceEnd;
        while (off < pieceEnd && off < eofAt) {
          const n = await new Promise<number>((resolve, reject) =>
            sftp.read(handle, out, off, pieceEnd - off, start + off, (err, nb) =>
              err ? reject(err) : resolve(nb),
            ),
          );
          if (n === 0) {
            eofAt = Math.min(eofAt, off); // the file is shorter than its stat said
            break;
          }
          off += n;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(IO_WINDOW, Math.ceil(out.length / IO_PIECE)) }, worker));
    // A plain Uint8Array (not a Buffer), like every other backend returns.
    return new Uint8Array(out.buffer, out.byteOffset, eofAt);
  }

  /** Removes temp files a crashed or disconnected writer left behind (older than an hour). Best effort. */
  private async sweepTmp(sftp: SFTPWrapper, tmpDir: string): Promise<void> {
    try {
      const entries = await cb<{ filename: string; attrs: { mtime: number } }[]>((d) =>
        sftp.readdir(tmpDir, d),
      );
      const cutoff = Date.now() / 1000 - STALE_TMP_S;
      for (const e of entries) {
        if (e.filename.endsWith('.tmp') && e.attrs.mtime < cutoff)
          sftp.unlink(`${tmpDir}/${e.filename}`, () => undefined);
      }
    } catch {
      // the next connection's first put tries again
      this.tmpSwept = false;
    }
  }

  // ---- Remote ---------------------------------------------------------------------------------------------------

  async putIfAbsent(key: string, data: Uint8Array): Promise<boolean> {
    checkKey(key);
    const final = this.path(key);
    return this.run(`put ${key}`, async (sftp) => {
      if (await this.statOrUndefined(sftp, final)) return false;
      const tmpDir = `${this.root}/${TMP_DIR}`;
      const tmp = `${tmpDir}/${randomBytes(12).toString('hex')}.tmp`;
      await this.mkdirp(sftp, tmpDir);
      if (!this.tmpSwept) {
        this.tmpSwept = true;
        void this.sweepTmp(sftp, tmpDir);
      }
      await this.mkdirp(sftp, final.slice(0, final.lastIndexOf('/')));
      try {
        const handle = await cb<Buffer>((d) => sftp.open(tmp, 'wx', d));
        try {
          await this.writeAll(sftp, handle, data);
          await cb<void>((d) => sftp.ext_openssh_fsync(handle, (err) => d(err))).catch((err: unknown) => {
            // Without fsync@openssh.com the data is as durable as the server's page cache makes it.
            if (!UNSUPPORTED.test(describe(err))) throw err;
          });
        } finally {
          await cb<void>((d) => sftp.close(handle, d)).catch(() => undefined);
        }
        try {
          await cb<void>((d) => sftp.ext_openssh_hardlink(tmp, final, d));
          return true;
        } catch (err) {
          if (UNSUPPORTED.test(describe(err))) {
            // No safe write-once without it: a direct O_EXCL write could leave a partial object forever.
            throw new FinalRemoteError(
              `${this.url}: the SFTP server lacks hardlink@openssh.com, which arbor needs`,
            );
          }
          if (await this.statOrUndefined(sftp, final)) return false; // EEXIST: someone else's object stays
          this.madeDirs.clear(); // perhaps a directory vanished behind our back
          throw err;
        }
      } finally {
        sftp.unlink(tmp, () => undefined); // best effort; not awaited (the link already holds the data)
      }
    });
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    checkKey(key);
    if (range) checkRange(range);
    return this.run(`get ${key}`, async (sftp) => {
      let handle: Buffer;
      try {
        handle = await cb<Buffer>((d) => sftp.open(this.path(key), 'r', d));
      } catch (err) {
        if (statusCode(err) === NO_SUCH_FILE) throw new RemoteNotFoundError(key);
        throw err;
      }
      try {
        const st = await cb<Stats>((d) => sftp.fstat(handle, d));
        if (!isFile(st)) throw new RemoteNotFoundError(key);
        const start = Math.min(range?.offset ?? 0, st.size);
        const end = range ? Math.min(st.size, start + range.length) : st.size;
        return end > start ? await this.readRange(sftp, handle, start, end) : new Uint8Array(0);
      } finally {
        sftp.close(handle, () => undefined);
      }
    });
  }

  async exists(key: string): Promise<boolean> {
    checkKey(key);
    return this.run(`exists ${key}`, async (sftp) => {
      const st = await this.statOrUndefined(sftp, this.path(key));
      return st !== undefined && isFile(st);
    });
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix);
    return this.run(`list ${prefix}`, async (sftp) => {
      const slash = prefix.lastIndexOf('/');
      const base = slash < 0 ? '' : prefix.slice(0, slash);
      const out: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        let entries;
        try {
          entries = await cb<{ filename: string; attrs: { mode: number } }[]>((d) =>
            sftp.readdir(rel ? this.path(rel) : this.root, d),
          );
        } catch (err) {
          if (statusCode(err) === NO_SUCH_FILE) return;
          throw err;
        }
        const dirs: string[] = [];
        for (const e of entries) {
          if (e.filename.startsWith('.')) continue;
          const key = rel ? `${rel}/${e.filename}` : e.filename;
          if (isDir(e.attrs)) {
            if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) dirs.push(key);
          } else if (isFile(e.attrs) && key.startsWith(prefix)) {
            out.push(key);
          }
        }
        // Sibling directories are read concurrently (requests pipeline on the channel).
        await Promise.all(dirs.map(walk));
      };
      await walk(base);
      return out.sort(compareKeys);
    });
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.run(`delete ${key}`, async (sftp) => {
      try {
        await cb<void>((d) => sftp.unlink(this.path(key), d));
      } catch (err) {
        if (statusCode(err) !== NO_SUCH_FILE) throw err;
      }
    });
  }

  /** Connects if needed and stats the root directory; one attempt (a status probe should answer quickly). */
  async ping(): Promise<void> {
    await this.run(
      'ping',
      async (sftp) => {
        const st = await this.statOrUndefined(sftp, this.root);
        if (!st || !isDir(st))
          throw new FinalRemoteError(`${this.url}: ${this.root} is not a directory on the server`);
      },
      { attempts: 1 },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const conn = this.conn;
    this.conn = undefined;
    if (conn) {
      const c = await conn.catch(() => undefined);
      if (c) {
        c.dead = true;
        c.client.end();
      }
    }
  }
}
