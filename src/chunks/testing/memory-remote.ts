// An in-memory Remote with switchable faults (down, errors, slow, corrupt/truncate) for chunk-store tests; test-only.
import { RemoteNotFoundError, RemoteUnavailableError } from '../../errors.js';
import type { ByteRange, Remote } from '../../remote/types.js';

export class MemoryRemote implements Remote {
  readonly url = 'memory://test';
  readonly objects = new Map<string, Uint8Array>();
  /** While true every call fails with RemoteUnavailableError. */
  down = false;
  /** The next N calls fail with RemoteUnavailableError (then the remote works again). */
  failNext = 0;
  /** Each call fails with this probability (deterministic sequence from `seed`). */
  errorRate = 0;
  /** Added latency per call, in milliseconds. */
  delayMs = 0;
  /** Call counters. */
  readonly calls = { putIfAbsent: 0, get: 0, exists: 0, list: 0, delete: 0 };
  private seed = 12345;
  /** Resolvers waiting for `down` to clear (see waitUntilCalled). */
  private listeners: (() => void)[] = [];

  private rand(): number {
    this.seed ^= this.seed << 13;
    this.seed ^= this.seed >>> 17;
    this.seed ^= this.seed << 5;
    return (this.seed >>> 0) / 2 ** 32;
  }

  private async enter(op: keyof MemoryRemote['calls']): Promise<void> {
    this.calls[op]++;
    for (const l of this.listeners.splice(0)) l();
    // Always yield to the event loop like a real backend's I/O would: a remote that answers in microtasks alone
    // would let a read loop starve the cache's own file I/O, which no real remote does.
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    else await new Promise((r) => setImmediate(r));
    if (this.down) throw new RemoteUnavailableError('memory remote is down');
    if (this.failNext > 0) {
      this.failNext--;
      throw new RemoteUnavailableError('memory remote: injected error');
    }
    if (this.errorRate > 0 && this.rand() < this.errorRate) {
      throw new RemoteUnavailableError('memory remote: injected random error');
    }
  }

  /** Resolves at the next call of any method (used to observe retries). */
  nextCall(): Promise<void> {
    return new Promise((r) => this.listeners.push(r));
  }

  async putIfAbsent(key: string, data: Uint8Array): Promise<boolean> {
    await this.enter('putIfAbsent');
    if (this.objects.has(key)) return false;
    this.objects.set(key, Uint8Array.from(data));
    return true;
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    await this.enter('get');
    const o = this.objects.get(key);
    if (!o) throw new RemoteNotFoundError(key);
    if (!range) return Uint8Array.from(o);
    return o.slice(range.offset, range.offset + range.length);
  }

  async exists(key: string): Promise<boolean> {
    await this.enter('exists');
    return this.objects.has(key);
  }

  async list(prefix: string): Promise<string[]> {
    await this.enter('list');
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async delete(key: string): Promise<void> {
    await this.enter('delete');
    this.objects.delete(key);
  }

  async close(): Promise<void> {}

  /** Flip one byte of a stored object behind the store's back. */
  corrupt(key: string, at = -1): void {
    const o = this.objects.get(key);
    if (!o) throw new Error(`no object ${key}`);
    const i = at < 0 ? o.length + at : at;
    o[i] = o[i]! ^ 0x5a;
  }

  /** Cut a stored object short behind the store's back. */
  truncate(key: string, length: number): void {
    const o = this.objects.get(key);
    if (!o) throw new Error(`no object ${key}`);
    this.objects.set(key, o.slice(0, length));
  }
}
