#!/usr/bin/env bash
# A minimal supervisor for vmpk-cache: runs it, and when it dies (a vmpk
# fault kills it by SIGSEGV on purpose) starts it again with the same
# arguments. The cache comes back empty: a restart loses the items, never
# another tenant's secrets. systemd's Restart=on-failure does the same
# (examples/tenant-cache/README.md).
#
#   examples/tenant-cache/supervise.sh [vmpk-cache options...]
#
# Environment: VMPK_CACHE_MAX_RESTARTS (default 10; then it gives up with
# status 1), VMPK_CACHE_RESTART_DELAY (seconds, default 1). SIGTERM or SIGINT
# stops the server and the supervisor (status 0).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
max=${VMPK_CACHE_MAX_RESTARTS:-10}
delay=${VMPK_CACHE_RESTART_DELAY:-1}
child=
stop() {
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null && wait "$child"
  exit 0
}
trap stop TERM INT

restarts=0
while :; do
  node "$here/cli.mjs" "$@" &
  child=$!
  wait "$child"
  rc=$?
  child=
  ((rc == 0)) && exit 0
  why="status $rc"
  ((rc > 128)) && why="signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
  if ((restarts >= max)); then
    echo "vmpk-cache-supervise: the server died ($why); $restarts restarts already, giving up" >&2
    exit 1
  fi
  restarts=$((restarts + 1))
  echo "vmpk-cache-supervise: the server died ($why); restart $restarts of $max in ${delay}s" >&2
  sleep "$delay"
done
