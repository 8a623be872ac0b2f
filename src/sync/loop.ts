// The background sync loop of a mounted replica: sync every interval and soon after local changes, jittered backoff
// while the remote is unreachable, changes reported for kernel cache invalidation, a control socket for other
// commands. Knows nothing of FUSE (the mount passes onChanges).
import type { TreeChange } from '../tree/types.js';
import { serveControl } from './control.js';
import { truncateStable } from './gc.js';
import { Replicator, type ReplicatorOptions, type SyncContext, type SyncReport } from './replicator.js';

export interface SyncLoopOptions extends ReplicatorOptions {
  /** Called with what each pull changed (non-empty only), after the tree applied it. */
  onChanges?: (change: TreeChange) => void;
  /** Sync interval while replication is active (something moved within `activeWindowMs`). Default 1000 ms. */
  intervalMs?: number;
  /** Sync interval when idle. Default 10 000 ms (each cycle lists the remote's batches). */
  idleIntervalMs?: number;
  /** How long after the last push or pull the loop stays on the short interval. Default 60 s. */
  activeWindowMs?: number;
  /** Delay between a local change and the push it triggers (coalesces a close's ops). Default 100 ms. */
  pushDelayMs?: number;
  /**
   * During a burst (local changes kept arriving while a cycle ran), the least time between the starts of two cycles,
   * so 10k creates are published in a few batches rather than one per cycle. A change after a quiet spell still waits
   * only pushDelayMs. Default 500 ms.
   */
  pushGapMs?: number;
  /** Backoff while the remote is unreachable: first delay and cap. Default 1 s .. 60 s, jittered. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /**
   * Truncate the CRDT log and empty trash (gc.ts truncateStable, no chunk sweep) after a successful sync at most this
   * often. Default 10 min; 0 = never (then only `arbor gc` does it).
   */
  truncateEveryMs?: number;
  /** Serve the control socket here (e.g. <dir>/control.sock) so `arbor sync/status <dir>` reach this process. */
  socketPath?: string;
  /** Requests the loop does not know itself (`sync`, `status`) go here; undefined = unknown request. */
  onRequest?: (request: string) => Promise<unknown>;
  /** One line per state change (unreachable, reachable again); default silent. */
  log?: (line: string) => void;
}

export interface SyncLoopStatus {
  readonly running: boolean;
  readonly reachable: boolean | undefined;
  readonly lastSync: number | undefined;
  readonly lastError: string | undefined;
  readonly failures: number;
  readonly pending: { localBatches: number; chunks: number };
}

export interface SyncLoop {
  readonly replicator: Replicator;
  /** Sync now (waits for a running cycle first). Rejects when the remote is unreachable. */
  syncNow(opts?: { checkpoint?: boolean }): Promise<SyncReport>;
  status(): SyncLoopStatus;
  /** Stop the loop (a running cycle finishes first) and the control socket. */
  stop(): Promise<void>;
}

export async function startSyncLoop(ctx: SyncContext, opts: SyncLoopOptions = {}): Promise<SyncLoop> {
  const replicator = new Replicator(ctx, opts);
  const envInterval = Number(process.env.ARBOR_SYNC_INTERVAL_MS) || undefined;
  const interval = opts.intervalMs ?? envInterval ?? 1000;
  const idleInterval = Math.max(interval, opts.idleIntervalMs ?? envInterval ?? 10_000);
  const activeWindow = opts.activeWindowMs ?? 60_000;
  let lastActivity = 0;
  const pushDelay = opts.pushDelayMs ?? 100;
  const pushGap = opts.pushGapMs ?? 500;
  /** When the last cycle started. */
  let lastStart = 0;
  /** A cycle is running: changes (and ticks) meanwhile only set `again`; at most one in flight, none queued. */
  let inFlight = false;
  let again = false;
  /** While a burst goes on, the next change-triggered cycle starts no sooner than this (lastStart + pushGap). */
  let notBefore = 0;
  const base = opts.backoffBaseMs ?? 1000;
  const cap = opts.backoffMaxMs ?? 60_000;
  let running = true;
  let timer: NodeJS.Timeout | undefined;
  let dueAt = 0;
  let failures = 0;
  let reachable: boolean | undefined;
  let lastSync: number | undefined;
  let lastError: string | undefined;
  let cycle: Promise<void> = Promise.resolve();
  const truncateEvery = opts.truncateEveryMs ?? 600_000;
  let lastTruncate = Date.now();

  /** Occasional truncation, inside the sync chain (no pull applies meanwhile). Failures only postpone it. */
  const maybeTruncate = async (): Promise<void> => {
    if (ctx.readOnly || truncateEvery <= 0 || Date.now() - lastTruncate < truncateEvery) return;
    lastTruncate = Date.now();
    try {
      const { truncation } = await truncateStable(replicator);
      if (truncation !== undefined && truncation.logAfter < truncation.logBefore) {
        opts.log?.(
          `log truncated ${truncation.logBefore} -> ${truncation.logAfter} rows; ` +
            `${truncation.purgedNodes} trash entries and ${truncation.purgedInodes} files emptied`,
        );
      }
    } catch (err) {
      opts.log?.(`log truncation skipped: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  /**
   * `flushUploads`: an explicit sync (`arbor sync` through the mount) waits for every dirty chunk, so that nothing is
   * pending after it. The background cycles do not: their pushes wait only for the chunks their ops name
   * (Replicator.pushNow); waiting for every dirty chunk forced uploads to run alongside a writer still streaming a
   * file (uploads yield to streaming writers, src/chunks/store.ts) and stalled other files' pushes behind a big one.
   */
  const runOnce = async (checkpoint: boolean, flushUploads: boolean): Promise<SyncReport> => {
    const report = await replicator.sync({ checkpoint, flushUploads });
    if (report.pushedBatches + report.pulledBatches > 0) lastActivity = Date.now();
    if (report.change.nodes.length > 0 || report.change.dirs.length > 0) opts.onChanges?.(report.change);
    return report;
  };

  const schedule = (ms: number): void => {
    if (!running) return;
    const at = Date.now() + ms;
    if (timer !== undefined && dueAt <= at) return; // an earlier wake-up is already set
    if (timer !== undefined) clearTimeout(timer);
    dueAt = at;
    timer = setTimeout(tick, ms);
    timer.unref();
  };

  /** When a change-triggered push may start: pushDelay from now, but not before `notBefore` during a burst. */
  const pushWait = (): number => Math.max(pushDelay, notBefore - Date.now());

  const tick = (): void => {
    timer = undefined;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    cycle = cycle.then(async () => {
      lastStart = Date.now();
      if (!running) {
        inFlight = false;
        return;
      }
      try {
        await runOnce(false, false);
        await maybeTruncate();
        if (reachable === false) opts.log?.('remote reachable again; caught up');
        reachable = true;
        failures = 0;
        lastSync = Date.now();
        lastError = undefined;
        schedule(Date.now() - lastActivity < activeWindow ? interval : idleInterval);
      } catch (err) {
        failures++;
        lastError = err instanceof Error ? err.message : String(err);
        if (reachable !== false) opts.log?.(`sync failed, working offline and retrying: ${lastError}`);
        reachable = false;
        const delay = Math.min(cap, base * 2 ** Math.min(failures - 1, 20));
        schedule(Math.round(delay * (0.5 + Math.random() / 2)));
      } finally {
        inFlight = false;
        // Changes arrived during the cycle: a burst. One more cycle, pushGap after this one started (while the remote
        // is down, the backoff scheduled above decides).
        if (again) {
          again = false;
          notBefore = lastStart + pushGap;
          if (failures === 0) schedule(pushWait());
        }
      }
    });
  };

  const unlisten = ctx.readOnly
    ? () => undefined
    : ctx.tree.onCommit((local) => {
        // Local writes push soon, but never faster than the backoff allows while the remote is down.
        if (!local) return;
        lastActivity = Date.now();
        if (inFlight) again = true;
        else if (failures === 0) schedule(pushWait());
      });

  const control = opts.socketPath
    ? await serveControl(opts.socketPath, async (req) => {
        if (req === 'sync' || req === 'sync-checkpoint') {
          const r = await syncNow({ checkpoint: req === 'sync-checkpoint' });
          return { ...r, change: undefined };
        }
        if (req === 'status') return status();
        const other = await opts.onRequest?.(req);
        if (other === undefined) throw new Error(`unknown request ${req}`);
        return other;
      })
    : undefined;

  const syncNow = (o: { checkpoint?: boolean } = {}): Promise<SyncReport> => {
    const p = cycle.then(() => runOnce(o.checkpoint === true, true));
    cycle = p.then(
      () => {
        reachable = true;
        failures = 0;
        lastSync = Date.now();
      },
      () => undefined,
    );
    return p;
  };

  const status = (): SyncLoopStatus => ({
    running,
    reachable,
    lastSync,
    lastError,
    failures,
    pending: replicator.pending(),
  });

  schedule(0);
  return {
    replicator,
    syncNow,
    status,
    async stop() {
      running = false;
      if (timer !== undefined) clearTimeout(timer);
      unlisten();
      await cycle;
      await control?.close();
    },
  };
}
