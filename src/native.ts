// Finding and loading arbor's own N-API addons (built under native/ by `npm ci` through native/build.mjs). Shared by
// the parts that use one: chunks (native/accel), fuse (native/fuseio, native/build's fdpass).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

/** The built addon file `native/<relPath>` (e.g. 'accel/build/Release/accel.node'), or undefined if not built. */
export function findAddon(relPath: string): string | undefined {
  // src (sources) or dist/src (compiled): the repo root is 1 or 2 levels up.
  for (const up of ['..', '../..']) {
    const p = path.resolve(here, up, 'native', relPath);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** `require` of a built addon file (throws as require does). */
export function requireAddon<T>(file: string): T {
  return require(file) as T;
}

/**
 * An optional addon: undefined when ARBOR_NO_NATIVE=1, when it is not built, when it was built for another node or
 * platform, or when it lacks one of `methods` (an older build); callers then use their JavaScript paths.
 */
export function loadOptionalAddon<T>(relPath: string, methods: readonly (keyof T & string)[]): T | undefined {
  if (process.env.ARBOR_NO_NATIVE === '1') return undefined;
  const file = findAddon(relPath);
  if (file === undefined) return undefined;
  try {
    const m = requireAddon<Partial<Record<string, unknown>>>(file);
    return methods.every((name) => typeof m[name] === 'function') ? (m as T) : undefined;
  } catch {
    return undefined;
  }
}
