#!/usr/bin/env bash
# A private OpenSSH server for the SFTP tests: 127.0.0.1, port 2222 (or the next free one), its own host key,
# client key and authorized_keys, internal-sftp, all under $ARBOR_SSHD_DIR (default /tmp/arbor-sshd).
#   sshd.sh start    start (or reuse) it; append its settings to $ARBOR_SERVERS_ENV
#   sshd.sh stop     kill exactly the pid in its pidfile and remove the state
#   sshd.sh status   exit 0 when it accepts connections
# Fault tests start a second sshd from the same config on another port ($ARBOR_TEST_SSHD_CONFIG) and kill that
# one, so this server keeps serving the other test files.
set -euo pipefail

D="${ARBOR_SSHD_DIR:-/tmp/arbor-sshd}"
CFG="$D/sshd_config"
PIDFILE="$D/sshd.pid"
PORTFILE="$D/port"
DATA="$D/data"

log() { echo "sshd.sh: $*" >&2; }

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local p
  p="$(tr -dc 0-9 <"$PIDFILE")"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

accepts() { # the server sends its SSH banner on connect
  local port="$1" line
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  [[ "$line" == SSH-* ]]
}

write_env() {
  [ -n "${ARBOR_SERVERS_ENV:-}" ] || return 0
  {
    echo "ARBOR_TEST_SFTP_URL='sftp://root@127.0.0.1:$(cat "$PORTFILE")$DATA'"
    echo "ARBOR_TEST_SFTP_KEY='$D/client_key'"
    echo "ARBOR_TEST_SFTP_ROOT='$DATA'"
    echo "ARBOR_TEST_SSHD_PIDFILE='$PIDFILE'"
    echo "ARBOR_TEST_SSHD_CONFIG='$CFG'"
    # The host key is regenerated with every fresh server: record it in a file that lives and dies with it, never
    # in the user's default (~/.config/arbor/known_hosts), and let sftp:// URLs without ?key= find the client key.
    echo "ARBOR_KNOWN_HOSTS='$D/known_hosts'"
    echo "ARBOR_SSH_KEY='$D/client_key'"
  } >>"$ARBOR_SERVERS_ENV"
}

start() {
  if running_pid >/dev/null && accepts "$(cat "$PORTFILE")"; then
    log "reusing sshd (pid $(running_pid)) on port $(cat "$PORTFILE")"
    write_env
    return 0
  fi
  stop_server
  rm -rf "$D"
  mkdir -p "$D" "$DATA" /run/sshd
  chmod 700 "$D"
  ssh-keygen -q -t ed25519 -N '' -C arbor-test-host -f "$D/host_key"
  ssh-keygen -q -t ed25519 -N '' -C arbor-test-client -f "$D/client_key"
  cp "$D/client_key.pub" "$D/authorized_keys"
  local port="${ARBOR_SSHD_PORT:-2222}"
  while ! port_free "$port"; do port=$((port + 1)); done
  echo "$port" >"$PORTFILE"
  cat >"$CFG" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $D/host_key
PidFile $PIDFILE
AuthorizedKeysFile $D/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -f "$CFG" -E "$D/sshd.log"
  local i
  for ((i = 0; i < 40; i++)); do
    if running_pid >/dev/null && accepts "$port"; then
      log "sshd (pid $(running_pid)) on 127.0.0.1:$port, data in $DATA"
      write_env
      return 0
    fi
    sleep 0.25
  done
  log "sshd did not come up; see $D/sshd.log"
  return 1
}

stop_server() {
  local p i
  p="$(running_pid || true)"
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$p" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop)
    stop_server
    rm -rf "$D"
    ;;
  status) accepts "$(cat "$PORTFILE" 2>/dev/null || echo 0)" ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
