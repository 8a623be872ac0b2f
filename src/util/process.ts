// Whether a process still runs, for locks and daemons identified by pid.
import { readFileSync } from 'node:fs';

/**
 * True while `pid` runs. An exited process stays a zombie until its parent reaps it, and a detached daemon's parent
 * is whatever reaper adopted it, which may take seconds; signal 0 still succeeds on a zombie, so its state is read.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // The state letter follows the parenthesised command name, which may itself contain ") ".
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const end = stat.lastIndexOf(')');
    return stat.slice(end + 2, end + 3) !== 'Z';
  } catch {
    return false;
  }
}
