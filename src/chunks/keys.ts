// The filesystem secret and arbor.json: generate the secret, wrap it with a passphrase (scrypt) or keep it in a 0600
// key file, and build/parse/validate arbor.json. Knows nothing of remotes (the caller stores 'arbor.json') or caches.
import {
  createCipheriv,
  createDecipheriv,
  randomBytes,
  scrypt as scryptCb,
  timingSafeEqual,
} from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { InvalidInputError, WrongKeyError } from '../errors.js';
import { validateChunking } from './chunker.js';
import { type ChunkIdAlgorithm, DEFAULT_CHUNK_ID, isChunkIdAlgorithm } from './chunk-id.js';
import { FsCrypto } from './crypto.js';
import type { ChunkingParams } from './types.js';

/**
 * The newest arbor.json format this code understands. 1: HMAC-SHA-256 chunk ids (implied, no `chunkId` field).
 * 2: `chunkId` names the id algorithm. A filesystem with BLAKE3 ids is written as 2, so an arbor that predates the
 * field refuses it instead of computing different ids; one with HMAC ids stays 1, readable by every version.
 */
export const ARBOR_FORMAT_VERSION = 2;

/** The format version a filesystem with this id algorithm is written as (see ARBOR_FORMAT_VERSION). */
function formatVersionFor(chunkId: ChunkIdAlgorithm): number {
  return chunkId === 'hmac-sha256' ? 1 : 2;
}

export interface ScryptParams {
  readonly name: 'scrypt';
  /** CPU/memory cost, a power of two. */
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64, 16+ random bytes */
  readonly salt: string;
}

/** Defaults: N=2^15, r=8, p=1 (32 MiB, ~0.1 s here). Tests pass a smaller N. */
export const DEFAULT_SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;

export type KeyMode =
  | {
      /** The secret is wrapped (AES-256-GCM) by a key derived from a passphrase; the wrap lives in arbor.json. */
      readonly mode: 'passphrase';
      readonly kdf: ScryptParams;
      /** base64 of nonce(12) + ciphertext(32) + tag(16) */
      readonly wrappedSecret: string;
    }
  | {
      /** The secret lives only in a key file each replica holds (mode 0600); arbor.json carries just the check. */
      readonly mode: 'keyfile';
    };

export interface ArborJson {
  readonly format: 'arbor';
  readonly formatVersion: number;
  readonly chunking: ChunkingParams;
  /** How chunk ids are computed; every replica must agree. Absent in formatVersion 1 (= 'hmac-sha256'). */
  readonly chunkId: ChunkIdAlgorithm;
  readonly key: KeyMode;
  /** HMAC of a fixed label under a key derived from the secret: proves a secret right without revealing it. */
  readonly keyCheck: string;
}

const WRAP_AAD = Buffer.from('arbor secret wrap v1');

/** 32 fresh random bytes: the filesystem secret, generated once at `arbor init`. */
export function generateSecret(): Uint8Array {
  return randomBytes(32);
}

function scrypt(pass: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(pass.normalize('NFC'), salt, 32, { N, r, p, maxmem: 256 * N * r + (1 << 20) }, (err, key) =>
      err ? reject(new InvalidInputError('scrypt failed: invalid KDF parameters')) : resolve(key),
    );
  });
}

export interface BuildOptions {
  secret: Uint8Array;
  chunking: ChunkingParams;
  /** Chunk id algorithm. Default DEFAULT_CHUNK_ID (keyed BLAKE3). */
  chunkId?: ChunkIdAlgorithm;
  /** Wrap the secret with this passphrase; without it, the secret must be kept in a key file. */
  passphrase?: string;
  scrypt?: { N: number; r: number; p: number };
}

/** A new arbor.json for `init`. */
export async function buildArborJson(opts: BuildOptions): Promise<ArborJson> {
  const chunking = validateChunking(opts.chunking);
  const chunkId = opts.chunkId ?? DEFAULT_CHUNK_ID;
  if (!isChunkIdAlgorithm(chunkId))
    throw new InvalidInputError(`unknown chunk id algorithm ${String(chunkId)}`);
  const formatVersion = formatVersionFor(chunkId);
  const keyCheck = new FsCrypto(opts.secret, chunkId).keyCheck();
  if (opts.passphrase === undefined) {
    return {
      format: 'arbor',
      formatVersion,
      chunking,
      chunkId,
      key: { mode: 'keyfile' },
      keyCheck,
    };
  }
  if (opts.passphrase.length === 0) throw new InvalidInputError('the passphrase must not be empty');
  const { N, r, p } = opts.scrypt ?? DEFAULT_SCRYPT;
  const salt = randomBytes(16);
  const kek = await scrypt(opts.passphrase, salt, N, r, p);
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, nonce);
  c.setAAD(WRAP_AAD);
  const ct = Buffer.concat([c.update(opts.secret), c.final()]);
  const wrapped = Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64');
  return {
    format: 'arbor',
    formatVersion,
    chunking,
    chunkId,
    key: {
      mode: 'passphrase',
      kdf: { name: 'scrypt', N, r, p, salt: salt.toString('base64') },
      wrappedSecret: wrapped,
    },
    keyCheck,
  };
}

export function serializeArborJson(j: ArborJson): Uint8Array {
  // formatVersion 1 documents keep their original shape (no chunkId field), so older arbors still read them.
  const { chunkId, ...rest } = j;
  const doc = j.formatVersion === 1 ? rest : { ...rest, chunkId };
  return Buffer.from(JSON.stringify(doc, null, 2) + '\n', 'utf8');
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function posInt(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > max) {
    throw new InvalidInputError(`arbor.json: ${what} must be a positive integer`);
  }
  return v;
}

function b64(v: unknown, what: string, len?: number): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(v)) {
    throw new InvalidInputError(`arbor.json: ${what} must be base64`);
  }
  const n = Buffer.from(v, 'base64').length;
  if (len !== undefined && n !== len) throw new InvalidInputError(`arbor.json: ${what} must be ${len} bytes`);
  return v;
}

/** Parse and validate arbor.json bytes; InvalidInputError on anything malformed or from a newer format. */
export function parseArborJson(bytes: Uint8Array | string): ArborJson {
  let v: unknown;
  try {
    v = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new InvalidInputError('arbor.json is not valid JSON');
  }
  if (!isObj(v) || v.format !== 'arbor') throw new InvalidInputError('arbor.json: not an arbor remote');
  const formatVersion = posInt(v.formatVersion, 'formatVersion');
  if (formatVersion > ARBOR_FORMAT_VERSION) {
    throw new InvalidInputError(
      `arbor.json: format version ${formatVersion} is newer than this arbor understands (${ARBOR_FORMAT_VERSION})`,
    );
  }
  if (!isObj(v.chunking)) throw new InvalidInputError('arbor.json: chunking missing');
  const chunking = validateChunking({
    minSize: posInt(v.chunking.minSize, 'chunking.minSize'),
    avgSize: posInt(v.chunking.avgSize, 'chunking.avgSize'),
    maxSize: posInt(v.chunking.maxSize, 'chunking.maxSize'),
  });
  let chunkId: ChunkIdAlgorithm;
  if (formatVersion === 1) {
    if (v.chunkId !== undefined && v.chunkId !== 'hmac-sha256') {
      throw new InvalidInputError('arbor.json: formatVersion 1 implies chunkId hmac-sha256');
    }
    chunkId = 'hmac-sha256';
  } else if (isChunkIdAlgorithm(v.chunkId)) {
    chunkId = v.chunkId;
  } else {
    throw new InvalidInputError(`arbor.json: unknown chunkId ${JSON.stringify(v.chunkId) ?? 'missing'}`);
  }
  if (typeof v.keyCheck !== 'string' || !/^[0-9a-f]{64}$/.test(v.keyCheck)) {
    throw new InvalidInputError('arbor.json: keyCheck must be 64 hex digits');
  }
  const k = v.key;
  if (!isObj(k)) throw new InvalidInputError('arbor.json: key missing');
  let key: KeyMode;
  if (k.mode === 'keyfile') {
    key = { mode: 'keyfile' };
  } else if (k.mode === 'passphrase') {
    const kdf = k.kdf;
    if (!isObj(kdf) || kdf.name !== 'scrypt')
      throw new InvalidInputError('arbor.json: key.kdf must be scrypt');
    const N = posInt(kdf.N, 'key.kdf.N', 1 << 24);
    if ((N & (N - 1)) !== 0 || N < 2)
      throw new InvalidInputError('arbor.json: key.kdf.N must be a power of two');
    const r = posInt(kdf.r, 'key.kdf.r', 64);
    const p = posInt(kdf.p, 'key.kdf.p', 16);
    // A hostile arbor.json must not make us allocate unbounded memory: scrypt needs 128·N·r bytes.
    if (128 * N * r > 1 << 30)
      throw new InvalidInputError('arbor.json: key.kdf needs more than 1 GiB of memory');
    const salt = b64(kdf.salt, 'key.kdf.salt');
    if (Buffer.from(salt, 'base64').length < 16)
      throw new InvalidInputError('arbor.json: key.kdf.salt too short');
    key = {
      mode: 'passphrase',
      kdf: { name: 'scrypt', N, r, p, salt },
      wrappedSecret: b64(k.wrappedSecret, 'key.wrappedSecret', 12 + 32 + 16),
    };
  } else {
    throw new InvalidInputError('arbor.json: key.mode must be passphrase or keyfile');
  }
  return { format: 'arbor', formatVersion, chunking, chunkId, key, keyCheck: v.keyCheck };
}

/** Throws WrongKeyError unless `secret` is the one arbor.json was made with. */
export function verifySecret(j: ArborJson, secret: Uint8Array): void {
  if (secret.length !== 32) throw new WrongKeyError();
  const got = Buffer.from(new FsCrypto(secret).keyCheck(), 'hex');
  if (!timingSafeEqual(got, Buffer.from(j.keyCheck, 'hex'))) throw new WrongKeyError();
}

/** Unwrap the secret with a passphrase. A wrong passphrase is WrongKeyError (the GCM tag fails), never garbage. */
export async function unlockWithPassphrase(j: ArborJson, passphrase: string): Promise<Uint8Array> {
  if (j.key.mode !== 'passphrase') {
    throw new InvalidInputError('this arbor remote uses a key file, not a passphrase');
  }
  const { N, r, p, salt } = j.key.kdf;
  const kek = await scrypt(passphrase, Buffer.from(salt, 'base64'), N, r, p);
  const w = Buffer.from(j.key.wrappedSecret, 'base64');
  let secret: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', kek, w.subarray(0, 12));
    d.setAAD(WRAP_AAD);
    d.setAuthTag(w.subarray(w.length - 16));
    secret = Buffer.concat([d.update(w.subarray(12, w.length - 16)), d.final()]);
  } catch {
    throw new WrongKeyError('wrong passphrase');
  }
  verifySecret(j, secret);
  return secret;
}

const KEYFILE_PREFIX = 'arbor-secret-v1:';

/** Write the secret to a new key file with mode 0600 (temp file + fsync + rename; never world-readable). */
export async function writeKeyFile(path: string, secret: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.chmod(0o600); // the umask cannot widen it, but be explicit
    await fh.writeFile(KEYFILE_PREFIX + Buffer.from(secret).toString('base64') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Read a key file; refuses one that group or others can read (like ssh), and never echoes its content. */
export async function readKeyFile(path: string): Promise<Uint8Array> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new InvalidInputError(`key file ${path} is accessible by others; run: chmod 600 ${path}`);
  }
  const text = (await readFile(path, 'utf8')).trim();
  if (!text.startsWith(KEYFILE_PREFIX)) throw new InvalidInputError(`${path} is not an arbor key file`);
  const secret = Buffer.from(text.slice(KEYFILE_PREFIX.length), 'base64');
  if (secret.length !== 32) throw new InvalidInputError(`${path} is not an arbor key file`);
  return secret;
}
