// Length-prefixed frames over a stream socket, with back-pressure both ways: the command socket of a mount
// (src/cli/serve.ts, run.ts) streams a command's input and output through these, so neither process ever holds more
// than a few frames of a file in memory. Knows nothing of commands.
import type { Socket } from 'node:net';

/** Frame types (one byte). Client → mount: request, input, inputEnd. Mount → client: stdout, note, done, error. */
export const FrameType = {
  /** JSON `{run, args, input}`: the first frame of a connection. */
  request: 0x52, // R
  /** Bytes of the command's input (a file or stdin being put). */
  input: 0x49, // I
  /** The input is complete. A connection closed before it means the client gave up: the command is cancelled. */
  inputEnd: 0x45, // E
  /** Bytes the command wrote to stdout. */
  stdout: 0x4f, // O
  /** Text for stderr (notes, already "arbor: "-prefixed lines). */
  note: 0x4e, // N
  /** JSON `{exitCode}`: the command finished; the last frame. */
  done: 0x44, // D
  /** JSON `{message, code, errno}`: the command failed; the last frame. */
  error: 0x58, // X
} as const;

export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
}

/** Largest payload of one frame: a bigger write is split. Bounds what a reader must buffer for one frame. */
export const FRAME_MAX = 256 * 1024;
const HEADER = 5; // type byte + payload length (uint32 BE)
/** Received frames not yet taken beyond this pause the socket (the sender then waits on its full buffer). */
const QUEUE_HIGH = 1024 * 1024;

const closedError = (): Error => Object.assign(new Error('the connection closed'), { code: 'EPIPE' });

/** One connection's frames: `next()` takes received frames in order, `send()` resolves when the socket can take more. */
export class FrameSocket {
  private raw: Buffer[] = [];
  private rawLen = 0;
  private readonly queue: Frame[] = [];
  private queued = 0;
  private paused = false;
  private discarding = false;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => this.received(d));
    const end = (): void => {
      this.ended = true;
      this.notify();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end); // a reset peer is the same as a closed one here; the caller sees `next()` → undefined
  }

  /** The next received frame, or undefined once the peer closed and everything received was taken. */
  async next(): Promise<Frame | undefined> {
    for (;;) {
      const f = this.queue.shift();
      if (f !== undefined) {
        this.queued -= f.payload.length;
        if (this.paused && this.queued <= QUEUE_HIGH / 2) {
          this.paused = false;
          this.sock.resume();
        }
        return f;
      }
      if (this.ended) return undefined;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Send one frame (data longer than FRAME_MAX as several); resolves once the socket's buffer has room again. */
  async send(type: number, data: Uint8Array = Buffer.alloc(0)): Promise<void> {
    let off = 0;
    do {
      const part = data.subarray(off, off + FRAME_MAX);
      off += part.length;
      if (!this.sendNow(type, part)) await this.drained();
    } while (off < data.length);
  }

  /**
   * Queue one frame without waiting (small control frames and text lines); false when the socket's buffer is full.
   * Throws if the connection is gone.
   */
  sendNow(type: number, payload: Uint8Array): boolean {
    if (this.sock.destroyed || this.sock.writableEnded) throw closedError();
    if (payload.length > FRAME_MAX) throw new RangeError('frame payload too large');
    const head = Buffer.allocUnsafe(HEADER);
    head[0] = type;
    head.writeUInt32BE(payload.length, 1);
    this.sock.write(head);
    return this.sock.write(payload);
  }

  /** Everything else received is dropped unread (the command is over; the peer may still be sending input). */
  discardInput(): void {
    this.discarding = true;
    this.queue.length = 0;
    this.queued = 0;
    this.raw = [];
    this.rawLen = 0;
    if (this.paused) {
      this.paused = false;
      this.sock.resume();
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.sock.destroyed) return reject(closedError());
      const done = (err?: Error): void => {
        this.sock.off('drain', onDrain);
        this.sock.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(closedError());
      this.sock.on('drain', onDrain);
      this.sock.on('close', onClose);
    });
  }

  private received(d: Buffer): void {
    if (this.discarding) return;
    this.raw.push(d);
    this.rawLen += d.length;
    for (;;) {
      if (this.rawLen < HEADER) return;
      if (this.raw[0]!.length < HEADER) this.raw = [Buffer.concat(this.raw)];
      const len = this.raw[0]!.readUInt32BE(1);
      if (len > FRAME_MAX) {
        // Not our protocol (or a broken peer): drop the connection rather than buffer an unbounded frame.
        this.sock.destroy();
        return;
      }
      if (this.rawLen < HEADER + len) return;
      // Joined only once a frame is complete, so a frame arriving in many pieces is copied once.
      const all = this.raw.length === 1 ? this.raw[0]! : Buffer.concat(this.raw);
      const rest = all.subarray(HEADER + len);
      this.raw = rest.length > 0 ? [rest] : [];
      this.rawLen = rest.length;
      this.queue.push({ type: all[0]!, payload: all.subarray(HEADER, HEADER + len) });
      this.queued += len;
      if (!this.paused && this.queued > QUEUE_HIGH) {
        this.paused = true;
        this.sock.pause();
      }
      this.notify();
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
