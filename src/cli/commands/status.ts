// `arbor status <dir> [--json]`: cache use/limit, dirty bytes, pending uploads, pinned paths, replicas and lag, last
// sync, remote reachability. Reads the state read-only, so it works while a mount owns the directory.
import type { Command } from 'commander';
import { checkReachable, openRemote } from '../../remote/index.js';
import { redact } from '../../remote/url.js';
import { askMount } from '../../sync/control.js';
import { parseSeqKey } from '../../sync/codec.js';
import { formatBytes } from '../size.js';
import { lockOwner, openStateDb, paths, readConfig } from '../workspace.js';
import { out } from './common.js';

export interface StatusReport {
  dir: string;
  replica: string;
  remote: string;
  readOnly: boolean;
  mountedBy: number | null;
  cache: {
    usedBytes: number;
    limitBytes: number;
    chunks: number;
    dirtyBytes: number;
    pendingUploads: number;
  };
  /** Pinned paths (`arbor pin`) as of their last reconcile, and the bytes their chunks need / have locally. */
  pins: {
    paths: Array<{ path: string; files: number; bytes: number }>;
    bytes: number;
    localBytes: number;
  };
  pendingBatches: number;
  lastSync: { time: string; ok: boolean; error?: string } | null;
  reachable: boolean;
  remoteError?: string;
  latencyMs?: number;
  replicas: Array<{ replica: string; published: number; applied: number; behind: number; self: boolean }>;
  loop?: unknown;
}

function one<T>(f: () => T, dflt: T): T {
  try {
    return f();
  } catch {
    return dflt;
  }
}

export async function collectStatus(dir: string): Promise<StatusReport> {
  const config = await readConfig(dir);
  const db = openStateDb(dir, true);
  let report: StatusReport;
  try {
    const q = <T>(sql: string, dflt: T): T =>
      one(() => (db.prepare(sql).get() as T | undefined) ?? dflt, dflt);
    const kv = (k: string): string | undefined =>
      one(
        () =>
          (db.prepare('SELECT value FROM sync_kv WHERE key = ?').get(k) as { value: string } | undefined)
            ?.value,
        undefined,
      );
    const cache = q<{ used: number | null; n: number }>(
      'SELECT sum(stored) AS used, count(*) AS n FROM chunk_cache WHERE resident = 1',
      { used: 0, n: 0 },
    );
    const dirty = q<{ bytes: number | null; n: number }>(
      'SELECT sum(stored) AS bytes, count(*) AS n FROM chunk_cache WHERE uploaded = 0',
      { bytes: 0, n: 0 },
    );
    const pinned = q<{ bytes: number | null; local: number | null }>(
      `SELECT sum(p.size) AS bytes, sum(CASE WHEN c.resident = 1 THEN p.size ELSE 0 END) AS local
         FROM path_pin_chunks p LEFT JOIN chunk_cache c ON c.id = p.id`,
      { bytes: 0, local: 0 },
    );
    const pinnedPaths = one(
      () =>
        db.prepare('SELECT path, files, bytes FROM path_pins ORDER BY path').all() as Array<{
          path: string;
          files: number;
          bytes: number;
        }>,
      [],
    );
    const clock = q<{ value: string }>("SELECT value FROM kv WHERE key = 'clock'", { value: '0 0' }).value;
    const localSeq = Number(clock.split(' ')[1] ?? 0);
    const pushed = JSON.parse(kv('pushed') ?? '{"rseq":0,"local":0}') as { rseq: number; local: number };
    const last = kv('lastSync');
    const lastSync = last ? (JSON.parse(last) as { time: number; ok: boolean; error?: string }) : null;
    const peers = new Map(
      one(
        () => db.prepare('SELECT replica, seq FROM peers').all() as Array<{ replica: string; seq: number }>,
        [],
      ).map((p) => [p.replica, p.seq]),
    );
    const owner = lockOwner(dir);
    report = {
      dir,
      replica: config.replica,
      remote: redact(config.remote),
      readOnly: config.readOnly,
      mountedBy: owner ?? null,
      cache: {
        usedBytes: cache.used ?? 0,
        limitBytes: config.cacheBytes,
        chunks: cache.n,
        dirtyBytes: dirty.bytes ?? 0,
        pendingUploads: dirty.n,
      },
      pins: { paths: pinnedPaths, bytes: pinned.bytes ?? 0, localBytes: pinned.local ?? 0 },
      pendingBatches: config.readOnly ? 0 : Math.max(0, localSeq - pushed.local),
      lastSync: lastSync ? { ...lastSync, time: new Date(lastSync.time).toISOString() } : null,
      reachable: false,
      replicas: [],
    };
    const remote = await openRemote(config.remote);
    try {
      const r = await checkReachable(remote);
      report.reachable = r.reachable;
      if (r.reachable) {
        report.latencyMs = r.latencyMs;
        const published = new Map<string, number>();
        for (const key of await remote.list('ops/')) {
          const k = parseSeqKey('ops', key);
          if (k && k.seq > (published.get(k.replica) ?? 0)) published.set(k.replica, k.seq);
        }
        for (const [replica, pub] of [...published].sort(([a], [b]) => (a < b ? -1 : 1))) {
          const self = replica === config.replica;
          const applied = self ? pushed.rseq : (peers.get(replica) ?? 0);
          report.replicas.push({
            replica,
            published: pub,
            applied,
            behind: Math.max(0, pub - applied),
            self,
          });
        }
      } else {
        report.remoteError = r.error;
      }
    } finally {
      await remote.close();
    }
    if (owner !== undefined)
      report.loop = await askMount(paths(dir).socket, 'status', 5000).catch(() => undefined);
  } finally {
    db.close();
  }
  return report;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'cache use/limit, dirty bytes, pending uploads, pinned paths and bytes, replicas and how far behind each is, last sync, remote reachability',
    )
    .argument('<dir>', 'arbor directory')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, o: { json?: boolean }) => {
      const s = await collectStatus(dir);
      if (o.json) {
        out(JSON.stringify(s, null, 2));
        return;
      }
      out(
        `replica     ${s.replica}${s.readOnly ? ' (read-only)' : ''}${s.mountedBy ? `, mounted by pid ${s.mountedBy}` : ''}`,
      );
      out(
        `remote      ${s.remote} — ${s.reachable ? `reachable (${s.latencyMs} ms)` : `UNREACHABLE: ${s.remoteError}`}`,
      );
      out(
        `cache       ${formatBytes(s.cache.usedBytes)} of ${formatBytes(s.cache.limitBytes)} (${s.cache.chunks} chunks)`,
      );
      out(
        `dirty       ${formatBytes(s.cache.dirtyBytes)}, ${s.cache.pendingUploads} chunk upload(s) pending`,
      );
      const notLocal = s.pins.bytes - s.pins.localBytes;
      out(
        `pinned      ${s.pins.paths.length} path(s), ${formatBytes(s.pins.bytes)}` +
          (s.pins.paths.length === 0
            ? ''
            : notLocal > 0
              ? `, ${formatBytes(notLocal)} NOT local`
              : ', all local'),
      );
      for (const p of s.pins.paths)
        out(`  ${p.path}  ${p.files} file${p.files === 1 ? '' : 's'}, ${formatBytes(p.bytes)}`);
      out(`ops         ${s.pendingBatches} local batch(es) not pushed`);
      out(
        `last sync   ${s.lastSync ? `${s.lastSync.time} ${s.lastSync.ok ? 'ok' : `failed: ${s.lastSync.error}`}` : 'never'}`,
      );
      for (const r of s.replicas) {
        out(
          `  ${r.self ? '*' : ' '} ${r.replica}  published ${r.published}, ${r.self ? 'pushed' : 'applied'} ${r.applied}` +
            (r.behind > 0 ? `, ${r.behind} behind` : ''),
        );
      }
    });
}
