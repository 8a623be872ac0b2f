// Opens a Remote from a URL (DESIGN.md §5) and reports reachability; the only place that knows every backend.
import { RemoteUnavailableError } from '../errors.js';
import { DirRemote, type DirRemoteOptions } from './dir.js';
import type { RetryOptions } from './retry.js';
import { S3Remote, type S3RemoteOptions } from './s3.js';
import { SftpRemote, type SftpRemoteOptions } from './sftp.js';
import type { Remote } from './types.js';
import { parseRemoteUrl } from './url.js';

export type { ByteRange, Remote } from './types.js';
export { parseRemoteUrl, formatRemoteUrl, type RemoteLocation } from './url.js';
export { withRetry, withTimeout, isRetryable, FinalRemoteError, type RetryOptions } from './retry.js';
export { defaultKnownHostsPath } from './known-hosts.js';
export { DirRemote, S3Remote, SftpRemote };

export interface OpenRemoteOptions {
  /** Retry/timeout policy for every backend (attempts, backoff, per-attempt timeout). */
  readonly retry?: RetryOptions;
  readonly dir?: Omit<DirRemoteOptions, 'retry'>;
  /** SFTP: known_hosts file for trust-on-first-use, channel count, timeouts. */
  readonly sftp?: Omit<SftpRemoteOptions, 'retry'>;
  readonly s3?: Omit<S3RemoteOptions, 'retry'>;
}

/**
 * Opens the remote named by `url`: `file:///abs/path` or a plain path, `sftp://user@host[:port]/abs/path[?key=…&known_hosts=…]`,
 * `s3://bucket/prefix[?endpoint=http://host:port&region=…]`. Throws InvalidInputError for a malformed URL.
 * Opening does no I/O; connections are made on first use (call `checkReachable` to test one).
 */
export async function openRemote(url: string, opts: OpenRemoteOptions = {}): Promise<Remote> {
  const loc = parseRemoteUrl(url);
  const retry = opts.retry ? { retry: opts.retry } : {};
  switch (loc.kind) {
    case 'dir':
      return new DirRemote(loc.path, { ...opts.dir, ...retry });
    case 'sftp':
      return new SftpRemote(loc, { ...opts.sftp, ...retry });
    case 's3':
      return new S3Remote(loc, { ...opts.s3, ...retry });
  }
}

export type Reachability =
  | { readonly reachable: true; readonly latencyMs: number }
  | { readonly reachable: false; readonly error: string };

/** One cheap round trip to the store (for `arbor status`); never throws. */
export async function checkReachable(remote: Remote): Promise<Reachability> {
  const t0 = performance.now();
  try {
    if (remote.ping) await remote.ping();
    else await remote.exists('arbor.json');
    return { reachable: true, latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
  } catch (err) {
    const error = err instanceof RemoteUnavailableError || err instanceof Error ? err.message : String(err);
    return { reachable: false, error };
  }
}
