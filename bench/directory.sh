#!/usr/bin/env bash
# directory.sh - directory scale test: starts a local three-node clustermail cluster (loopback,
# temporary data dirs, stopped by PID), then runs `clustermail bench directory` against it:
# account creation rate through the API, RCPT lookups over SMTP with a small and a large
# directory, the bulk load by snapshot restore and each node's catch-up, a Raft snapshot's size
# and time, memory, and a fourth node joining and catching up.
#
#   bench/directory.sh                       # ACCOUNTS=1000000
#   ACCOUNTS=100000 NODES=1 bench/directory.sh
#
# Env: ACCOUNTS [1000000] NODES [3] CM_PORT [27000] CM_LOG_LEVEL [info] WORK [a new temp dir]
#      KEEP [0] NO_BUILD [0] ARGS [extra flags for bench directory, e.g. "--json"]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib-cluster.sh"
ACCOUNTS=${ACCOUNTS:-1000000}
NODES=${NODES:-3}
CM_PORT=${CM_PORT:-27000}
CM_LOG_LEVEL=${CM_LOG_LEVEL:-info}
# SPF/DKIM/DMARC checks of inbound mail: off, as the Postfix peer runs none (true: on).
CM_MAIL_AUTH=${CM_MAIL_AUTH:-false}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
ARGS=${ARGS:-}
HOST=127.0.0.1
CM=$ROOT/bin/clustermail
if [ "$NO_BUILD" != 1 ]; then make -C "$ROOT" build >&2 || exit 1; fi
WORK=${WORK:-$(mktemp -d /tmp/cmdirbench.XXXXXX)}
cleanup() {
  cm_stop
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cm_start dir "$NODES"
echo "cluster of $NODES up; the nodes' logs are in $WORK/dir" >&2
# The bench's own work dir (the built snapshot) lives under $WORK too.
mkdir -p "$WORK/build"
"$CM" bench directory --api "${CM_API[0]}" --smtp "${CM_SMTP[0]}" --accounts "$ACCOUNTS" \
  --work-dir "$WORK/build" --yes $ARGS
rc=$?
for i in "${!CM_PIDS[@]}"; do
  echo "n$((i+1)) rss after: $(awk '/^VmRSS:/{print $2/1024 " MiB"}' /proc/${CM_PIDS[$i]}/status 2>/dev/null)"
done
exit $rc
