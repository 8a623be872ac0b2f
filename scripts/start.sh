#!/usr/bin/env bash
# The main job (README quick start): install, build, make a demo arbor on a local-directory remote, mount it, write
# and list a file through the mount, and say how to unmount. Safe to run again (reuses the demo and its mount).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh fuse3
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
ARBOR="node $PWD/dist/src/cli/main.js"
DEMO="${ARBOR_DEMO_DIR:-/tmp/arbor-demo}"
REMOTE="$DEMO/remote"   # the embedded default backend: a plain directory (stands in for sftp:// or s3://)
DIR="$DEMO/replica"     # config.json, key, state.sqlite3, cache/
MNT="$DEMO/mnt"
mkdir -p "$DEMO" "$MNT"
if [ ! -f "$DIR/config.json" ]; then
  $ARBOR init "$DIR" "$REMOTE" 1024
fi
if ! mountpoint -q "$MNT"; then
  $ARBOR mount "$DIR" "$MNT"
fi
echo "hello from arbor, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$MNT/hello.txt"
ls -l "$MNT"
cat "$MNT/hello.txt"
$ARBOR status "$DIR"
echo
echo "arbor is mounted at $MNT (state in $DIR, remote $REMOTE)."
echo "another replica:  $ARBOR clone /tmp/arbor-demo2 $REMOTE 1024 --key-file $DIR/key"
echo "unmount with:     $ARBOR unmount $MNT"
