// Runs every compiled test file under dist/ with node's test runner and ends with `N passed, N failed`.
// Files named *.long.test.js run only with ARBOR_LONG=1 (npm run test:long).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

const long = process.env.ARBOR_LONG === '1';
const filter = process.argv.slice(2);

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js') && (long || !name.endsWith('.long.test.js'))) out.push(p);
  }
  return out;
}

let files = findTests('dist').sort();
if (filter.length) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found under dist/ (did the build run?)');
  process.exit(1);
}

const child = spawn(
  process.execPath,
  [
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${process.env.ARBOR_TEST_CONCURRENCY ?? 2}`,
    ...files,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
let tail = '';
child.stdout.on('data', (buf) => {
  process.stdout.write(buf);
  tail = (tail + buf.toString()).slice(-4000);
});
child.on('close', (code) => {
  const num = (label) =>
    Number(/ℹ (?:\w+ )?/.test(tail) ? ((tail.match(new RegExp(`ℹ ${label} (\\d+)`)) ?? [])[1] ?? 0) : 0);
  const passed = num('pass');
  const failed = num('fail') + num('cancelled');
  console.log(`${passed} passed, ${failed} failed, ${num('skipped')} skipped`);
  process.exit(code === 0 && failed === 0 && passed > 0 ? 0 : 1);
});
