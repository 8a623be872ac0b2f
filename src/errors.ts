// The one error hierarchy of arbor: every error carries a stable code and the errno it maps to.
// Parts throw these (or subclasses); only src/vfs turns them into FUSE replies.
import { constants } from 'node:os';

/** Linux errno numbers by name (ENOENT = 2, ...), from Node's own table. */
export const Errno = constants.errno;
export type ErrnoName = keyof typeof constants.errno;

export class ArborError extends Error {
  /** Stable machine-readable code, e.g. 'ENOENT' or 'ARBOR_CHUNK_CORRUPT'. */
  readonly code: string;
  /** Positive Linux errno this error maps to at the filesystem boundary. */
  readonly errno: number;

  constructor(code: string, errno: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.errno = errno;
  }
}

/** A POSIX failure with Linux's errno (ENOENT, EEXIST, ENOTEMPTY, ...). */
export class FsError extends ArborError {
  constructor(name: ErrnoName, message?: string) {
    super(name, Errno[name], message ?? name);
  }
}

/** Shorthand: `throw fsError('ENOENT', 'no such file: /a')`. */
export function fsError(name: ErrnoName, message?: string): FsError {
  return new FsError(name, message);
}

/** Input that failed validation (a malformed op batch, a bad config file). Maps to EINVAL. */
export class InvalidInputError extends ArborError {
  constructor(message: string, code = 'ARBOR_INVALID_INPUT') {
    super(code, Errno.EINVAL, message);
  }
}

/** A chunk whose bytes do not match its id or fail authentication. Never returned as data: EIO. */
export class ChunkCorruptError extends ArborError {
  constructor(chunkId: string, detail: string) {
    super('ARBOR_CHUNK_CORRUPT', Errno.EIO, `chunk ${chunkId} is corrupt: ${detail}`);
  }
}

/** The remote could not be reached or answered with an error. Maps to EIO (retryable). */
export class RemoteUnavailableError extends ArborError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ARBOR_REMOTE_UNAVAILABLE', Errno.EIO, message, options);
  }
}

/** An object that does not exist on the remote. */
export class RemoteNotFoundError extends ArborError {
  constructor(key: string) {
    super('ARBOR_REMOTE_NOT_FOUND', Errno.ENOENT, `remote object not found: ${key}`);
  }
}

/** Wrong passphrase or key file: the key check in arbor.json did not verify. */
export class WrongKeyError extends ArborError {
  constructor(message = 'wrong passphrase or key file') {
    super('ARBOR_WRONG_KEY', Errno.EACCES, message);
  }
}

/** This replica was retired (`arbor gc --retire`): its ops could be dropped by replicas that truncated, so it never
 * publishes again. EROFS: it can still be read. */
export class ReplicaRetiredError extends ArborError {
  constructor(replica: string) {
    super(
      'ARBOR_REPLICA_RETIRED',
      Errno.EROFS,
      `replica ${replica} was retired from this filesystem and can no longer publish; clone a new replica`,
    );
  }
}

/** A mutating command on a replica or mount that only reads (EROFS); the message names which. */
export class ReadOnlyError extends ArborError {
  constructor(message: string) {
    super('ARBOR_READ_ONLY', Errno.EROFS, message);
  }
}

/** An operation stopped before it finished (an interrupted `arbor put`, a client gone mid-stream): ECANCELED. */
export class CancelledError extends ArborError {
  constructor(message: string) {
    super('ARBOR_CANCELLED', Errno.ECANCELED, message);
  }
}

/** Extract an errno from anything thrown; unknown errors map to EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof ArborError) return err.errno;
  if (err && typeof err === 'object' && 'errno' in err && typeof err.errno === 'number') {
    return Math.abs(err.errno);
  }
  return Errno.EIO;
}
