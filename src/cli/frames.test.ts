// FrameSocket: big writes split into frames and joined back in order; a reader that takes slowly holds the sender
// back (it never gets more than a few MiB ahead); a closed peer ends `next()` and fails a waiting `send()`; an
// oversized frame header drops the connection instead of buffering it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FRAME_MAX, FrameSocket, FrameType } from './frames.js';

describe('FrameSocket', () => {
  let dir = '';
  let server: Server;
  const accepted: Socket[] = [];
  let waiting: ((s: Socket) => void) | undefined;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-frames-'));
    server = createServer((s) => {
      accepted.push(s);
      waiting?.(s);
    });
    await new Promise<void>((r) => server.listen(path.join(dir, 's'), r));
  });
  after(() => {
    for (const s of accepted) s.destroy();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const pair = async (): Promise<[FrameSocket, FrameSocket]> => {
    const peer = new Promise<Socket>((r) => (waiting = r));
    const c = createConnection(path.join(dir, 's'));
    await new Promise((r) => c.once('connect', r));
    return [new FrameSocket(c), new FrameSocket(await peer)];
  };

  it('splits, orders and rejoins; a slow reader holds the sender back', async () => {
    const [a, b] = await pair();
    const data = randomBytes(12 * 1024 * 1024 + 17);
    let sent = 0;
    let maxAhead = 0;
    let taken = 0;
    const sending = (async () => {
      for (let off = 0; off < data.length; off += 1024 * 1024) {
        const part = data.subarray(off, off + 1024 * 1024);
        await a.send(FrameType.stdout, part);
        sent += part.length;
        maxAhead = Math.max(maxAhead, sent - taken);
      }
      a.sendNow(FrameType.done, Buffer.from('{}'));
    })();
    const got: Buffer[] = [];
    for (;;) {
      const f = await b.next();
      assert.ok(f !== undefined);
      if (f.type === FrameType.done) break;
      assert.equal(f.type, FrameType.stdout);
      assert.ok(f.payload.length <= FRAME_MAX);
      got.push(Buffer.from(f.payload));
      taken += f.payload.length;
      await new Promise((r) => setTimeout(r, 2)); // a slow consumer (a full pipe downstream)
    }
    await sending;
    assert.ok(Buffer.concat(got).equals(data), 'same bytes in order');
    assert.ok(maxAhead <= 4 * 1024 * 1024, `the sender got ${maxAhead} bytes ahead of the reader`);
  });

  it('a closed peer ends next() and fails a send waiting for room', async () => {
    const [a, b] = await pair();
    // Fill the socket (nobody reads b), then close b: the waiting send rejects instead of hanging.
    const big = Buffer.alloc(8 * 1024 * 1024);
    const p = a.send(FrameType.input, big);
    await new Promise((r) => setTimeout(r, 50));
    b.sock.destroy();
    await assert.rejects(p);
    assert.equal(await a.next(), undefined);
  });

  it('an oversized frame header drops the connection', async () => {
    const [a, b] = await pair();
    const head = Buffer.alloc(5);
    head[0] = FrameType.input;
    head.writeUInt32BE(FRAME_MAX + 1, 1);
    a.sock.write(head);
    assert.equal(await b.next(), undefined);
  });
});
