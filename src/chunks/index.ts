// The public face of src/chunks: what the CLI, tree/, sync/ and state/ import. Re-exports only.
export type { ChunkRef, ChunkingParams, ChunkStore } from './types.js';
export { HOLE_ID, isHole } from './types.js';
export { Chunker, DEFAULT_CHUNKING, StreamingSplitter, validateChunking } from './chunker.js';
export {
  CHUNK_ID_ALGORITHMS,
  DEFAULT_CHUNK_ID,
  blake3Implementation,
  type ChunkIdAlgorithm,
} from './chunk-id.js';
export { FsCrypto, ObjectCorruptError, SEAL_OVERHEAD, SEAL_VERSION, type Compression } from './crypto.js';
export {
  ARBOR_FORMAT_VERSION,
  DEFAULT_SCRYPT,
  buildArborJson,
  generateSecret,
  parseArborJson,
  readKeyFile,
  serializeArborJson,
  unlockWithPassphrase,
  verifySecret,
  writeKeyFile,
  type ArborJson,
  type KeyMode,
  type ScryptParams,
} from './keys.js';
export { MemoryChunkStore, type MemoryChunkStoreOptions } from './memory-store.js';
export {
  CHUNK_SCHEMA_VERSION,
  minCacheBytes,
  CachedChunkStore,
  remoteKey,
  stderrLogger,
  type CachedChunkStoreOptions,
  type ChunkStoreStats,
  type Logger,
} from './store.js';
