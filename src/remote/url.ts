// Parses remote URLs (DESIGN.md §5) into typed locations and renders them back without secrets; no I/O.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../errors.js';

export interface DirLocation {
  readonly kind: 'dir';
  /** Absolute directory path. */
  readonly path: string;
}

export interface SftpLocation {
  readonly kind: 'sftp';
  readonly user: string | undefined;
  readonly host: string;
  readonly port: number;
  /** Absolute path on the server (sftp://host/srv/arbor → /srv/arbor). */
  readonly path: string;
  /** Private key file from `?key=`. */
  readonly keyPath: string | undefined;
  /** Known-hosts file from `?known_hosts=`. */
  readonly knownHostsPath: string | undefined;
}

export interface S3Location {
  readonly kind: 's3';
  readonly bucket: string;
  /** Key prefix without leading or trailing '/', possibly ''. */
  readonly prefix: string;
  /** Custom endpoint (http(s)://host[:port]); path-style addressing is used with it. */
  readonly endpoint: string | undefined;
  readonly region: string | undefined;
}

export type RemoteLocation = DirLocation | SftpLocation | S3Location;

function bad(url: string, why: string): InvalidInputError {
  // Never echo the raw URL: it could carry a password. The redacted form is enough to find the typo.
  return new InvalidInputError(`invalid remote URL ${redact(url)}: ${why}`, 'ARBOR_INVALID_REMOTE_URL');
}

/** The URL with every `user:password@` (also inside query values such as endpoint=) masked. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^/:@?&#\s]*):[^@/?&#\s]*@/g, '$1:***@');
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_~+=-][A-Za-z0-9._~+=-]*$/;

function checkQuery(url: string, u: URL, allowed: readonly string[]): void {
  for (const name of new Set(u.searchParams.keys())) {
    if (!allowed.includes(name)) {
      const hint = allowed.length ? ` (allowed: ${allowed.join(', ')})` : '';
      throw bad(url, `unknown parameter "${name}"${hint}`);
    }
    if (u.searchParams.getAll(name).length > 1) throw bad(url, `parameter "${name}" given twice`);
  }
}

/** Parses `file:///abs`, a plain path, `sftp://user@host[:port]/path?key=…&known_hosts=…`, `s3://bucket/prefix?endpoint=…&region=…`. */
export function parseRemoteUrl(url: string): RemoteLocation {
  if (typeof url !== 'string' || url.trim() === '') throw bad(String(url), 'empty');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined || (scheme.length === 1 && /^[a-zA-Z]:[\\/]/.test(url))) {
    // A plain path (relative paths resolve against the working directory).
    if (url.includes('\0')) throw bad(url, 'path contains a NUL byte');
    return { kind: 'dir', path: resolve(url) };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad(url, 'not a valid URL');
  }
  switch (scheme) {
    case 'file': {
      if (u.host !== '' && u.host !== 'localhost')
        throw bad(url, 'file URLs must be local (file:///abs/path)');
      checkQuery(url, u, []);
      if (u.hash) throw bad(url, 'unexpected fragment');
      let p: string;
      try {
        p = fileURLToPath(u);
      } catch {
        throw bad(url, 'not a valid file URL');
      }
      if (!isAbsolute(p) || p.includes('\0'))
        throw bad(url, 'file URLs need an absolute path (file:///abs/path)');
      return { kind: 'dir', path: resolve(p) };
    }
    case 'sftp': {
      if (u.password)
        throw bad(url, 'passwords in URLs are not supported; use a key (?key=/path) or ssh-agent');
      if (!u.hostname) throw bad(url, 'missing host (sftp://user@host[:port]/path)');
      if (u.hash) throw bad(url, 'unexpected fragment');
      checkQuery(url, u, ['key', 'known_hosts']);
      const port = u.port ? Number(u.port) : 22;
      let path: string;
      try {
        path = decodeURIComponent(u.pathname);
      } catch {
        throw bad(url, 'badly escaped path');
      }
      if (path === '' || path === '/') throw bad(url, 'missing path (sftp://user@host[:port]/path)');
      // new URL() silently resolves dot segments; refuse them in the raw text instead of guessing intent.
      if (/\/\.\.?(\/|\?|#|$)/.test(url.replace(/^sftp:\/\/[^/]*/i, '')))
        throw bad(url, "path must not contain '.' or '..'");
      if (path.includes('\0')) throw bad(url, 'path contains a NUL byte');
      path = path.replace(/\/+$/, '');
      if (path.split('/').some((s) => s === '..' || s === '.'))
        throw bad(url, "path must not contain '.' or '..'");
      const keyPath = u.searchParams.get('key') ?? undefined;
      if (keyPath !== undefined && !isAbsolute(keyPath)) throw bad(url, 'key must be an absolute path');
      const knownHostsPath = u.searchParams.get('known_hosts') ?? undefined;
      if (knownHostsPath !== undefined && !isAbsolute(knownHostsPath))
        throw bad(url, 'known_hosts must be an absolute path');
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      return {
        kind: 'sftp',
        user: u.username ? decodeURIComponent(u.username) : undefined,
        host,
        port,
        path,
        keyPath,
        knownHostsPath,
      };
    }
    case 's3': {
      if (u.username || u.password)
        throw bad(url, 'credentials do not belong in the URL; use the AWS environment variables or files');
      if (u.port) throw bad(url, 'put the endpoint in ?endpoint=http://host:port, not in the bucket part');
      if (u.hash) throw bad(url, 'unexpected fragment');
      const bucket = u.hostname;
      if (!BUCKET.test(bucket) || bucket.includes('..')) throw bad(url, `invalid bucket name "${bucket}"`);
      checkQuery(url, u, ['endpoint', 'region']);
      const prefix = u.pathname.replace(/^\/+/, '').replace(/\/+$/, '');
      if (prefix !== '' && !prefix.split('/').every((s) => PREFIX_SEGMENT.test(s))) {
        throw bad(url, 'prefix segments use [A-Za-z0-9._~+=-] and do not start with "."');
      }
      const endpoint = u.searchParams.get('endpoint') ?? undefined;
      if (endpoint !== undefined) {
        let e: URL;
        try {
          e = new URL(endpoint);
        } catch {
          throw bad(url, 'endpoint must be a URL like http://host:port');
        }
        if ((e.protocol !== 'http:' && e.protocol !== 'https:') || e.username || e.password) {
          throw bad(url, 'endpoint must be http(s)://host[:port] without credentials');
        }
        if ((e.pathname !== '/' && e.pathname !== '') || e.search || e.hash)
          throw bad(url, 'endpoint must have no path or query');
      }
      const region = u.searchParams.get('region') ?? undefined;
      if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region))
        throw bad(url, `invalid region "${region}"`);
      return { kind: 's3', bucket, prefix, endpoint: endpoint?.replace(/\/$/, ''), region };
    }
    default:
      throw bad(url, `unsupported scheme "${scheme}:" (use a path, file://, sftp:// or s3://)`);
  }
}

/** A query string that keeps ':' and '/' readable (endpoint=http://host:port), escaping only what must be. */
function query(pairs: ReadonlyArray<readonly [string, string | undefined]>): string {
  const parts = pairs
    .filter((p): p is readonly [string, string] => p[1] !== undefined && p[1] !== '')
    .map(([k, v]) => `${k}=${v.replace(/[%&#+=?\s]/g, (c) => encodeURIComponent(c))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** A canonical URL for the location; it never carries secrets (there are none in a parsed location). */
export function formatRemoteUrl(loc: RemoteLocation): string {
  switch (loc.kind) {
    case 'dir':
      return `file://${encodeURI(loc.path)}`;
    case 'sftp': {
      const user = loc.user ? `${encodeURIComponent(loc.user)}@` : '';
      const host = loc.host.includes(':') ? `[${loc.host}]` : loc.host;
      const port = loc.port === 22 ? '' : `:${loc.port}`;
      const qs = query([
        ['key', loc.keyPath],
        ['known_hosts', loc.knownHostsPath],
      ]);
      return `sftp://${user}${host}${port}${encodeURI(loc.path)}${qs}`;
    }
    case 's3': {
      const qs = query([
        ['endpoint', loc.endpoint],
        ['region', loc.region],
      ]);
      return `s3://${loc.bucket}/${loc.prefix}${qs}`;
    }
  }
}
