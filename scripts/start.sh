#!/usr/bin/env bash
# The main job (README quick start): install, build, and run arbor on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
node dist/src/cli/main.js demo crdt
