// Keyed BLAKE3-256 in plain TypeScript: the fallback for chunk ids when the native @napi-rs/blake-hash binary cannot
// load (an unsupported platform). Synchronous on purpose: ids are computed inside synchronous code paths, which an
// async (WebAssembly) hasher could not serve. Slow (~10× the native one) but byte-identical; chunk-id.test.ts checks.

const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const KEYED_HASH = 16;
const BLOCK = 64;
const CHUNK = 1024;

/** Message word order for each of the 7 rounds (the permutation applied 0..6 times), flattened. */
const SCHEDULE: Uint8Array = (() => {
  const perm = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
  const out = new Uint8Array(7 * 16);
  let cur = Array.from({ length: 16 }, (_, i) => i);
  for (let r = 0; r < 7; r++) {
    out.set(cur, r * 16);
    cur = perm.map((p) => cur[p]!);
  }
  return out;
})();

const v = new Uint32Array(16);

/**
 * The BLAKE3 compression function. Writes the 8-word chaining value (state[i] ^ state[i + 8]) to out[outOff...].
 * `m` holds the 16 little-endian message words.
 */
function compress(
  cv: Uint32Array,
  m: Uint32Array,
  counter: number,
  blockLen: number,
  flags: number,
  out: Uint32Array,
  outOff: number,
): void {
  v.set(cv, 0);
  v[8] = IV[0]!;
  v[9] = IV[1]!;
  v[10] = IV[2]!;
  v[11] = IV[3]!;
  v[12] = counter >>> 0;
  v[13] = Math.floor(counter / 0x100000000) >>> 0;
  v[14] = blockLen;
  v[15] = flags;
  for (let r = 0; r < 7; r++) {
    const s = r * 16;
    g(0, 4, 8, 12, m[SCHEDULE[s]!]!, m[SCHEDULE[s + 1]!]!);
    g(1, 5, 9, 13, m[SCHEDULE[s + 2]!]!, m[SCHEDULE[s + 3]!]!);
    g(2, 6, 10, 14, m[SCHEDULE[s + 4]!]!, m[SCHEDULE[s + 5]!]!);
    g(3, 7, 11, 15, m[SCHEDULE[s + 6]!]!, m[SCHEDULE[s + 7]!]!);
    g(0, 5, 10, 15, m[SCHEDULE[s + 8]!]!, m[SCHEDULE[s + 9]!]!);
    g(1, 6, 11, 12, m[SCHEDULE[s + 10]!]!, m[SCHEDULE[s + 11]!]!);
    g(2, 7, 8, 13, m[SCHEDULE[s + 12]!]!, m[SCHEDULE[s + 13]!]!);
    g(3, 4, 9, 14, m[SCHEDULE[s + 14]!]!, m[SCHEDULE[s + 15]!]!);
  }
  for (let i = 0; i < 8; i++) out[outOff + i] = v[i]! ^ v[i + 8]!;
}

function g(a: number, b: number, c: number, d: number, x: number, y: number): void {
  let va = v[a]!;
  let vb = v[b]!;
  let vc = v[c]!;
  let vd = v[d]!;
  va = (va + vb + x) | 0;
  vd ^= va;
  vd = (vd >>> 16) | (vd << 16);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 12) | (vb << 20);
  va = (va + vb + y) | 0;
  vd ^= va;
  vd = (vd >>> 8) | (vd << 24);
  vc = (vc + vd) | 0;
  vb ^= vc;
  vb = (vb >>> 7) | (vb << 25);
  v[a] = va;
  v[b] = vb;
  v[c] = vc;
  v[d] = vd;
}

/** Load up to 64 bytes of data[off, off + len) as 16 little-endian words, zero-padded. */
function loadBlock(data: Uint8Array, off: number, len: number, m: Uint32Array): void {
  m.fill(0);
  for (let i = 0; i < len; i++) m[i >> 2]! |= data[off + i]! << ((i & 3) * 8);
}

/** Keyed BLAKE3 with a 32-byte key, 32-byte output. */
export function blake3KeyedJs(key: Uint8Array, data: Uint8Array): Uint8Array {
  if (key.length !== 32) throw new RangeError('BLAKE3 key must be 32 bytes');
  const k = new Uint32Array(8);
  for (let i = 0; i < 32; i++) k[i >> 2]! |= key[i]! << ((i & 3) * 8);
  const m = new Uint32Array(16);
  const cv = new Uint32Array(8);
  // Chaining values of completed subtrees, one per set bit of the number of chunks hashed so far.
  const stack: Uint32Array[] = [];
  const nChunks = Math.max(1, Math.ceil(data.length / CHUNK));
  const parentBlock = new Uint32Array(16);
  for (let c = 0; c < nChunks; c++) {
    const start = c * CHUNK;
    const len = Math.min(CHUNK, data.length - start);
    const nBlocks = Math.max(1, Math.ceil(len / BLOCK));
    cv.set(k);
    const last = c === nChunks - 1;
    for (let b = 0; b < nBlocks; b++) {
      const bl = Math.min(BLOCK, len - b * BLOCK);
      loadBlock(data, start + b * BLOCK, bl, m);
      let flags = KEYED_HASH;
      if (b === 0) flags |= CHUNK_START;
      if (b === nBlocks - 1) flags |= CHUNK_END;
      // The root is the last chunk's last block only when the whole input is one chunk.
      if (last && b === nBlocks - 1 && nChunks === 1) flags |= ROOT;
      compress(cv, m, c, bl, flags, cv, 0);
    }
    if (last) break;
    // Merge completed subtrees: after chunk c, there are c + 1 chunks; each trailing zero bit is a merge.
    let node = Uint32Array.from(cv);
    let total = c + 1;
    while ((total & 1) === 0) {
      const left = stack.pop()!;
      parentBlock.set(left, 0);
      parentBlock.set(node, 8);
      const out = new Uint32Array(8);
      compress(k, parentBlock, 0, BLOCK, KEYED_HASH | PARENT, out, 0);
      node = out;
      total >>>= 1;
    }
    stack.push(node);
  }
  if (nChunks > 1) {
    // Fold the stack into the last chunk's value, right to left; the final parent compression is the root.
    let right = Uint32Array.from(cv);
    for (let i = stack.length - 1; i >= 0; i--) {
      parentBlock.set(stack[i]!, 0);
      parentBlock.set(right, 8);
      const out = new Uint32Array(8);
      compress(k, parentBlock, 0, BLOCK, KEYED_HASH | PARENT | (i === 0 ? ROOT : 0), out, 0);
      right = out;
    }
    cv.set(right);
  }
  const digest = new Uint8Array(32);
  for (let i = 0; i < 32; i++) digest[i] = (cv[i >> 2]! >>> ((i & 3) * 8)) & 255;
  return digest;
}
