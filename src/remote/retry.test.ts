// withRetry/withTimeout: what is retried, how often, and that a hung attempt cannot hang the caller.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemoteNotFoundError, RemoteUnavailableError } from '../errors.js';
import { FinalRemoteError, isRetryable, withRetry, withTimeout } from './retry.js';

describe('withRetry', () => {
  it('retries RemoteUnavailableError until success', async () => {
    let calls = 0;
    const v = await withRetry(
      'op',
      async () => {
        if (++calls < 3) throw new RemoteUnavailableError('down');
        return 42;
      },
      { attempts: 5, baseDelayMs: 1 },
    );
    assert.equal(v, 42);
    assert.equal(calls, 3);
  });

  it('gives up after `attempts` and throws the last error', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        'op',
        async () => {
          calls++;
          throw new RemoteUnavailableError(`down ${calls}`);
        },
        { attempts: 3, baseDelayMs: 1 },
      ),
      /down 3/,
    );
    assert.equal(calls, 3);
  });

  it('maps a library error before deciding, and passes arbor errors through the mapping untouched', async () => {
    let calls = 0;
    const seen: unknown[] = [];
    const map = (err: unknown): unknown => {
      seen.push(err);
      return new RemoteUnavailableError(`mapped ${(err as Error).message}`);
    };
    await assert.rejects(
      withRetry(
        'op',
        async () => {
          calls++;
          throw new Error(`socket hang up ${calls}`);
        },
        { attempts: 3, baseDelayMs: 1 },
        map,
      ),
      (err: unknown) => err instanceof RemoteUnavailableError && /mapped socket hang up 3/.test(err.message),
    );
    assert.equal(calls, 3, 'a library error mapped to a retryable one is retried');
    const notFound = new RemoteNotFoundError('k');
    await assert.rejects(
      withRetry(
        'op',
        async () => {
          throw notFound;
        },
        { attempts: 3, baseDelayMs: 1 },
        map,
      ),
      (err: unknown) => err === notFound,
    );
    assert.equal(seen.length, 3, 'arbor errors never reach the mapping');
  });

  it('does not retry answers (not found) or final errors', async () => {
    for (const err of [new RemoteNotFoundError('k'), new FinalRemoteError('bad key'), new TypeError('bug')]) {
      let calls = 0;
      await assert.rejects(
        withRetry(
          'op',
          async () => {
            calls++;
            throw err;
          },
          { attempts: 5, baseDelayMs: 1 },
        ),
        (e) => e === err,
      );
      assert.equal(calls, 1, err.name);
      assert.equal(isRetryable(err), false);
    }
  });

  it('bounds a hung attempt with the per-attempt timeout', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        'hang',
        () => {
          calls++;
          return new Promise<never>(() => undefined);
        },
        { attempts: 2, baseDelayMs: 1, timeoutMs: 30 },
      ),
      (e) => e instanceof RemoteUnavailableError && /timed out after 30 ms/.test(e.message),
    );
    assert.equal(calls, 2);
  });

  it('withTimeout passes values and errors through and calls onTimeout on expiry', async () => {
    assert.equal(await withTimeout(Promise.resolve(1), 1000, 'x'), 1);
    await assert.rejects(withTimeout(Promise.reject(new Error('boom')), 1000, 'x'), /boom/);
    let torn = false;
    await assert.rejects(
      withTimeout(new Promise(() => undefined), 10, 'x', () => (torn = true)),
      RemoteUnavailableError,
    );
    assert.equal(torn, true);
  });
});
