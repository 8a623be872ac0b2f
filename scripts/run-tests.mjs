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
// The reporter's closing counts (`ℹ pass N`, …) come before its list of failing tests, which can be long: the
// counts are picked out of each complete line as it streams by, not out of the output's tail.
const counts = {};
let partial = '';
child.stdout.setEncoding('utf8'); // a chunk may end inside a multi-byte character
child.stdout.on('data', (text) => {
  process.stdout.write(text);
  const lines = (partial + text).split('\n');
  partial = lines.pop();
  for (const line of lines) {
    const m = /^ℹ (pass|fail|cancelled|skipped) (\d+)$/.exec(line.trim());
    if (m) counts[m[1]] = Number(m[2]);
  }
});
child.on('close', (code) => {
  const passed = counts.pass ?? 0;
  const failed = (counts.fail ?? 0) + (counts.cancelled ?? 0);
  console.log(`${passed} passed, ${failed} failed, ${counts.skipped ?? 0} skipped`);
  process.exit(code === 0 && failed === 0 && passed > 0 ? 0 : 1);
});
