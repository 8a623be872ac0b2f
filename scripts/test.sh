#!/usr/bin/env bash
# The one test command (README quick start, .ci/run): installs what is missing, builds, lints,
# starts the real servers (sshd for SFTP, Ceph RGW for S3) on 127.0.0.1, runs every test, stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
npm run lint

mkdir -p .tmp
export ARBOR_SERVERS_ENV="$PWD/.tmp/servers.env"
: >"$ARBOR_SERVERS_ENV"
stop_servers() {
  for s in scripts/servers/*.sh; do bash "$s" stop || true; done
}
trap stop_servers EXIT
for s in scripts/servers/*.sh; do bash "$s" start; done
set -a
# shellcheck disable=SC1090
. "$ARBOR_SERVERS_ENV"
set +a
node scripts/run-tests.mjs "$@"
