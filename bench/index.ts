// The one benchmark entry point: `npm run bench -- <suite> [--json]`. Suites live in bench/<suite>.ts.
import type { BenchSuite, Metric } from './types.js';

const SUITES = ['crdt', 'tree', 'chunks', 'fuse', 'sync', 'remote'] as const;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  const rest = argv.filter((a) => a !== '--json');
  const suite = rest.shift();
  if (!suite || !(SUITES as readonly string[]).includes(suite)) {
    process.stderr.write(`arbor bench: usage: npm run bench -- <${SUITES.join('|')}> [--json]\n`);
    process.exit(2);
  }
  let mod: BenchSuite;
  try {
    mod = (await import(`./${suite}.js`)) as BenchSuite;
  } catch (err) {
    process.stderr.write(`arbor bench: suite '${suite}' is not available: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = (line: string): void => {
    (json ? process.stderr : process.stdout).write(line + '\n');
  };
  const metrics: Record<string, Metric> = await mod.run({ json, args: rest, log });
  for (const [name, m] of Object.entries(metrics)) {
    const extra =
      m.baseline !== undefined ? `  (baseline ${fmt(m.baseline)}, ratio ${fmt(m.ratio ?? NaN)})` : '';
    log(`${name.padEnd(32)} ${fmt(m.value)} ${m.unit}${extra}${m.note ? '  ' + m.note : ''}`);
  }
  if (json) process.stdout.write(JSON.stringify({ suite, metrics }) + '\n');
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toPrecision(4);
}

await main();
