// Validation of remote object keys and list prefixes, shared by every backend; knows nothing about any store.
import { InvalidInputError } from '../errors.js';

// One path segment: a safe, sortable character set (ASCII, so UTF-16 and byte order agree across backends),
// never starting with '.', which keeps '.'/'..' out and leaves dot-names free for backends' temp files.
const SEGMENT = /^[A-Za-z0-9_~+=-][A-Za-z0-9._~+=-]*$/;
const MAX_KEY_LENGTH = 512;

/** Throws InvalidInputError unless `key` is a '/'-separated relative path of safe segments. */
export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new InvalidInputError(
      `invalid remote key ${JSON.stringify(key)}: must be 1..${MAX_KEY_LENGTH} characters`,
    );
  }
  for (const seg of key.split('/')) {
    if (!SEGMENT.test(seg)) {
      throw new InvalidInputError(
        `invalid remote key ${JSON.stringify(key)}: segments use [A-Za-z0-9._~+=-], are non-empty and do not start with '.'`,
      );
    }
  }
}

/** A list prefix is '' or any prefix of a valid key (it may end inside a segment or with '/'). */
export function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  const segs = prefix.split('/');
  const last = segs.pop() as string;
  for (const seg of segs) {
    if (!SEGMENT.test(seg))
      throw new InvalidInputError(`invalid remote list prefix ${JSON.stringify(prefix)}`);
  }
  if (last !== '' && !SEGMENT.test(last))
    throw new InvalidInputError(`invalid remote list prefix ${JSON.stringify(prefix)}`);
}

/** Validates a byte range: non-negative safe integers. */
export function checkRange(range: { offset: number; length: number }): void {
  if (
    !Number.isSafeInteger(range.offset) ||
    range.offset < 0 ||
    !Number.isSafeInteger(range.length) ||
    range.length < 0
  ) {
    throw new InvalidInputError(`invalid byte range offset=${range.offset} length=${range.length}`);
  }
}

/** Code-unit order; keys are ASCII (checkKey), so this is also byte order, which S3 lists in. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
