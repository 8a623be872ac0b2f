// The S3 backend (@aws-sdk/client-s3; checked against Ceph RGW): objects under `<bucket>/<prefix>/`; knows nothing of chunks.
// Write-once via PutObject with `If-None-Match: *` (412 → already there). Retries are ours (withRetry), not the SDK's,
// so every backend fails the same way: network trouble → RemoteUnavailableError after bounded, jittered retries.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { InvalidInputError, RemoteNotFoundError, RemoteUnavailableError } from '../errors.js';
import { checkKey, checkPrefix, checkRange, compareKeys } from './keys.js';
import { FinalRemoteError, withRetry, type RetryOptions } from './retry.js';
import type { ByteRange, ReadTarget, Remote } from './types.js';
import { formatRemoteUrl, type S3Location } from './url.js';

export interface S3RemoteOptions {
  readonly retry?: RetryOptions;
  /** Parallel keep-alive sockets to the endpoint (default 64). */
  readonly maxSockets?: number;
  /** TCP connect timeout in ms (default 5000). */
  readonly connectTimeoutMs?: number;
  /** Whole request timeout in ms (default 60000; large objects on slow links need more). */
  readonly requestTimeoutMs?: number;
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function sdkError(err: unknown): SdkError {
  return err && typeof err === 'object' ? (err as SdkError) : {};
}

/**
 * Read a GET response body into one buffer. With a Content-Length (every S3 GET has one), the pieces the socket
 * delivers (64 KiB each) are copied straight into a buffer of that size, allocated without zero-filling; the
 * SDK's transformToByteArray keeps every piece until the end, then copies them into a fresh zero-filled array —
 * twice the memory in flight and one more MiB-sized allocation per object, which on a 2-core machine serving
 * ~300 MiB/s showed up as garbage collection and slower concurrent reads. A body longer or shorter than its
 * Content-Length is a transport failure (retryable), never a short or padded result. `target` supplies the buffer
 * instead (the caller's, reused across objects: see Remote.getInto).
 */
export function readBody(
  body: Readable,
  length: number | undefined,
  target?: ReadTarget,
): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const exact = length !== undefined && Number.isSafeInteger(length) && length >= 0;
    let out: Buffer | undefined;
    if (exact) {
      if (target) {
        const a = target.alloc(length);
        if (a.length < length) {
          body.destroy();
          // The caller refused the object (e.g. larger than it can be): asking again would not change that.
          reject(new FinalRemoteError(`no buffer for a ${length}-byte body (got ${a.length} bytes)`));
          return;
        }
        out = Buffer.from(a.buffer, a.byteOffset, length);
      } else out = Buffer.allocUnsafe(length);
    }
    const copy = target?.copy;
    const pieces: Buffer[] = [];
    let n = 0;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      body.destroy();
      reject(err);
    };
    body.on('data', (piece: Buffer) => {
      if (failed) return;
      if (out) {
        if (n + piece.length > out.length) {
          fail(new RemoteUnavailableError(`response body longer than its Content-Length ${out.length}`));
          return;
        }
        if (copy) copy(out, n, piece);
        else piece.copy(out, n);
      } else pieces.push(piece);
      n += piece.length;
    });
    body.on('error', (err: Error) => fail(err));
    // Plain Uint8Array views (the Remote contract's type), over the same memory.
    const plain = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);
    body.on('end', () => {
      if (failed) return;
      if (!out) resolve(plain(Buffer.concat(pieces, n)));
      else if (n !== out.length)
        fail(new RemoteUnavailableError(`response body has ${n} bytes, Content-Length said ${out.length}`));
      else resolve(plain(out));
    });
  });
}

export class S3Remote implements Remote {
  readonly url: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** '' or 'prefix/' */
  private readonly base: string;
  private readonly retry: RetryOptions;
  private readonly agent: HttpAgent | HttpsAgent;

  constructor(loc: S3Location, opts: S3RemoteOptions = {}) {
    this.url = formatRemoteUrl(loc);
    this.bucket = loc.bucket;
    this.base = loc.prefix ? `${loc.prefix}/` : '';
    this.retry = opts.retry ?? {};
    const maxSockets = opts.maxSockets ?? 64;
    const secure = !loc.endpoint || loc.endpoint.startsWith('https:');
    // arbor targets Node 20 on purpose; the SDK's "Node 22 soon" notice would print on every CLI run.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.agent = secure
      ? new HttpsAgent({ keepAlive: true, maxSockets })
      : new HttpAgent({ keepAlive: true, maxSockets });
    this.client = new S3Client({
      region: loc.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      ...(loc.endpoint ? { endpoint: loc.endpoint, forcePathStyle: true } : {}),
      maxAttempts: 1,
      // Older S3-compatible engines (RGW pacific) do not understand the SDK's default flexible checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: opts.connectTimeoutMs ?? 5000,
        requestTimeout: opts.requestTimeoutMs ?? 60_000,
        throwOnRequestTimeout: true,
        ...(secure ? { httpsAgent: this.agent as HttpsAgent } : { httpAgent: this.agent as HttpAgent }),
      },
    });
  }

  /** Maps an SDK or network failure to arbor's errors; `key` names the object for 404s. */
  private mapError(what: string, err: unknown, key?: string): Error {
    if (err instanceof InvalidInputError || err instanceof RemoteUnavailableError) return err;
    const e = sdkError(err);
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? e.code ?? 'Error';
    const msg = `${this.url}: ${what} failed (${status ? `HTTP ${status} ` : ''}${name})`;
    if (key !== undefined && (status === 404 || name === 'NoSuchKey' || name === 'NotFound')) {
      return new RemoteNotFoundError(key);
    }
    if (name === 'NoSuchBucket')
      return new FinalRemoteError(`${this.url}: bucket ${this.bucket} does not exist`, { cause: err });
    if (
      name === 'CredentialsProviderError' ||
      (/credential/i.test(e.message ?? '') && status === undefined)
    ) {
      return new FinalRemoteError(
        `${this.url}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)`,
        {
          cause: err,
        },
      );
    }
    if (status === 401 || status === 403) {
      return new FinalRemoteError(`${msg}: check the AWS credentials and the bucket policy`, { cause: err });
    }
    if (
      status !== undefined &&
      status >= 400 &&
      status < 500 &&
      status !== 408 &&
      status !== 409 &&
      status !== 429
    ) {
      return new FinalRemoteError(msg, { cause: err });
    }
    // 5xx, 408/409/429, timeouts, refused/reset connections: worth retrying.
    return new RemoteUnavailableError(msg, { cause: err });
  }

  /** One operation with this remote's retries; SDK errors are mapped (`key` names what a 404 is about). */
  private retried<T>(what: string, fn: () => Promise<T>, key?: string, retry = this.retry): Promise<T> {
    return withRetry(what, fn, retry, (err) => this.mapError(what, err, key));
  }

  async putIfAbsent(key: string, data: Uint8Array): Promise<boolean> {
    checkKey(key);
    return this.retried(`put ${key}`, async () => {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.base + key,
            Body: data,
            ContentLength: data.byteLength,
            IfNoneMatch: '*',
          }),
        );
        return true;
      } catch (err) {
        const e = sdkError(err);
        // 412: an object is already there (it is left unchanged). A lost race answers 412 too; AWS may answer
        // 409 to a concurrent conditional write, which we retry and then see as 412.
        if (e.$metadata?.httpStatusCode === 412 || e.name === 'PreconditionFailed') return false;
        throw err;
      }
    });
  }

  get(key: string, range?: ByteRange): Promise<Uint8Array> {
    return this.getObject(key, range);
  }

  getInto(key: string, target: ReadTarget): Promise<Uint8Array> {
    return this.getObject(key, undefined, target);
  }

  private async getObject(
    key: string,
    range: ByteRange | undefined,
    target?: ReadTarget,
  ): Promise<Uint8Array> {
    checkKey(key);
    if (range) checkRange(range);
    if (range && range.length === 0) {
      // HTTP cannot express an empty range; answer it after checking the object exists.
      if (!(await this.exists(key))) throw new RemoteNotFoundError(key);
      return new Uint8Array(0);
    }
    return this.retried(
      `get ${key}`,
      async () => {
        try {
          const resp = await this.client.send(
            new GetObjectCommand({
              Bucket: this.bucket,
              Key: this.base + key,
              ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
            }),
          );
          const body = resp.Body;
          if (!body) return new Uint8Array(0);
          // Node's HTTP handler answers with the IncomingMessage itself; anything else (another runtime's
          // handler) goes through the SDK's own collector.
          if (body instanceof Readable) return await readBody(body, resp.ContentLength, target);
          return await body.transformToByteArray();
        } catch (err) {
          // 416: the range starts at or past the end of an existing object → nothing to return.
          if (sdkError(err).$metadata?.httpStatusCode === 416 || sdkError(err).name === 'InvalidRange')
            return new Uint8Array(0);
          throw err;
        }
      },
      key,
    );
  }

  async exists(key: string): Promise<boolean> {
    checkKey(key);
    try {
      return await this.retried(
        `exists ${key}`,
        async () => {
          await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
          return true;
        },
        key,
      );
    } catch (err) {
      if (err instanceof RemoteNotFoundError) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix);
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.retried(`list ${prefix}`, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.base + prefix,
            ContinuationToken: token,
          }),
        ),
      );
      for (const obj of page.Contents ?? []) {
        if (obj.Key?.startsWith(this.base)) out.push(obj.Key.slice(this.base.length));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort(compareKeys);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    try {
      await this.retried(
        `delete ${key}`,
        () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.base + key })),
        key,
      );
    } catch (err) {
      if (!(err instanceof RemoteNotFoundError)) throw err;
    }
  }

  /** One HeadBucket round trip. */
  async ping(): Promise<void> {
    await this.retried(
      'ping',
      async () => {
        try {
          await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
        } catch (err) {
          if (sdkError(err).$metadata?.httpStatusCode === 404)
            throw new FinalRemoteError(`${this.url}: bucket ${this.bucket} does not exist`);
          throw err;
        }
      },
      undefined,
      { ...this.retry, attempts: 1 },
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.agent.destroy();
  }
}
