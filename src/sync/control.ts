// A mount's control socket (<dir>/control.sock): other arbor commands ask the process that owns the directory to
// sync or report status instead of opening its state. Line-delimited JSON; knows nothing of what the requests do.
import { existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { ArborError, Errno } from '../errors.js';

export type ControlHandler = (request: string) => Promise<unknown>;

/** Serve `handler` on a unix socket at `path` (a stale socket file is replaced). */
export async function serveControl(
  path: string,
  handler: ControlHandler,
): Promise<{ close(): Promise<void> }> {
  if (existsSync(path)) unlinkSync(path);
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const req = buf.slice(0, nl).trim();
      buf = '';
      handler(req).then(
        (result) => sock.end(JSON.stringify({ ok: true, result }) + '\n'),
        (err: unknown) =>
          sock.end(
            JSON.stringify({
              ok: false,
              error: err instanceof Error ? err.message : String(err),
              // The asking process rebuilds the same typed error (its errno and code decide its message and exit).
              ...(err instanceof ArborError ? { code: err.code, errno: err.errno } : {}),
            }) + '\n',
          ),
      );
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  server.unref();
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        try {
          unlinkSync(path);
        } catch {
          /* gone */
        }
      }),
  };
}

/** Send one request to the mount owning a directory; rejects if nobody answers, throws its error if it failed. */
export function askMount(path: string, request: string, timeoutMs = 600_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('the mount did not answer'));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request + '\n'));
    sock.on('data', (d: string) => (buf += d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(buf) as {
          ok: boolean;
          result?: unknown;
          error?: string;
          code?: string;
          errno?: number;
        };
        if (r.ok) resolve(r.result);
        else
          reject(
            new ArborError(
              typeof r.code === 'string' ? r.code : 'ARBOR_MOUNT_ERROR',
              typeof r.errno === 'number' ? r.errno : Errno.EIO,
              r.error ?? 'the mount reported an error',
            ),
          );
      } catch {
        reject(new Error('the mount sent a malformed reply'));
      }
    });
  });
}
