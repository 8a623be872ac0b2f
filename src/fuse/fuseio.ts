// Loads the optional native/fuseio addon: readiness-driven, non-throwing reads of /dev/fuse on the main thread.
// Absent (not built, or ARBOR_NO_NATIVE=1) → undefined, and device.ts reads through the libuv threadpool instead.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque libuv poll handle owned by the addon. */
export type FuseWatch = { readonly __fuseWatch: unique symbol };

export interface FuseIo {
  /**
   * Set O_NONBLOCK on `fd` and call `onReady(status)` from the event loop whenever it is readable (status 0) or
   * the poll failed (status < 0, e.g. POLLERR on a descriptor not attached yet or an unmounted connection; libuv
   * then stops watching until `start`).
   */
  watch(fd: number, onReady: (status: number) => void): FuseWatch;
  /** Resume watching after a failed poll (no-op while watching). */
  start(w: FuseWatch): void;
  /** Stop watching and release the handle (idempotent); the event loop no longer waits for it. */
  close(w: FuseWatch): void;
  /** read(2) into `buf`: bytes read, or -errno (-EAGAIN when nothing is waiting). Never throws for I/O errors. */
  read(fd: number, buf: Buffer): number;
}

function load(): FuseIo | undefined {
  if (process.env.ARBOR_NO_NATIVE === '1') return undefined;
  const require = createRequire(import.meta.url);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src/fuse (sources) or dist/src/fuse (compiled): the repo root is 2 or 3 levels up.
  for (const up of ['../..', '../../..']) {
    const p = path.resolve(here, up, 'native/fuseio/build/Release/fuseio.node');
    if (!fs.existsSync(p)) continue;
    try {
      const m = require(p) as Partial<FuseIo>;
      if (
        typeof m.watch === 'function' &&
        typeof m.start === 'function' &&
        typeof m.close === 'function' &&
        typeof m.read === 'function'
      )
        return m as FuseIo;
    } catch {
      // Built for another node or platform: the threadpool reader still works.
    }
  }
  return undefined;
}

/** The loaded addon, or undefined. */
export const fuseIo: FuseIo | undefined = load();
