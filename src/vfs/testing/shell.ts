// Test helpers: run shell scripts without blocking the event loop (the mount may be served by a child process that
// needs nothing from us, but a blocking spawnSync would still stall timers). Test-only; knows nothing of arbor.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a bash script; never rejects. */
export function sh(
  script: string,
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<ShResult> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['-c', script],
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        maxBuffer: 256 << 20,
        timeout: opts.timeoutMs ?? 120_000,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Run a bash script that must succeed; returns its stdout. */
export async function ok(
  script: string,
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = await sh(script, opts);
  assert.equal(r.code, 0, `script failed (${r.code}): ${script}\n${r.stderr}`);
  return r.stdout;
}
