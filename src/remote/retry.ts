// Retries with jittered exponential backoff and per-attempt timeouts for the remote backends; knows no backend.
import { ArborError, RemoteUnavailableError } from '../errors.js';

export interface RetryOptions {
  /** Total attempts, including the first (default 4). */
  readonly attempts?: number;
  /** First backoff ceiling in ms; doubled per retry, full jitter (default 100). */
  readonly baseDelayMs?: number;
  /** Backoff ceiling in ms (default 2000). */
  readonly maxDelayMs?: number;
  /** Per-attempt timeout in ms; an attempt that takes longer fails with RemoteUnavailableError (default 30000). */
  readonly timeoutMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = {
  attempts: 4,
  baseDelayMs: 100,
  maxDelayMs: 2000,
  timeoutMs: 30_000,
};

/** Retryable = RemoteUnavailableError not explicitly marked final (e.g. a host key mismatch is final). */
export function isRetryable(err: unknown): boolean {
  return err instanceof RemoteUnavailableError && (err as { retryable?: boolean }).retryable !== false;
}

/** A RemoteUnavailableError that retrying cannot fix (bad credentials, host key mismatch). */
export class FinalRemoteError extends RemoteUnavailableError {
  readonly retryable = false;
}

/** Rejects with RemoteUnavailableError when `p` has not settled after `ms`; calls `onTimeout` first (to tear down). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return p;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(new RemoteUnavailableError(`${what}: timed out after ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs `fn` until it succeeds, fails with a non-retryable error, or the attempts are used up (then the last
 * error is thrown). Each attempt is bounded by `timeoutMs`, so a dead server never hangs a caller forever.
 * `mapError` turns what a backend's library throws into arbor's errors (which decide whether to retry);
 * arbor's own errors pass through it unchanged.
 */
export async function withRetry<T>(
  what: string,
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions = {},
  mapError?: (err: unknown) => unknown,
): Promise<T> {
  const o = { ...DEFAULT_RETRY, ...opts };
  let last: unknown;
  for (let attempt = 1; attempt <= Math.max(1, o.attempts); attempt++) {
    try {
      return await withTimeout(fn(attempt), o.timeoutMs, what);
    } catch (err) {
      last = mapError && !(err instanceof ArborError) ? mapError(err) : err;
      if (!isRetryable(last) || attempt >= o.attempts) break;
      const ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** (attempt - 1));
      await sleep(Math.random() * ceiling);
    }
  }
  throw last;
}
