// FuseDevice without a mount: a unix socket pair stands in for /dev/fuse (one request per write, one reply per read),
// served by the poll reader (native/fuseio, when built) and by the threadpool reader.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { Opcode } from './abi.js';
import { FuseDevice } from './device.js';
import type { LowLevelFileSystem } from './filesystem.js';
import { fuseIo } from './fuseio.js';
import { loadFdPass } from './fusermount.js';
import { Session } from './session.js';

function request(opcode: number, unique: number, nodeid: number, body: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32LE(40 + body.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(BigInt(unique), 8);
  h.writeBigUInt64LE(BigInt(nodeid), 16);
  return Buffer.concat([h, body]);
}

const INIT_BODY = Buffer.alloc(64);
INIT_BODY.writeUInt32LE(7, 0);
INIT_BODY.writeUInt32LE(45, 4);
INIT_BODY.writeUInt32LE(131072, 8);

function writeBody(data: Buffer): Buffer {
  const b = Buffer.alloc(40);
  b.writeUInt32LE(data.length, 16);
  return Buffer.concat([b, data]);
}

/** One reply from the kernel's side of the pair: header first, then the rest it announces. */
async function reply(fd: number): Promise<{ error: number; unique: number; body: Buffer }> {
  const read = (n: number): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const buf = Buffer.alloc(n);
      fs.read(fd, buf, 0, n, null, (err, got) => (err ? reject(err) : resolve(buf.subarray(0, got))));
    });
  const head = await read(16);
  assert.equal(head.length, 16);
  const len = head.readUInt32LE(0);
  const body = len > 16 ? await read(len - 16) : Buffer.alloc(0);
  return { error: head.readInt32LE(4), unique: Number(head.readBigUInt64LE(8)), body };
}

const socketPair = (): [number, number] | undefined => {
  try {
    return loadFdPass().socketpair();
  } catch {
    return undefined; // native/fdpass not built
  }
};

const probe = socketPair();
for (const fd of probe ?? []) fs.closeSync(fd);

for (const reader of ['poll', 'threadpool'] as const) {
  const skip =
    probe === undefined
      ? 'native/fdpass not built'
      : reader === 'poll' && !fuseIo
        ? 'native/fuseio not built (or ARBOR_NO_NATIVE=1)'
        : false;
  describe(`FuseDevice, ${reader} reader`, { skip }, () => {
    it('answers each request; a WRITE keeps its buffer until its handler settles; stop() ends it', async () => {
      const pair = socketPair();
      assert.ok(pair);
      const [ours, kernel] = pair;
      const seen: string[] = [];
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      // The pair is a stream: a request sent before the previous one was read would arrive in the same read (the
      // real device returns one request per read), so each is sent once the last one is being handled.
      let entered: () => void = () => undefined;
      const inWrite = new Promise<void>((r) => (entered = r));
      const memfs: LowLevelFileSystem = {
        async write(_ctx, _ino, _fh, _off, data) {
          entered();
          await gate; // other requests are read meanwhile: they must not land in this buffer
          seen.push(data.toString());
          return data.length;
        },
        getattr: () => ({
          ino: 1n,
          size: 0,
          atimeNs: 0n,
          mtimeNs: 0n,
          ctimeNs: 0n,
          mode: 0o40755,
          nlink: 2,
          uid: 0,
          gid: 0,
        }),
      };
      const session = new Session(memfs);
      const device = new FuseDevice(ours, session, reader === 'poll' ? {} : { native: null, reads: 2 });
      try {
        assert.equal(device.reader, reader);
        fs.writeSync(kernel, request(Opcode.INIT, 1, 0, INIT_BODY));
        assert.deepEqual((await reply(kernel)).error, 0);
        fs.writeSync(kernel, request(Opcode.WRITE, 2, 1, writeBody(Buffer.from('first write'))));
        await inWrite;
        for (let i = 0; i < 3; i++) {
          fs.writeSync(kernel, request(Opcode.GETATTR, 10 + i, 1, Buffer.alloc(16)));
          const r = await reply(kernel);
          assert.equal(r.unique, 10 + i);
          assert.equal(r.error, 0);
        }
        release();
        const w = await reply(kernel);
        assert.equal(w.unique, 2);
        assert.equal(w.error, 0);
        assert.equal(w.body.readUInt32LE(0), 'first write'.length);
        assert.deepEqual(seen, ['first write']);
        // An unknown opcode still gets its one reply (ENOSYS).
        fs.writeSync(kernel, request(9999, 20, 1, Buffer.alloc(0)));
        assert.equal((await reply(kernel)).error, -38);
      } finally {
        device.stop();
        // Wake the threadpool reads parked on the socket so `closed` can resolve: they see end of file.
        fs.closeSync(kernel);
        await device.closed;
        fs.closeSync(ours);
      }
    });
  });
}

it('CI builds native/fuseio (a silent fallback to the threadpool reader would cost ~40 futex calls per request)', (t) => {
  if (process.env.CI !== 'true' || process.env.ARBOR_NO_NATIVE === '1')
    return t.skip('only checked under CI=true');
  assert.ok(
    fuseIo !== undefined,
    'native/fuseio did not build or load (see native/build.mjs output in npm ci)',
  );
});
