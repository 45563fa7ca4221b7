# lib-cluster.sh - start and stop a local clustermail cluster on loopback, by PID only.
# Sourced by compare.sh and directory.sh. The caller sets:
#   CM (the binary), HOST (127.0.0.1), CM_PORT (SMTP CM_PORT.., API +100, cluster +200,
#   gossip +300), WORK (data and logs go to $WORK/NAME), CM_LOG_LEVEL, and traps EXIT to cm_stop.
# After cm_start: CM_SMTP (host:port), CM_API (http://host:port) and CM_NODE_PIDS, one per node
# of the cluster just started; CM_PIDS holds every node started so far (cm_stop stops them all).
CM_PIDS=() CM_SMTP=() CM_API=() CM_NODE_PIDS=()
port_busy() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

cm_stop() {
  # SIGINT: a node stops without leaving the cluster, as for a restart.
  local p
  for p in "${CM_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  for p in "${CM_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  CM_PIDS=()
}

cm_start() { # NAME N: starts N nodes under $WORK/NAME and waits until all are ready
  local name=$1 n=$2 i join=""
  CM_SMTP=() CM_API=() CM_NODE_PIDS=()
  for i in $(seq 0 $((n-1))); do
    for p in $((CM_PORT+i)) $((CM_PORT+100+i)) $((CM_PORT+200+i)) $((CM_PORT+300+i)); do
      port_busy "$p" && { echo "port $p already in use; set CM_PORT" >&2; exit 1; }
    done
    join="$join${join:+,}$HOST:$((CM_PORT+300+i))"
  done
  mkdir -p "$WORK/$name"
  for i in $(seq 0 $((n-1))); do
    local args=(server --name "n$((i+1))" --data-dir "$WORK/$name/n$((i+1))"
      --smtp-addr "$HOST:$((CM_PORT+i))" --api-addr "$HOST:$((CM_PORT+100+i))"
      --raft-addr "$HOST:$((CM_PORT+200+i))" --gossip-addr "$HOST:$((CM_PORT+300+i))"
      --bootstrap-expect "$n" --hostname "n$((i+1)).bench.test" --log-level "$CM_LOG_LEVEL"
      --mail-auth="$CM_MAIL_AUTH")
    [ "$n" -gt 1 ] && args+=(--join "$join")
    "$CM" "${args[@]}" >"$WORK/$name/n$((i+1)).log" 2>&1 &
    CM_PIDS+=($!)
    CM_NODE_PIDS+=($!)
    CM_SMTP+=("$HOST:$((CM_PORT+i))")
    CM_API+=("http://$HOST:$((CM_PORT+100+i))")
  done
  for i in $(seq 0 $((n-1))); do
    local ok=0
    for _ in $(seq 1 300); do
      curl -sf "${CM_API[$i]}/v1/health/ready" >/dev/null 2>&1 && { ok=1; break; }
      kill -0 "${CM_NODE_PIDS[$i]}" 2>/dev/null || break
      sleep 0.2
    done
    [ "$ok" = 1 ] || { echo "clustermail node n$((i+1)) not ready; its log:" >&2; tail -20 "$WORK/$name/n$((i+1)).log" >&2; exit 1; }
  done
  CLUSTERMAIL_API=${CM_API[0]} "$CM" domain add bench.test >/dev/null || exit 1
}
cm_add_user() { # ADDRESS OWNER [API]
  printf 'bench-password-123\n' | CLUSTERMAIL_API=${3:-${CM_API[0]}} "$CM" user add "$1" --password-stdin --node "$2" >/dev/null || exit 1
}
