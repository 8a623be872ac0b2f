#!/usr/bin/env bash
# Installs the Debian packages arbor's tests and benchmarks use (or only those named as arguments), only those missing.
set -euo pipefail
pkgs=(fuse3 libfuse3-dev pkg-config gcc openssh-server fio stress-ng attr sqlite3 git ceph-mon ceph-osd radosgw ceph-common)
[ $# -gt 0 ] && pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "arbor: missing system packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
