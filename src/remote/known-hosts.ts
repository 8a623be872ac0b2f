// Trust-on-first-use host keys for the SFTP backend: an OpenSSH-style known_hosts file arbor owns; no networking.
import { mkdirSync, readFileSync, appendFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Where host keys are recorded when the caller gives no file: $ARBOR_KNOWN_HOSTS, else
 * ~/.config/arbor/known_hosts (arbor never writes to ~/.ssh/known_hosts).
 */
export function defaultKnownHostsPath(): string {
  return process.env.ARBOR_KNOWN_HOSTS || join(homedir(), '.config', 'arbor', 'known_hosts');
}

/** The name a host is recorded under, as OpenSSH writes it: `host` on port 22, else `[host]:port`. */
export function hostPattern(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type inside an SSH public key blob (its first length-prefixed string), e.g. 'ssh-ed25519'. */
export function keyType(blob: Uint8Array): string {
  if (blob.length < 4) return 'unknown';
  const len = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(0);
  return len > 0 && len < 64 && blob.length >= 4 + len
    ? Buffer.from(blob.subarray(4, 4 + len)).toString('latin1')
    : 'unknown';
}

export type HostKeyVerdict = 'known' | 'added' | 'mismatch';

/**
 * Checks `blob` against the keys recorded for `host:port` in `file`. No record → the key is appended
 * (trust on first use) and 'added' is returned; a recorded key that differs → 'mismatch' (the file is not changed).
 */
export function verifyHostKey(file: string, host: string, port: number, blob: Uint8Array): HostKeyVerdict {
  const pattern = hostPattern(host, port);
  const b64 = Buffer.from(blob).toString('base64');
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let recorded = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [hosts, , key] = line.split(/\s+/);
    if (!hosts || !key || !hosts.split(',').includes(pattern)) continue;
    if (key === b64) return 'known';
    recorded = true;
  }
  if (recorded) return 'mismatch';
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, `${pattern} ${keyType(blob)} ${b64}\n`, { mode: 0o600 });
  return 'added';
}
