#!/usr/bin/env bash
# A throwaway Ceph cluster for the S3 tests: one mon, one memstore OSD and radosgw (beast) on 127.0.0.1:7480,
# auth none, all state under $ARBOR_RGW_DIR (default /tmp/arbor-rgw). Real engine, not a fake: it enforces If-None-Match.
#   rgw.sh start    create (or reuse) the cluster, a user and the bucket; append its settings to $ARBOR_SERVERS_ENV
#   rgw.sh stop     kill exactly the pids it started (pidfiles) and remove the state
#   rgw.sh status   exit 0 when S3 answers
# Tests that kill a gateway on purpose start their own extra radosgw on another port from $ARBOR_TEST_CEPH_CONF
# (see src/remote/fault.test.ts), so the shared gateway keeps serving the other test files.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
D="${ARBOR_RGW_DIR:-/tmp/arbor-rgw}"
CONF="$D/ceph.conf"
PORT="${ARBOR_RGW_PORT:-7480}"
MON_PORT="${ARBOR_RGW_MON_PORT:-6789}"
ACCESS_KEY="arbor-test-access"
SECRET_KEY="arbor-test-secret-0123456789"
BUCKET="arbor-test"
ENDPOINT="http://127.0.0.1:$PORT"
PIDS=(mon.a osd.0 client.rgw)

log() { echo "rgw.sh: $*" >&2; }

pid_of() { # pid of a daemon if its pidfile names a live process
  local f="$D/run/$1.pid"
  [ -f "$f" ] || return 1
  local p
  p="$(tr -dc 0-9 <"$f")"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

s3_answers() {
  # Any HTTP answer from the gateway (an anonymous ListBuckets gets 200 with an empty list) means it is up.
  node -e "fetch('$ENDPOINT/').then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))" 2>/dev/null
}

wait_for() { # wait_for <seconds> <description> <command...>
  local secs="$1" what="$2"
  shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "timed out after ${secs}s waiting for $what (logs in $D/log)"
  return 1
}

write_env() {
  [ -n "${ARBOR_SERVERS_ENV:-}" ] || return 0
  local pids=()
  local n
  for n in "${PIDS[@]}"; do pids+=("$(pid_of "$n" || true)"); done
  {
    echo "ARBOR_TEST_S3_URL='s3://$BUCKET/prefix?endpoint=$ENDPOINT&region=us-east-1'"
    echo "AWS_ACCESS_KEY_ID='$ACCESS_KEY'"
    echo "AWS_SECRET_ACCESS_KEY='$SECRET_KEY'"
    echo "ARBOR_TEST_RGW_PIDS='${pids[*]}'"
    echo "ARBOR_TEST_RGW_PID='$(pid_of client.rgw || true)'"
    echo "ARBOR_TEST_CEPH_CONF='$CONF'"
    echo "ARBOR_TEST_RGW_BUCKET='$BUCKET'"
  } >>"$ARBOR_SERVERS_ENV"
}

ceph_cmd() { timeout 30 ceph -c "$CONF" "$@"; }

create_cluster() {
  rm -rf "$D"
  mkdir -p "$D/run" "$D/log" "$D/mon.a" "$D/osd.0" "$D/rgw"
  local fsid
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = 127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
ms bind ipv4 = true
client mount timeout = 30
public addr = 127.0.0.1
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
mon data = $D/mon.\$id
osd data = $D/osd.\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd max object name len = 460
osd max object namespace len = 64
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
[client]
rgw data = $D/rgw
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw enable usage log = false
EOF
  ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --add a "127.0.0.1:$MON_PORT" --fsid "$fsid" "$D/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
  ceph-mon -c "$CONF" -i a
  wait_for 30 "ceph-mon" ceph_cmd -s
  local id osd_uuid
  osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  id="$(ceph_cmd osd create "$osd_uuid")"
  [ "$id" = 0 ] || { log "expected osd id 0, got $id"; return 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
  ceph_cmd osd crush add-bucket arbor-host host >/dev/null 2>&1
  ceph_cmd osd crush move arbor-host root=default >/dev/null 2>&1
  ceph_cmd osd crush add osd.0 1.0 host=arbor-host >/dev/null 2>&1
  # ceph-osd forks and its parent waits for the daemon to boot; bound that wait so a bad start fails, never hangs.
  timeout 45 ceph-osd -c "$CONF" -i 0 2>/dev/null || log "ceph-osd did not report ready in 45 s"
  wait_for 30 "osd.0 up" bash -c "timeout 10 ceph -c '$CONF' osd stat | grep -q '1 up'"
}

start_rgw() {
  timeout 90 radosgw -c "$CONF" -n client.rgw || log "radosgw did not report ready in 90 s"
  wait_for 60 "radosgw on $ENDPOINT" s3_answers
}

make_user_and_bucket() {
  if ! timeout 30 radosgw-admin -c "$CONF" user info --uid arbor >/dev/null 2>&1; then
    timeout 30 radosgw-admin -c "$CONF" user create --uid arbor --display-name arbor \
      --access-key "$ACCESS_KEY" --secret "$SECRET_KEY" >/dev/null
  fi
  (cd "$ROOT" && NODE_NO_WARNINGS=1 AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" node --input-type=module -e "
    import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
    const s3 = new S3Client({ endpoint: '$ENDPOINT', region: 'us-east-1', forcePathStyle: true });
    try { await s3.send(new CreateBucketCommand({ Bucket: '$BUCKET' })); }
    catch (e) { if (!['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes(e.name)) throw e; }
  ")
}

start() {
  if pid_of client.rgw >/dev/null && pid_of osd.0 >/dev/null && pid_of mon.a >/dev/null && s3_answers; then
    log "reusing the running cluster in $D"
  else
    # An OSD occasionally never finishes booting here (it loops connecting to a blank address); a fresh
    # cluster starts fine, so start from scratch up to three times before giving up.
    local t0=$SECONDS attempt
    for attempt in 1 2 3; do
      stop_daemons
      if create_cluster && start_rgw; then break; fi
      if [ "$attempt" = 3 ]; then
        log "could not start Ceph RGW after 3 attempts"
        stop_daemons
        return 1
      fi
      log "attempt $attempt failed; starting a fresh cluster"
    done
    log "cluster up in $((SECONDS - t0))s ($D)"
  fi
  make_user_and_bucket
  write_env
}

stop_daemons() {
  local n p i
  for n in client.rgw osd.0 mon.a; do
    p="$(pid_of "$n" || true)"
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  done
}

case "${1:-}" in
  start) start ;;
  stop)
    stop_daemons
    rm -rf "$D"
    ;;
  status) s3_answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
