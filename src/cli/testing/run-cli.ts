// Test helper: runs the built `arbor` CLI as a child process, the way a user would, and collects what it printed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The compiled CLI entry point (dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../main.js', import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `arbor ...args`; never rejects: a failure is a non-zero `code` with its stderr. */
export function runCli(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { maxBuffer: 64 << 20, encoding: 'buffer' },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({
          code: typeof code === 'number' ? code : 1,
          stdout: stdout.toString('utf8'),
          stderr: stderr.toString('utf8'),
        });
      },
    );
  });
}

/** Run `arbor ...args` and assert it exited 0 (the message names the command and its stderr). */
export async function runCliOk(...args: string[]): Promise<CliRun> {
  const r = await runCli(...args);
  assert.equal(r.code, 0, `arbor ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r;
}
