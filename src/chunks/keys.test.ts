// Tests for the filesystem secret, passphrase wrapping, key files and arbor.json validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildArborJson,
  generateSecret,
  parseArborJson,
  readKeyFile,
  serializeArborJson,
  unlockWithPassphrase,
  verifySecret,
  writeKeyFile,
} from './keys.js';
import { DEFAULT_CHUNKING } from './chunker.js';
import { InvalidInputError, WrongKeyError } from '../errors.js';

const FAST = { N: 1 << 10, r: 8, p: 1 };

test('passphrase: build → serialize → parse → unlock gives the secret; a wrong passphrase is WrongKeyError', async () => {
  const secret = generateSecret();
  assert.equal(secret.length, 32);
  const j = await buildArborJson({
    secret,
    chunking: DEFAULT_CHUNKING,
    passphrase: 'correct horse',
    scrypt: FAST,
  });
  const text = Buffer.from(serializeArborJson(j)).toString('utf8');
  assert.ok(!text.includes(Buffer.from(secret).toString('base64')), 'secret never stored in the clear');
  assert.ok(!text.includes(Buffer.from(secret).toString('hex')));
  const parsed = parseArborJson(text);
  assert.deepEqual(parsed, j);
  assert.deepEqual(
    new Uint8Array(await unlockWithPassphrase(parsed, 'correct horse')),
    new Uint8Array(secret),
  );
  await assert.rejects(unlockWithPassphrase(parsed, 'wrong horse'), WrongKeyError);
  await assert.rejects(unlockWithPassphrase(parsed, ''), WrongKeyError);
  verifySecret(parsed, secret);
  assert.throws(() => verifySecret(parsed, generateSecret()), WrongKeyError);
});

test('key file mode: 0600 file round trip; arbor.json holds only the check', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'arbor-keys-'));
  try {
    const secret = generateSecret();
    const j = await buildArborJson({ secret, chunking: DEFAULT_CHUNKING });
    assert.deepEqual(j.key, { mode: 'keyfile' });
    const kf = join(dir, 'arbor.key');
    await writeKeyFile(kf, secret);
    assert.equal((await stat(kf)).mode & 0o777, 0o600);
    const back = await readKeyFile(kf);
    assert.deepEqual(new Uint8Array(back), new Uint8Array(secret));
    verifySecret(parseArborJson(serializeArborJson(j)), back);
    await chmod(kf, 0o644);
    await assert.rejects(readKeyFile(kf), InvalidInputError);
    const junk = join(dir, 'junk');
    await writeFile(junk, 'not a key', { mode: 0o600 });
    await assert.rejects(readKeyFile(junk), InvalidInputError);
    await assert.rejects(unlockWithPassphrase(j, 'x'), InvalidInputError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('arbor.json validation rejects malformed or newer documents', async () => {
  const j = await buildArborJson({
    secret: generateSecret(),
    chunking: DEFAULT_CHUNKING,
    passphrase: 'p',
    scrypt: FAST,
  });
  const good = JSON.parse(Buffer.from(serializeArborJson(j)).toString()) as Record<string, unknown>;
  const bad = (patch: (o: Record<string, unknown>) => void): void => {
    const o = structuredClone(good);
    patch(o);
    assert.throws(() => parseArborJson(JSON.stringify(o)), InvalidInputError);
  };
  bad((o) => (o.format = 'other'));
  bad((o) => (o.formatVersion = 3));
  bad((o) => delete o.chunkId);
  bad((o) => (o.chunkId = 'md5'));
  bad((o) => {
    o.formatVersion = 1; // version 1 means HMAC ids: a BLAKE3 filesystem cannot claim it
  });
  bad((o) => (o.formatVersion = 0));
  bad((o) => (o.chunking = { minSize: 1, avgSize: 2, maxSize: 3 }));
  bad((o) => delete o.chunking);
  bad((o) => (o.keyCheck = 'zz'));
  bad((o) => ((o.key as Record<string, unknown>).mode = 'magic'));
  bad((o) => (((o.key as Record<string, unknown>).kdf as Record<string, unknown>).N = 1000));
  bad((o) => (((o.key as Record<string, unknown>).kdf as Record<string, unknown>).N = 1 << 24));
  bad((o) => (((o.key as Record<string, unknown>).kdf as Record<string, unknown>).salt = 'c2hvcnQ='));
  bad((o) => ((o.key as Record<string, unknown>).wrappedSecret = 'AAAA'));
  assert.throws(() => parseArborJson('{'), InvalidInputError);
  assert.throws(() => parseArborJson('[]'), InvalidInputError);
  await assert.rejects(
    buildArborJson({ secret: generateSecret(), chunking: DEFAULT_CHUNKING, passphrase: '' }),
    InvalidInputError,
  );
});

test('chunk id algorithm: new filesystems are BLAKE3 at formatVersion 2; HMAC ones stay formatVersion 1', async () => {
  const secret = generateSecret();
  const b = await buildArborJson({ secret, chunking: DEFAULT_CHUNKING });
  assert.equal(b.chunkId, 'blake3');
  assert.equal(b.formatVersion, 2);
  const bText = Buffer.from(serializeArborJson(b)).toString();
  assert.equal((JSON.parse(bText) as { chunkId: unknown }).chunkId, 'blake3');
  assert.deepEqual(parseArborJson(bText), b);

  const h = await buildArborJson({ secret, chunking: DEFAULT_CHUNKING, chunkId: 'hmac-sha256' });
  assert.equal(h.formatVersion, 1);
  const hText = Buffer.from(serializeArborJson(h)).toString();
  assert.ok(!hText.includes('chunkId'), 'a version 1 document keeps its original shape');
  assert.deepEqual(parseArborJson(hText), h);
  verifySecret(parseArborJson(hText), secret);

  // An arbor.json written before the field existed: version 1, no chunkId → HMAC ids.
  const legacy = JSON.parse(hText) as Record<string, unknown>;
  assert.equal(parseArborJson(JSON.stringify(legacy)).chunkId, 'hmac-sha256');
  assert.equal(parseArborJson(JSON.stringify({ ...legacy, chunkId: 'hmac-sha256' })).chunkId, 'hmac-sha256');
  assert.throws(() => parseArborJson(JSON.stringify({ ...legacy, chunkId: 'blake3' })), InvalidInputError);
  await assert.rejects(
    buildArborJson({ secret, chunking: DEFAULT_CHUNKING, chunkId: 'sha1' as never }),
    InvalidInputError,
  );
});
