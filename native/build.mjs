// Builds native/fdpass.node (the SCM_RIGHTS receiver for non-root mounts) with node-gyp.
// Never fails the install: without it only fusermount3 (non-root) mounts are unavailable.
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
if (candidates.length === 0) {
  process.stderr.write('native/build.mjs: node-gyp not found; non-root FUSE mounts unavailable\n');
  process.exit(0);
}
const r = spawnSync(process.execPath, [candidates[0], ...args], {
  cwd: here,
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (r.status !== 0)
  process.stderr.write('native/build.mjs: build failed; non-root FUSE mounts unavailable\n');
process.exit(0);
