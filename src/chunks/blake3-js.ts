// Keyed BLAKE3-256 in plain TypeScript: the fallback for chunk ids when the native @napi-rs/blake-hash binary cannot
// load (an unsupported platform). Synchronous on purpose: ids are computed inside synchronous code paths, which an
// async (WebAssembly) hasher could not serve. ~300 MiB/s, a fifteenth of the native one, but byte-identical
// (chunk-id.test.ts checks).

const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const KEYED_HASH = 16;
const BLOCK = 64;
const CHUNK = 1024;

/**
 * The BLAKE3 compression function, all in locals (an array-based version ran at a sixth of the speed). Reads the
 * 8-word chaining value at cv[cvOff...] and 16 message words at m[0...]; writes the output chaining value
 * (state[i] ^ state[i + 8]) to out[outOff...].
 */
function compress(
  cv: Uint32Array,
  cvOff: number,
  m: Uint32Array,
  counter: number,
  blockLen: number,
  flags: number,
  out: Uint32Array,
  outOff: number,
): void {
  let v0 = cv[cvOff]! | 0;
  let v1 = cv[cvOff + 1]! | 0;
  let v2 = cv[cvOff + 2]! | 0;
  let v3 = cv[cvOff + 3]! | 0;
  let v4 = cv[cvOff + 4]! | 0;
  let v5 = cv[cvOff + 5]! | 0;
  let v6 = cv[cvOff + 6]! | 0;
  let v7 = cv[cvOff + 7]! | 0;
  let v8 = 0x6a09e667 | 0;
  let v9 = 0xbb67ae85 | 0;
  let v10 = 0x3c6ef372 | 0;
  let v11 = 0xa54ff53a | 0;
  let v12 = counter | 0;
  let v13 = Math.floor(counter / 0x100000000) | 0;
  let v14 = blockLen | 0;
  let v15 = flags | 0;
  let m0 = m[0]! | 0;
  let m1 = m[1]! | 0;
  let m2 = m[2]! | 0;
  let m3 = m[3]! | 0;
  let m4 = m[4]! | 0;
  let m5 = m[5]! | 0;
  let m6 = m[6]! | 0;
  let m7 = m[7]! | 0;
  let m8 = m[8]! | 0;
  let m9 = m[9]! | 0;
  let m10 = m[10]! | 0;
  let m11 = m[11]! | 0;
  let m12 = m[12]! | 0;
  let m13 = m[13]! | 0;
  let m14 = m[14]! | 0;
  let m15 = m[15]! | 0;
  for (let r = 0; ; r++) {
    v0 = (v0 + v4 + m0) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 16) | (v12 << 16);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 12) | (v4 << 20);
    v0 = (v0 + v4 + m1) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 8) | (v12 << 24);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 7) | (v4 << 25);
    v1 = (v1 + v5 + m2) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 16) | (v13 << 16);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 12) | (v5 << 20);
    v1 = (v1 + v5 + m3) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 8) | (v13 << 24);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 7) | (v5 << 25);
    v2 = (v2 + v6 + m4) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 16) | (v14 << 16);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 12) | (v6 << 20);
    v2 = (v2 + v6 + m5) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 8) | (v14 << 24);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 7) | (v6 << 25);
    v3 = (v3 + v7 + m6) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 16) | (v15 << 16);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 12) | (v7 << 20);
    v3 = (v3 + v7 + m7) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 8) | (v15 << 24);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 7) | (v7 << 25);
    v0 = (v0 + v5 + m8) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 16) | (v15 << 16);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 12) | (v5 << 20);
    v0 = (v0 + v5 + m9) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 8) | (v15 << 24);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 7) | (v5 << 25);
    v1 = (v1 + v6 + m10) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 16) | (v12 << 16);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 12) | (v6 << 20);
    v1 = (v1 + v6 + m11) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 8) | (v12 << 24);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 7) | (v6 << 25);
    v2 = (v2 + v7 + m12) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 16) | (v13 << 16);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 12) | (v7 << 20);
    v2 = (v2 + v7 + m13) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 8) | (v13 << 24);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 7) | (v7 << 25);
    v3 = (v3 + v4 + m14) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 16) | (v14 << 16);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 12) | (v4 << 20);
    v3 = (v3 + v4 + m15) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 8) | (v14 << 24);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 7) | (v4 << 25);
    if (r === 6) break;
    // The message permutation between rounds.
    {
      const t0 = m2;
      const t1 = m6;
      const t2 = m3;
      const t3 = m10;
      const t4 = m7;
      const t5 = m0;
      const t6 = m4;
      const t7 = m13;
      const t8 = m1;
      const t9 = m11;
      const t10 = m12;
      const t11 = m5;
      const t12 = m9;
      const t13 = m14;
      const t14 = m15;
      const t15 = m8;
      m0 = t0;
      m1 = t1;
      m2 = t2;
      m3 = t3;
      m4 = t4;
      m5 = t5;
      m6 = t6;
      m7 = t7;
      m8 = t8;
      m9 = t9;
      m10 = t10;
      m11 = t11;
      m12 = t12;
      m13 = t13;
      m14 = t14;
      m15 = t15;
    }
  }
  out[outOff + 0] = v0 ^ v8;
  out[outOff + 1] = v1 ^ v9;
  out[outOff + 2] = v2 ^ v10;
  out[outOff + 3] = v3 ^ v11;
  out[outOff + 4] = v4 ^ v12;
  out[outOff + 5] = v5 ^ v13;
  out[outOff + 6] = v6 ^ v14;
  out[outOff + 7] = v7 ^ v15;
}

/** Load up to 64 bytes of data[off, off + len) as 16 little-endian words, zero-padded. */
function loadBlock(data: Uint8Array, off: number, len: number, m: Uint32Array): void {
  if (len === BLOCK) {
    for (let i = 0, p = off; i < 16; i++, p += 4) {
      m[i] = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24);
    }
    return;
  }
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
      compress(cv, 0, m, c, bl, flags, cv, 0);
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
      compress(k, 0, parentBlock, 0, BLOCK, KEYED_HASH | PARENT, out, 0);
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
      compress(k, 0, parentBlock, 0, BLOCK, KEYED_HASH | PARENT | (i === 0 ? ROOT : 0), out, 0);
      right = out;
    }
    cv.set(right);
  }
  const digest = new Uint8Array(32);
  for (let i = 0; i < 32; i++) digest[i] = (cv[i >> 2]! >>> ((i & 3) * 8)) & 255;
  return digest;
}
