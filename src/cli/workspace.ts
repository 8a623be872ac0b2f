// An arbor directory on disk (DESIGN.md §6): config.json, key, state.sqlite3, cache/, the process lock; wires the
// remote, chunk store and FileTree together. Knows nothing of FUSE or of how sync moves ops.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { DEFAULT_CHUNKING } from '../chunks/chunker.js';
import { FsCrypto } from '../chunks/crypto.js';
import type { ChunkIdAlgorithm } from '../chunks/chunk-id.js';
import {
  type ArborJson,
  buildArborJson,
  generateSecret,
  parseArborJson,
  readKeyFile,
  serializeArborJson,
  unlockWithPassphrase,
  verifySecret,
  writeKeyFile,
} from '../chunks/keys.js';
import { CachedChunkStore, type Logger } from '../chunks/store.js';
import type { ChunkingParams } from '../chunks/types.js';
import { ArborError, Errno, InvalidInputError, RemoteNotFoundError } from '../errors.js';
import { openRemote, type OpenRemoteOptions } from '../remote/index.js';
import { redact } from '../remote/url.js';
import type { Remote } from '../remote/types.js';
import { joinReplicaSet } from '../sync/join.js';
import { stabilityReplicas } from '../sync/membership.js';
import { configureConnection } from '../state/db.js';
import { FileTree } from '../tree/filetree.js';
import { PathPins } from '../tree/pins.js';
import { processAlive } from '../util/process.js';

/** Version of config.json this code writes and reads. */
export const CONFIG_FORMAT_VERSION = 1;
export const DEFAULT_CACHE_BYTES = 10 * 1024 ** 3;

export interface WorkspaceConfig {
  readonly format: 'arbor-replica';
  readonly formatVersion: number;
  /** The remote URL (as given; it never carries secrets — sftp keys are file paths). */
  readonly remote: string;
  /** Bound of the local chunk cache in bytes. */
  readonly cacheBytes: number;
  readonly replica: string;
  /** A satellite: pulls, never pushes (`clone --read-only`). */
  readonly readOnly: boolean;
  /** Where the secret comes from: <dir>/key, or a passphrase file (absolute path) unlocking arbor.json's wrap. */
  readonly key:
    { readonly mode: 'keyfile' } | { readonly mode: 'passphrase'; readonly passphraseFile: string };
}

/** The directory is held by another process (a running mount, or another command). */
export class WorkspaceLockedError extends ArborError {
  readonly pid: number;
  constructor(dir: string, pid: number) {
    super(
      'ARBOR_LOCKED',
      Errno.EBUSY,
      `${dir} is in use by process ${pid} (a running mount?); unmount it or wait for that command to finish`,
    );
    this.pid = pid;
  }
}

export interface Workspace {
  readonly dir: string;
  readonly config: WorkspaceConfig;
  /** This process's own connection to state.sqlite3 (the store's chunk_* tables and sync's sync_* tables). */
  readonly db: BetterSqlite3.Database;
  readonly tree: FileTree;
  readonly store: CachedChunkStore;
  /** Pinned paths (`arbor pin`): kept local, following the tree's changes. */
  readonly pins: PathPins;
  readonly remote: Remote;
  readonly crypto: FsCrypto;
  readonly arborJson: ArborJson;
  readonly replicaId: string;
  readonly readOnly: boolean;
  /** Release handles' state, close tree, store, database and remote, then drop the lock. */
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Passphrase file overriding the one recorded in config.json. */
  passphraseFile?: string;
  /** Open read-only even if the replica is not a satellite (mount --read-only): sync never pushes. */
  readOnly?: boolean;
  remoteOptions?: OpenRemoteOptions;
  /** Chunk store logger (default: stderr lines). */
  logger?: Logger;
  /** Chunk store tuning for tests. */
  fsync?: boolean;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Wall clock in ns for the tree (tests). */
  now?: () => bigint;
  /** The tree's group commit window (FileTreeOptions.groupCommitMs); mounts set it. Default off. */
  groupCommitMs?: number;
}

export interface InitOptions {
  cacheBytes?: number;
  passphraseFile?: string;
  chunking?: ChunkingParams;
  /** Chunk id algorithm of a new filesystem. Default DEFAULT_CHUNK_ID (keyed BLAKE3). */
  chunkId?: ChunkIdAlgorithm;
  /** scrypt cost (tests pass a small N). */
  scrypt?: { N: number; r: number; p: number };
  remoteOptions?: OpenRemoteOptions;
}

export interface CloneOptions extends InitOptions {
  /** A copy of another replica's key file (key-file filesystems). */
  keyFile?: string;
  readOnly?: boolean;
}

// ---------------------------------------------------------------------------------------------------- paths, lock

export const paths = (dir: string) => ({
  config: join(dir, 'config.json'),
  key: join(dir, 'key'),
  arborJson: join(dir, 'arbor.json'),
  state: join(dir, 'state.sqlite3'),
  cache: join(dir, 'cache'),
  lock: join(dir, 'lock'),
  socket: join(dir, 'control.sock'),
  /** A mount runs other processes' commands here, streamed (src/cli/serve.ts). */
  commands: join(dir, 'command.sock'),
});

/** The pid holding `dir`'s lock, or undefined when free (a stale lock from a dead process counts as free). */
export function lockOwner(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(paths(dir).lock, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text, 10);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return processAlive(pid) ? pid : undefined;
}

/** Take `<dir>/lock` (O_EXCL, our pid inside); a lock left by a dead process is broken. Returns the release. */
export function acquireLock(dir: string): () => void {
  const p = paths(dir).lock;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(p, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(p, 'utf8').trim() === String(process.pid)) unlinkSync(p);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const text = (() => {
        try {
          return readFileSync(p, 'utf8');
        } catch {
          return '';
        }
      })();
      const pid = Number.parseInt(text, 10);
      if (Number.isSafeInteger(pid) && pid > 0 && processAlive(pid)) throw new WorkspaceLockedError(dir, pid);
      // Stale (owner dead, or a half-written lock): break it and retry.
      try {
        unlinkSync(p);
      } catch {
        /* raced with another breaker */
      }
    }
  }
  throw new WorkspaceLockedError(dir, 0);
}

// ---------------------------------------------------------------------------------------------------- config

function parseConfig(text: string, file: string): WorkspaceConfig {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new InvalidInputError(`${file} is not valid JSON`);
  }
  const c = v as Partial<WorkspaceConfig> | null;
  if (c === null || typeof c !== 'object' || c.format !== 'arbor-replica') {
    throw new InvalidInputError(`${file} is not an arbor config`);
  }
  if (typeof c.formatVersion !== 'number' || c.formatVersion > CONFIG_FORMAT_VERSION) {
    throw new InvalidInputError(`${file}: format version ${String(c.formatVersion)} is not supported`);
  }
  if (
    typeof c.remote !== 'string' ||
    typeof c.replica !== 'string' ||
    !/^[A-Za-z0-9_-]{1,32}$/.test(c.replica)
  ) {
    throw new InvalidInputError(`${file}: remote or replica missing`);
  }
  if (typeof c.cacheBytes !== 'number' || !Number.isSafeInteger(c.cacheBytes) || c.cacheBytes <= 0) {
    throw new InvalidInputError(`${file}: cacheBytes must be a positive integer`);
  }
  const key = c.key;
  if (
    !key ||
    (key.mode !== 'keyfile' && !(key.mode === 'passphrase' && typeof key.passphraseFile === 'string'))
  ) {
    throw new InvalidInputError(
      `${file}: key must be {mode:"keyfile"} or {mode:"passphrase", passphraseFile}`,
    );
  }
  return {
    format: 'arbor-replica',
    formatVersion: c.formatVersion,
    remote: c.remote,
    cacheBytes: c.cacheBytes,
    replica: c.replica,
    readOnly: c.readOnly === true,
    key,
  };
}

export async function readConfig(dir: string): Promise<WorkspaceConfig> {
  const file = paths(dir).config;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new InvalidInputError(
        `${dir} is not an arbor directory (no config.json); run arbor init or arbor clone`,
      );
    }
    throw err;
  }
  return parseConfig(text, file);
}

async function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, path);
}

/** Passphrase files hold the passphrase on their first line (a trailing newline is not part of it). */
async function readPassphrase(file: string): Promise<string> {
  const text = await readFile(file, 'utf8');
  const line = text.replace(/\r?\n$/, '');
  if (line.length === 0) throw new InvalidInputError(`passphrase file ${file} is empty`);
  return line;
}

function ensureFreshDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const entries = readdirSync(dir);
  if (entries.includes('config.json')) throw new InvalidInputError(`${dir} is already an arbor directory`);
  if (entries.length > 0) throw new InvalidInputError(`${dir} is not empty`);
}

// ---------------------------------------------------------------------------------------------------- init / clone

/**
 * `arbor init`: a new filesystem on an empty remote. Generates the secret (key file <dir>/key, mode 0600, unless a
 * passphrase file is given), writes arbor.json to the remote write-once, then opens the workspace.
 */
export async function initWorkspace(
  dir: string,
  remoteUrl: string,
  opts: InitOptions = {},
): Promise<Workspace> {
  dir = resolve(dir);
  const remote = await openRemote(remoteUrl, opts.remoteOptions);
  try {
    if (await remote.exists('arbor.json')) {
      throw new InvalidInputError(
        `${redact(remoteUrl)} already holds an arbor filesystem; use arbor clone to add a replica`,
      );
    }
    ensureFreshDir(dir);
    const secret = generateSecret();
    const passphraseFile = opts.passphraseFile === undefined ? undefined : resolve(opts.passphraseFile);
    const json = await buildArborJson({
      secret,
      chunking: opts.chunking ?? DEFAULT_CHUNKING,
      ...(opts.chunkId !== undefined ? { chunkId: opts.chunkId } : {}),
      ...(passphraseFile !== undefined ? { passphrase: await readPassphrase(passphraseFile) } : {}),
      ...(opts.scrypt ? { scrypt: opts.scrypt } : {}),
    });
    const bytes = serializeArborJson(json);
    if (passphraseFile === undefined) await writeKeyFile(paths(dir).key, secret);
    if (!(await remote.putIfAbsent('arbor.json', bytes))) {
      throw new InvalidInputError(
        `${redact(remoteUrl)} already holds an arbor filesystem; use arbor clone to add a replica`,
      );
    }
    await writeConfigFiles(dir, remoteUrl, bytes, {
      cacheBytes: opts.cacheBytes ?? DEFAULT_CACHE_BYTES,
      readOnly: false,
      key: passphraseFile === undefined ? { mode: 'keyfile' } : { mode: 'passphrase', passphraseFile },
    });
  } finally {
    await remote.close();
  }
  return joined(await openWorkspace(dir, opts.remoteOptions ? { remoteOptions: opts.remoteOptions } : {}));
}

/**
 * Register a new replica on the remote before it pulls or makes anything (the join protocol, src/sync/membership.ts),
 * so no replica truncates its log past what this one may still send.
 */
async function joined(ws: Workspace): Promise<Workspace> {
  try {
    await joinReplicaSet(ws);
    return ws;
  } catch (err) {
    await ws.close();
    throw err;
  }
}

async function writeConfigFiles(
  dir: string,
  remoteUrl: string,
  arborJson: Uint8Array,
  c: Pick<WorkspaceConfig, 'cacheBytes' | 'readOnly' | 'key'>,
): Promise<void> {
  // A local copy of arbor.json lets a replica open (and work) while the remote is unreachable.
  await writeAtomic(paths(dir).arborJson, arborJson);
  const config: WorkspaceConfig = {
    format: 'arbor-replica',
    formatVersion: CONFIG_FORMAT_VERSION,
    remote: remoteUrl,
    cacheBytes: c.cacheBytes,
    replica: randomBytes(6).toString('hex'),
    readOnly: c.readOnly,
    key: c.key,
  };
  // config.json last: its presence marks a complete init/clone.
  await writeAtomic(paths(dir).config, JSON.stringify(config, null, 2) + '\n');
}

/**
 * `arbor clone` (local half): a new replica of an existing filesystem. Checks the secret against the remote's
 * arbor.json, then opens the workspace; the caller pulls (src/sync) to fill it.
 */
export async function cloneWorkspace(
  dir: string,
  remoteUrl: string,
  opts: CloneOptions = {},
): Promise<Workspace> {
  dir = resolve(dir);
  const remote = await openRemote(remoteUrl, opts.remoteOptions);
  try {
    let bytes: Uint8Array;
    try {
      bytes = await remote.get('arbor.json');
    } catch (err) {
      if (err instanceof RemoteNotFoundError) {
        throw new InvalidInputError(
          `${redact(remoteUrl)} holds no arbor filesystem; use arbor init to make one`,
        );
      }
      throw err;
    }
    const json = parseArborJson(bytes);
    ensureFreshDir(dir);
    let key: WorkspaceConfig['key'];
    if (json.key.mode === 'keyfile') {
      if (opts.keyFile === undefined) {
        throw new InvalidInputError(
          "this filesystem uses a key file: pass --key-file with a copy of another replica's <dir>/key",
        );
      }
      const secret = await readKeyFile(opts.keyFile);
      verifySecret(json, secret);
      await writeKeyFile(paths(dir).key, secret);
      key = { mode: 'keyfile' };
    } else {
      if (opts.passphraseFile === undefined) {
        throw new InvalidInputError('this filesystem is protected by a passphrase: pass --passphrase-file');
      }
      const passphraseFile = resolve(opts.passphraseFile);
      await unlockWithPassphrase(json, await readPassphrase(passphraseFile));
      key = { mode: 'passphrase', passphraseFile };
    }
    await writeConfigFiles(dir, remoteUrl, bytes, {
      cacheBytes: opts.cacheBytes ?? DEFAULT_CACHE_BYTES,
      readOnly: opts.readOnly === true,
      key,
    });
  } finally {
    await remote.close();
  }
  return joined(await openWorkspace(dir, opts.remoteOptions ? { remoteOptions: opts.remoteOptions } : {}));
}

// ---------------------------------------------------------------------------------------------------- open

async function loadSecret(
  dir: string,
  config: WorkspaceConfig,
  json: ArborJson,
  opts: OpenOptions,
): Promise<Uint8Array> {
  if (json.key.mode === 'passphrase') {
    const file =
      opts.passphraseFile ?? (config.key.mode === 'passphrase' ? config.key.passphraseFile : undefined);
    if (file === undefined) throw new InvalidInputError('this filesystem needs --passphrase-file');
    return unlockWithPassphrase(json, await readPassphrase(file));
  }
  const secret = await readKeyFile(paths(dir).key);
  verifySecret(json, secret);
  return secret;
}

const pinsLogger: Logger = (line) => void process.stderr.write(`arbor pins: ${line}\n`);

/** Open the state database connection this process uses besides the tree's own (WAL; waits on a busy writer). */
export function openStateDb(dir: string, readonly = false): BetterSqlite3.Database {
  const db = new Database(paths(dir).state, readonly ? { readonly: true, fileMustExist: true } : {});
  if (!readonly) configureConnection(db);
  db.pragma('busy_timeout = 10000');
  return db;
}

/**
 * Open an arbor directory for exclusive use by this process: lock, key check (WrongKeyError), chunk store, tree.
 * Works offline: arbor.json is read from the local copy, and the remote is contacted only on use.
 */
export async function openWorkspace(dir: string, opts: OpenOptions = {}): Promise<Workspace> {
  dir = resolve(dir);
  const config = await readConfig(dir);
  const release = acquireLock(dir);
  const cleanup: Array<() => Promise<void> | void> = [release];
  const undo = async (): Promise<void> => {
    for (const f of cleanup.reverse()) await f();
  };
  try {
    const json = parseArborJson(await readFile(paths(dir).arborJson));
    const secret = await loadSecret(dir, config, json, opts);
    const remote = await openRemote(config.remote, opts.remoteOptions);
    cleanup.push(() => remote.close());
    mkdirSync(paths(dir).cache, { recursive: true });
    const db = openStateDb(dir);
    cleanup.push(() => {
      db.close();
    });
    const store = await CachedChunkStore.open({
      dir,
      db,
      remote,
      secret,
      chunking: json.chunking,
      chunkId: json.chunkId,
      cacheLimitBytes: config.cacheBytes,
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.fsync !== undefined ? { fsync: opts.fsync } : {}),
      ...(opts.retryBaseMs !== undefined ? { retryBaseMs: opts.retryBaseMs } : {}),
      ...(opts.retryMaxMs !== undefined ? { retryMaxMs: opts.retryMaxMs } : {}),
    });
    cleanup.push(() => store.close());
    const tree = new FileTree({
      store,
      dbPath: paths(dir).state,
      statfsPath: dir,
      replica: config.replica,
      // Never truncate below what a replica that has not joined yet could still send (see src/sync/membership.ts).
      replicas: stabilityReplicas(config.replica),
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.groupCommitMs !== undefined ? { groupCommitMs: opts.groupCommitMs } : {}),
    });
    cleanup.push(() => tree.close());
    const pins = new PathPins({ tree, db, store, log: opts.logger ?? pinsLogger });
    cleanup.push(() => pins.close());
    const crypto = new FsCrypto(secret, json.chunkId);
    let closed = false;
    return {
      dir,
      config,
      db,
      tree,
      store,
      pins,
      remote,
      crypto,
      arborJson: json,
      replicaId: config.replica,
      readOnly: config.readOnly || opts.readOnly === true,
      async close() {
        if (closed) return;
        closed = true;
        // Pins first: a change this process made to a pinned path is pinned now, while tree and store are open.
        await pins.close();
        // Chunks before the tree: closing the tree checkpoints its WAL, making its ops durable.
        await store.sync().catch(() => undefined); // store.close() tries again and logs a failure
        await undo();
      },
    };
  } catch (err) {
    await undo();
    throw err;
  }
}
