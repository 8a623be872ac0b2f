// processAlive: running processes count, exited ones do not, even while they linger as unreaped zombies.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { processAlive } from './process.js';

it('a running process is alive; an exited one is not, even as an unreaped zombie', async () => {
  assert.equal(processAlive(process.pid), true);
  // The shell's background child exits after 0.2 s; by then its parent has become `sleep`, which never reaps it.
  const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 5'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const zombie = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))),
    );
    let state = '';
    for (let i = 0; i < 250 && state !== 'Z'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const stat = readFileSync(`/proc/${zombie}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    }
    assert.equal(state, 'Z', 'the child is a zombie');
    assert.doesNotThrow(() => process.kill(zombie, 0), 'signal 0 still reaches a zombie');
    assert.equal(processAlive(zombie), false);
    assert.equal(processAlive(parent.pid!), true);
  } finally {
    parent.kill('SIGKILL');
  }
  await new Promise((r) => parent.once('exit', r));
  assert.equal(processAlive(parent.pid!), false);
});
