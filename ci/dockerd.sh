#!/bin/bash
# Start, stop or describe a private Docker engine for the plugin's tests.
#
#   ci/dockerd.sh start    start it (no-op when it already runs), wait until it answers
#   ci/dockerd.sh stop     stop it (SIGTERM, then SIGKILL after 60 s)
#   ci/dockerd.sh restart  stop + start (the data-root, plugins and volumes survive)
#   ci/dockerd.sh env      print DOCKER_HOST=... for `eval`
#
# Everything lives under $CONVOY_CI_ROOT (default /var/lib/convoy-ci): data-root,
# exec-root, socket, pidfile and log. Note that a managed plugin's propagated
# mount lives under the data-root (<data-root>/plugins/<id>/propagated-mount).
set -euo pipefail
R=${CONVOY_CI_ROOT:-/var/lib/convoy-ci}
SOCK=$R/docker.sock
PID=$R/docker.pid
LOG=$R/dockerd.log
export DOCKER_HOST=unix://$SOCK

running() { [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }

start() {
  mkdir -p "$R/data" "$R/exec"
  if running; then return 0; fi
  command -v dockerd >/dev/null || { echo "dockerd not found: run ci/install-deps.sh" >&2; exit 1; }
  # setsid: the engine must not die with the shell or pytest process that started it.
  setsid dockerd --data-root "$R/data" --exec-root "$R/exec" -H "unix://$SOCK" \
    --pidfile "$PID" ${CONVOY_CI_DOCKERD_ARGS:-} >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if docker version >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "dockerd did not come up within 60 s; last log lines:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
}

stop() {
  running || { rm -f "$PID"; return 0; }
  local p; p=$(cat "$PID")
  kill -TERM "$p"
  for _ in $(seq 1 120); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$p" 2>/dev/null; then
    echo "dockerd did not stop within 60 s; killing it" >&2
    kill -KILL "$p" || true
    sleep 1
  fi
  rm -f "$PID"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  env) echo "DOCKER_HOST=$DOCKER_HOST" ;;
  *) echo "usage: $0 start|stop|restart|env" >&2; exit 2 ;;
esac
