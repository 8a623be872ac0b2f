// Builds the optional native addons with node-gyp. Never fails the install: each addon has a fallback.
//   native/fdpass.node (native/build/Release): the SCM_RIGHTS receiver; without it only non-root mounts are lost.
//   native/fuseio (native/fuseio/build/Release/fuseio.node): poll-driven /dev/fuse reads on the main thread; without it
//   the FUSE device reads through the libuv threadpool (slower per request, needs a bigger pool).
//   native/accel (native/accel/build/Release/accel.node): AES-256-GCM and the gear scan for the chunk pipeline;
//   without it the byte-identical JavaScript paths run (about half the speed).
// Each is built separately, so one failing (e.g. missing OpenSSL headers) does not lose the other.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// npm exports the path of its bundled node-gyp to lifecycle scripts; fall back to the usual places.
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
].filter((p) => p && existsSync(p));
const args = ['rebuild', '--loglevel=warn'];
// Headers shipped next to node (distribution packages) avoid a download from nodejs.org.
const prefix = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
const addons = [
  { dir: here, lost: 'non-root FUSE mounts unavailable' },
  { dir: path.join(here, 'fuseio'), lost: 'FUSE requests are read through the libuv threadpool' },
  { dir: path.join(here, 'accel'), lost: 'the chunk pipeline uses its slower JavaScript paths' },
];
if (candidates.length === 0) {
  process.stderr.write(`native/build.mjs: node-gyp not found; ${addons.map((a) => a.lost).join('; ')}\n`);
  process.exit(0);
}
for (const a of addons) {
  const r = spawnSync(process.execPath, [candidates[0], ...args], {
    cwd: a.dir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) process.stderr.write(`native/build.mjs: build in ${a.dir} failed; ${a.lost}\n`);
}
process.exit(0);
