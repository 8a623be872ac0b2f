// Parses human sizes for the CLI ("10GiB", "512M", "1.5 GB", "4096"); knows nothing of arbor otherwise.
import { InvalidInputError } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** Bytes from "10GiB" / "512M" (binary for bare letters, like dd) / "1.5GB" (decimal) / "4096". */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined)
    throw new InvalidInputError(`invalid size '${text}' (try 10GiB, 512M or 4096)`);
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidInputError(`invalid size '${text}'`);
  return n;
}

/** Parses a duration: "30s", "15m", "24h", "7d", "500ms" or bare milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/.exec(text);
  if (!m) throw new InvalidInputError(`invalid duration '${text}' (try 30s, 15m, 24h or 7d)`);
  const mult = { ms: 1, '': 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Math.floor(Number(m[1]) * mult);
}

/** "1.2 GiB" for humans. */
export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${u[i]}`;
}
