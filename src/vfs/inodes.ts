// The per-mount map kernel inode number ↔ tree node id, with the kernel's lookup counts; knows no FUSE bytes and no tree.
import { fsError } from '../errors.js';

/**
 * Kernel inode numbers (`ino`) are made here and nowhere else (DESIGN.md §3): never replicated, never reused within
 * a mount (so the generation can stay 0). Root is 1. An entry lives while the kernel holds a reference (lookup count
 * > 0) or a handle is open on it; at zero of both it is dropped, and a later lookup of the same node gets a new ino.
 * Entries made only to number a plain readdir entry start at count 0 and are dropped by the next forget of them, or
 * kept (they are small) until then.
 */
export class InodeTable {
  readonly #byIno = new Map<bigint, { node: string; lookups: bigint; opens: number }>();
  readonly #byNode = new Map<string, bigint>();
  #next = 2n;

  constructor(rootNode: string) {
    this.#byIno.set(1n, { node: rootNode, lookups: 1n, opens: 0 });
    this.#byNode.set(rootNode, 1n);
  }

  /** The node an ino stands for; ENOENT if the kernel uses an ino this mount no longer knows (a forgotten node). */
  node(ino: bigint): string {
    const e = this.#byIno.get(ino);
    if (e === undefined) throw fsError('ENOENT', `unknown inode ${ino}`);
    return e.node;
  }

  /** The ino of a node if the kernel may know it (no allocation). */
  peek(node: string): bigint | undefined {
    return this.#byNode.get(node);
  }

  /** The node's ino, allocating one (with lookup count 0) if it has none. */
  ino(node: string): bigint {
    let ino = this.#byNode.get(node);
    if (ino === undefined) {
      ino = this.#next++;
      this.#byNode.set(node, ino);
      this.#byIno.set(ino, { node, lookups: 0n, opens: 0 });
    }
    return ino;
  }

  /** Count one reply that handed `node` to the kernel (LOOKUP, CREATE, MKDIR, ..., a READDIRPLUS entry). */
  lookedUp(node: string): bigint {
    const ino = this.ino(node);
    this.#byIno.get(ino)!.lookups++;
    return ino;
  }

  /** FORGET/BATCH_FORGET: the kernel dropped `n` references. */
  forget(ino: bigint, n: bigint): void {
    if (ino === 1n) return;
    const e = this.#byIno.get(ino);
    if (e === undefined) return;
    e.lookups -= n;
    if (e.lookups < 0n) e.lookups = 0n;
    this.#maybeDrop(ino);
  }

  /** A handle was opened on `ino` (keeps the entry alive even if the kernel forgets it). */
  opened(ino: bigint): void {
    const e = this.#byIno.get(ino);
    if (e !== undefined) e.opens++;
  }

  closed(ino: bigint): void {
    const e = this.#byIno.get(ino);
    if (e === undefined) return;
    if (e.opens > 0) e.opens--;
    this.#maybeDrop(ino);
  }

  /** The kernel's lookup count of `ino` (0n if unknown); for tests. */
  lookups(ino: bigint): bigint {
    return this.#byIno.get(ino)?.lookups ?? 0n;
  }

  /** Number of live entries, root included. */
  get size(): number {
    return this.#byIno.size;
  }

  #maybeDrop(ino: bigint): void {
    const e = this.#byIno.get(ino)!;
    if (e.lookups > 0n || e.opens > 0) return;
    this.#byIno.delete(ino);
    if (this.#byNode.get(e.node) === ino) this.#byNode.delete(e.node);
  }
}
