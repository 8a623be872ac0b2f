// Whether a process still runs, for locks and daemons identified by pid.
import { readFileSync, readdirSync } from 'node:fs';

/**
 * True while any thread of `pid` runs. An exited process stays a zombie until its parent reaps it, and a detached
 * daemon's parent is whatever reaper adopted it, which may take seconds; signal 0 still succeeds on a zombie, so the
 * threads' states are read. Every thread counts, not just the first: a killed multi-threaded process shows its first
 * thread as a zombie while the others are still exiting, and its files (a /dev/fuse connection, a database's locks)
 * are closed only when the last one is gone.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tasks.some((tid) => {
    try {
      // The state letter follows the parenthesised command name, which may itself contain ") ".
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      return state !== 'Z' && state !== 'X';
    } catch {
      return false; // gone while we looked
    }
  });
}
