// The deterministic workload of the crash test: op i of round r, run against any Arbor. Test-only.
import type { Arbor } from '../../index.js';

/** Run op `i` of round `r` (each op is one or two tree transactions; all land under /r<r>). */
export async function workloadOp(fs: Arbor, r: number, i: number): Promise<void> {
  const R = `/r${r}`;
  if (i === 0) return fs.mkdir(R);
  i += 4; // so that op 1 is a mkdir (k ≡ 0 mod 5) and every later op finds what it needs
  switch (i % 5) {
    case 0:
      return fs.mkdir(`${R}/d${i}`);
    case 1:
      return fs.writeFile(`${R}/d${i - 1}/f`, `content ${i} `.repeat(1 + (i % 37)));
    case 2:
      return fs.rename(`${R}/d${i - 2}/f`, `${R}/g${i}`);
    case 3:
      await fs.link(`${R}/g${i - 1}`, `${R}/h${i}`);
      return fs.setxattr(`${R}/h${i}`, 'user.i', String(i));
    default:
      if (i >= 19) await fs.unlink(`${R}/g${i - 12}`);
      return fs.rmdir(`${R}/d${i - 4}`);
  }
}
