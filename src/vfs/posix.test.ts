// The POSIX suite (posix.ts) run against a plain temp directory — proving each test right on the kernel's own
// filesystem — and against an arbor mount (real chunk store over a dir remote), each test in a fresh subdirectory.
// arborOnlySuite (deliberate differences from ext4, e.g. non-UTF-8 names refused) runs on the mount only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { arborOnlySuite, posixSuite } from './posix.js';
import { TestMount, mountSkip, tempArbor } from './testing/mounts.js';

describe('POSIX suite on a plain temp directory', () => {
  let base = '';
  before(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'arbor-posix-ref-'));
  });
  after(() => fs.rmSync(base, { recursive: true, force: true }));
  for (const [name, test] of Object.entries(posixSuite)) {
    it(name, async () => {
      const d = path.join(base, name);
      fs.mkdirSync(d);
      await test(d);
    });
  }
});

describe('POSIX suite on an arbor mount', { skip: mountSkip }, () => {
  let t: Awaited<ReturnType<typeof tempArbor>> | undefined;
  let m: TestMount | undefined;
  before(async () => {
    t = await tempArbor('arbor-posix-');
    m = await TestMount.start(t.dir, t.mnt);
  });
  after(async () => {
    await m?.stop();
    if (t) fs.rmSync(t.base, { recursive: true, force: true });
  });
  for (const [name, test] of [...Object.entries(posixSuite), ...Object.entries(arborOnlySuite)]) {
    it(name, async () => {
      const d = path.join(t!.mnt, name);
      fs.mkdirSync(d);
      await test(d);
    });
  }
});
