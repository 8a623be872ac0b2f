// Table test of remote URL parsing (DESIGN.md §5): good URLs parse to the expected location, bad ones fail clearly.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { InvalidInputError } from '../errors.js';
import { openRemote } from './index.js';
import { formatRemoteUrl, parseRemoteUrl, type RemoteLocation } from './url.js';

const good: Array<[string, RemoteLocation]> = [
  ['/srv/arbor', { kind: 'dir', path: '/srv/arbor' }],
  ['/srv/arbor/', { kind: 'dir', path: '/srv/arbor' }],
  ['file:///srv/arbor', { kind: 'dir', path: '/srv/arbor' }],
  ['file://localhost/srv/a%20b', { kind: 'dir', path: '/srv/a b' }],
  [
    'sftp://alice@example.org/srv/arbor',
    {
      kind: 'sftp',
      user: 'alice',
      host: 'example.org',
      port: 22,
      path: '/srv/arbor',
      keyPath: undefined,
      knownHostsPath: undefined,
    },
  ],
  [
    'sftp://root@127.0.0.1:2222/tmp/x/?key=/root/.ssh/k&known_hosts=/etc/arbor/kh',
    {
      kind: 'sftp',
      user: 'root',
      host: '127.0.0.1',
      port: 2222,
      path: '/tmp/x',
      keyPath: '/root/.ssh/k',
      knownHostsPath: '/etc/arbor/kh',
    },
  ],
  [
    'sftp://host/data',
    {
      kind: 'sftp',
      user: undefined,
      host: 'host',
      port: 22,
      path: '/data',
      keyPath: undefined,
      knownHostsPath: undefined,
    },
  ],
  [
    'sftp://bob@[::1]:2200/d',
    {
      kind: 'sftp',
      user: 'bob',
      host: '::1',
      port: 2200,
      path: '/d',
      keyPath: undefined,
      knownHostsPath: undefined,
    },
  ],
  [
    's3://arbor-test/prefix?endpoint=http://127.0.0.1:7480&region=us-east-1',
    {
      kind: 's3',
      bucket: 'arbor-test',
      prefix: 'prefix',
      endpoint: 'http://127.0.0.1:7480',
      region: 'us-east-1',
    },
  ],
  ['s3://my.bucket', { kind: 's3', bucket: 'my.bucket', prefix: '', endpoint: undefined, region: undefined }],
  ['s3://bkt/a/b/c/', { kind: 's3', bucket: 'bkt', prefix: 'a/b/c', endpoint: undefined, region: undefined }],
  [
    's3://bkt/p?endpoint=https://s3.example.com/',
    { kind: 's3', bucket: 'bkt', prefix: 'p', endpoint: 'https://s3.example.com', region: undefined },
  ],
];

const bad: Array<[string, RegExp]> = [
  ['', /empty/],
  ['ftp://host/x', /unsupported scheme "ftp:"/],
  ['http://host/x', /unsupported scheme/],
  ['file://otherhost/x', /must be local/],
  ['file:///x?foo=1', /unknown parameter "foo"/],
  ['sftp://alice:hunter2@host/x', /passwords in URLs are not supported/],
  ['sftp:///x', /missing host/],
  ['sftp://host', /missing path/],
  ['sftp://host/', /missing path/],
  ['sftp://host/a/../b', /'\.' or '\.\.'/],
  ['sftp://host/x?key=relative/k', /key must be an absolute path/],
  ['sftp://host/x?password=p', /unknown parameter "password"/],
  ['sftp://host/x?key=/a&key=/b', /given twice/],
  ['sftp://host:99999/x', /not a valid URL/],
  ['s3://AKIA:secret@bkt/p', /credentials do not belong in the URL/],
  ['s3://Bad_Bucket/p', /invalid bucket name/],
  ['s3://b/p', /invalid bucket name/],
  ['s3://bkt/p?endpoint=ftp://x', /endpoint must be http/],
  ['s3://bkt/p?endpoint=nonsense', /endpoint must be a URL/],
  ['s3://bkt/p?endpoint=http://u:pw@h:1', /without credentials/],
  ['s3://bkt/p?endpoint=http://h:1/path', /no path or query/],
  ['s3://bkt/p?region=US EAST', /invalid region/],
  ['s3://bkt/p?accessKey=x', /unknown parameter "accessKey"/],
  ['s3://bkt/.hidden/p', /prefix segments/],
  ['s3://bkt:9000/p', /endpoint in \?endpoint=/],
];

describe('remote URL parsing', () => {
  for (const [url, want] of good) {
    it(`parses ${url}`, () => {
      assert.deepEqual(parseRemoteUrl(url), want);
      // The canonical form parses back to the same location.
      assert.deepEqual(parseRemoteUrl(formatRemoteUrl(want)), want);
    });
  }
  for (const [url, why] of bad) {
    it(`rejects ${JSON.stringify(url)}`, () => {
      assert.throws(
        () => parseRemoteUrl(url),
        (err: unknown) => {
          assert.ok(err instanceof InvalidInputError, `not an InvalidInputError: ${String(err)}`);
          assert.match(err.message, why);
          assert.equal(err.code, 'ARBOR_INVALID_REMOTE_URL');
          // One clear line, and secrets from the URL never appear in it.
          assert.doesNotMatch(err.message, /\n|hunter2|secret|pw@/);
          return true;
        },
      );
    });
  }
  it('relative plain paths resolve against the working directory', () => {
    assert.deepEqual(parseRemoteUrl('rel/dir'), { kind: 'dir', path: `${process.cwd()}/rel/dir` });
  });
  it('openRemote rejects a bad URL with InvalidInputError and its url never carries secrets', async () => {
    await assert.rejects(
      openRemote('sftp://u:topsecret@h/x'),
      (e: unknown) => e instanceof InvalidInputError && !/topsecret/.test(e.message),
    );
    const r = await openRemote('s3://bkt/p?endpoint=http://127.0.0.1:7480&region=us-east-1');
    assert.equal(r.url, 's3://bkt/p?endpoint=http://127.0.0.1:7480&region=us-east-1');
    await r.close();
  });
  it('format → parse is the identity on valid locations (property)', () => {
    const seg = fc.stringMatching(/^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}$/);
    const absPath = fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`);
    const loc: fc.Arbitrary<RemoteLocation> = fc.oneof(
      absPath.map((path) => ({ kind: 'dir' as const, path })),
      fc
        .record({
          user: fc.option(fc.stringMatching(/^[a-z_][a-z0-9_-]{0,8}$/), { nil: undefined }),
          host: fc.oneof(fc.domain(), fc.ipV4()),
          port: fc.integer({ min: 1, max: 65535 }),
          path: absPath,
          keyPath: fc.option(absPath, { nil: undefined }),
          knownHostsPath: fc.option(absPath, { nil: undefined }),
        })
        .map((r) => ({ kind: 'sftp' as const, ...r })),
      fc
        .record({
          bucket: fc.stringMatching(/^[a-z0-9][a-z0-9-]{1,20}[a-z0-9]$/),
          prefix: fc.array(seg, { maxLength: 3 }).map((s) => s.join('/')),
          endpoint: fc.option(
            fc.integer({ min: 1, max: 65535 }).map((p) => `http://127.0.0.1:${p}`),
            { nil: undefined },
          ),
          region: fc.option(fc.constantFrom('us-east-1', 'eu-west-3', 'default'), { nil: undefined }),
        })
        .map((r) => ({ kind: 's3' as const, ...r })),
    );
    fc.assert(
      fc.property(loc, (l) => {
        assert.deepEqual(parseRemoteUrl(formatRemoteUrl(l)), l);
      }),
      { numRuns: 300 },
    );
  });
});
