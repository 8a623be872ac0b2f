// Loads the optional native/fuseio addon: readiness-driven, non-throwing reads of /dev/fuse on the main thread.
// Absent (not built, or ARBOR_NO_NATIVE=1) → undefined, and device.ts reads through the libuv threadpool instead.
import { loadOptionalAddon } from '../native.js';

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

/** Absent (not built, ARBOR_NO_NATIVE=1, built elsewhere): the threadpool reader still works. */
function load(): FuseIo | undefined {
  return loadOptionalAddon<FuseIo>('fuseio/build/Release/fuseio.node', ['watch', 'start', 'close', 'read']);
}

/** The loaded addon, or undefined. */
export const fuseIo: FuseIo | undefined = load();
