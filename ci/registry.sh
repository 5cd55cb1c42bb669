#!/bin/bash
# A private image registry on 127.0.0.1, for `docker plugin push` / `docker plugin upgrade`
# in the end-to-end tests (no public registry is reachable here).
#
#   ci/registry.sh start|stop|addr
#
# It runs Debian's docker-registry binary, unpacked from its package with
# `apt-get download` + `dpkg -x` so that installing it starts no system service.
# Docker talks plain HTTP to registries on 127.0.0.0/8 without extra settings.
# State under $CONVOY_REGISTRY_ROOT (default /var/lib/convoy-ci/registry);
# address $CONVOY_REGISTRY_ADDR (default 127.0.0.1:5100).
set -euo pipefail
R=${CONVOY_REGISTRY_ROOT:-/var/lib/convoy-ci/registry}
ADDR=${CONVOY_REGISTRY_ADDR:-127.0.0.1:5100}
BIN=$R/pkg/usr/bin/docker-registry
PID=$R/registry.pid

running() { [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }

fetch() {
  [ -x "$BIN" ] && return 0
  mkdir -p "$R/deb"
  if ! (cd "$R/deb" && apt-get download -q docker-registry >/dev/null 2>&1); then
    apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
    (cd "$R/deb" && apt-get download -q docker-registry >/dev/null)
  fi
  dpkg -x "$R"/deb/docker-registry_*.deb "$R/pkg"
}

start() {
  running && return 0
  fetch
  mkdir -p "$R/data"
  cat > "$R/config.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $R/data}, delete: {enabled: true}}
http: {addr: $ADDR}
YML
  setsid "$BIN" serve "$R/config.yml" >>"$R/registry.log" 2>&1 </dev/null &
  echo $! > "$PID"
  for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  echo "registry did not listen on $ADDR; log:" >&2; tail -n 20 "$R/registry.log" >&2; exit 1
}

stop() {
  running || { rm -f "$PID"; return 0; }
  kill "$(cat "$PID")" || true
  for _ in $(seq 1 40); do running || break; sleep 0.25; done
  rm -f "$PID"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  addr) echo "$ADDR" ;;
  *) echo "usage: $0 start|stop|addr" >&2; exit 2 ;;
esac
