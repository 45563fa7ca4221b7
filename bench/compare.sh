#!/usr/bin/env bash
# compare.sh - clustermail against its performance anchor, Postfix, on this machine, in one run.
#
#   sudo bench/compare.sh                      # defaults: MSGS=10000 SIZES="1024 32768" CONC="10 50"
#   MSGS=2000 CONC=10 SIZES=1024 bench/compare.sh
#
# Servers, all started by this script on 127.0.0.1 only before the first run, stopped by PID. The
# runs are interleaved: each configuration runs on every server before the next configuration, so
# that a change in the machine's background load hits all servers alike (idle servers cost little):
#   postfix   a private Postfix instance (the logic of peer-postfix.sh, maildir mode: virtual(8)
#             into $WORK/pf/mail); the system's own Postfix is never touched
#   cm1       one clustermail node (--bootstrap-expect 1), binary from `make build`
#   cm3       a three-node clustermail cluster; the load goes to n1, the mailbox is owned by n2
#             (the common case: the node that accepts is not the owner)
#   cm3rr     (CM3_RR=1) the same cluster, clustermail's generator spreading connections
#             round-robin over n1, n2, n3
#   half-peak (HALF_RATE=1) after the matrix, clustermail's generator paced (--rate) to half the
#             best rate each clustermail server reached at each size: the p99 latency goal
# Load generators, each on every server for every configuration (GENS):
#   smtp-source            Postfix's own, as in the shared scripts
#   clustermail            `clustermail bench smtp` (also measures the "." -> 250 latency)
# Delivered: every server counts messages in the recipient's mailbox, polled every 0.2 s:
#   postfix: files in the Maildir's new/ (find | wc -l); clustermail: `clustermail bench count`
#   (mailbox stats through the admin API). Each clustermail run gets a fresh account, so its
#   mailbox starts empty; Postfix's Maildir is removed between runs, as in peer-postfix.sh.
# Memory: clustermail: ps rss of the node process (idle after warm-up; peak under load, sampled
#   every 0.25 s; cm3: sum of the three nodes, and the largest node). Postfix: PSS of master and
#   its children summed (RSS would count shared libraries once per process).
#
# Env knobs (defaults in brackets):
#   MSGS [10000] SIZES ["1024 32768"] CONC ["10 50"] REUSE [0] (1: several messages per connection)
#   GENS ["smtp-source clustermail"] SERVERS ["postfix cm1 cm3"] CM3_RR [1]
#   PF_PORT [2525] CM_PORT [26000] (cm1: SMTP CM_PORT, API +100, cluster +200, gossip +300;
#                                   cm3: the same from CM_PORT+10)
#   CM_LOG_LEVEL [info] (the nodes' logs go to files under $WORK)
#   STALL_S [60] give up waiting for delivery after this long without progress
#   SETTLE_S [30] before each run, wait up to this long for the CPUs to be 85 % idle (other
#             servers finishing their flushes and compactions); 0 = do not wait
#   WORK [a new /tmp/cmbench.XXXXXX] KEEP [0] (1 = leave $WORK: logs, results)
#   NO_BUILD [0] (1 = use bin/clustermail as it is)  NO_INSTALL [0] (1 = never apt-get)
#   PROFILE [0] (1 = during every clustermail run, take a CPU profile of each node from its admin
#             API's /debug/pprof/profile for PROFILE_S [15] seconds from the start of the load, into
#             $PROFILE_DIR [$WORK/profiles]: SERVER-SIZE-CONC-GEN-NODE.pprof; profiling costs a few %)
# Output: the machine (`clustermail bench machine`: fsync latency, thread wake-up round trip, CPU
#   speed), one ROW line per run, then a table with clustermail/postfix ratios per configuration.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib-cluster.sh"
MSGS=${MSGS:-10000}
SIZES=${SIZES:-"1024 32768"}
CONC=${CONC:-"10 50"}
REUSE=${REUSE:-0}
GENS=${GENS:-"smtp-source clustermail"}
SERVERS=${SERVERS:-"postfix cm1 cm3"}
CM3_RR=${CM3_RR:-1}
HALF_RATE=${HALF_RATE:-1}
SETTLE_S=${SETTLE_S:-30}
PF_PORT=${PF_PORT:-2525}
CM_PORT=${CM_PORT:-26000}
CM_LOG_LEVEL=${CM_LOG_LEVEL:-info}
# SPF/DKIM/DMARC checks of inbound mail: off, as the Postfix peer runs none (true: on).
CM_MAIL_AUTH=${CM_MAIL_AUTH:-false}
STALL_S=${STALL_S:-60}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-0}
PROFILE_S=${PROFILE_S:-15}
NO_BUILD=${NO_BUILD:-0}
NO_INSTALL=${NO_INSTALL:-0}
HOST=127.0.0.1            # the only address this script ever targets or binds
CM=$ROOT/bin/clustermail
SRC=/usr/sbin/smtp-source

[ "$(id -u)" = 0 ] || { echo "run as root (Postfix's master must start as root)" >&2; exit 1; }

# --- Postfix from Debian, if missing (the package's own daemon is never started) ---
if [ ! -x /usr/sbin/postfix ] || [ ! -x "$SRC" ]; then
  [ "$NO_INSTALL" = 1 ] && { echo "Postfix is missing and NO_INSTALL=1" >&2; exit 1; }
  echo "installing Postfix from Debian ..." >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >&2 \
    || { echo "apt-get install postfix failed" >&2; exit 1; }
fi
PF_DAEMON=$(postconf -h daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)

if [ "$NO_BUILD" != 1 ]; then
  make -C "$ROOT" build >&2 || { echo "make build failed" >&2; exit 1; }
fi
[ -x "$CM" ] || { echo "missing $CM (make build)" >&2; exit 1; }

WORK=${WORK:-$(mktemp -d /tmp/cmbench.XXXXXX)}
mkdir -p "$WORK"
chmod 755 "$WORK"          # Postfix's daemons (user postfix, uid 65534 for virtual) must reach it
RESULTS=$WORK/results.txt
PROFILE_DIR=${PROFILE_DIR:-$WORK/profiles}
: > "$RESULTS"

MASTER_PID=""
SAMPLER_PID=""

now() { date +%s.%N; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

stop_sampler() {
  if [ -n "$SAMPLER_PID" ] && kill -0 "$SAMPLER_PID" 2>/dev/null; then
    kill -TERM "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null
  fi
  SAMPLER_PID=""
}

pf_stop() {
  # By PID only: the master's, from its pid file, then its children.
  if [ -n "$MASTER_PID" ] && kill -0 "$MASTER_PID" 2>/dev/null; then
    local kids
    kids=$(ps -o pid= --ppid "$MASTER_PID" 2>/dev/null | tr '\n' ' ')
    kill -TERM "$MASTER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$MASTER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$MASTER_PID" 2>/dev/null && kill -KILL "$MASTER_PID" 2>/dev/null
    sleep 0.5
    for k in $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
  fi
  MASTER_PID=""
}

cleanup() {
  stop_sampler
  pf_stop
  cm_stop
  if [ "$KEEP" = 1 ]; then echo "kept $WORK (logs, results.txt)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- memory -------------------------------------------------------------------------------
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
pf_pids() { [ -n "$MASTER_PID" ] && { echo "$MASTER_PID"; ps -o pid= --ppid "$MASTER_PID" 2>/dev/null; }; }

# mem_now KIND: prints "SUM MAX" in KiB: postfix = PSS summed over master and children;
# cm1, cm3 = RSS of each node process of that cluster (MAX is the largest node).
mem_now() {
  local s=0 m=0 v p
  if [ "$1" = postfix ]; then
    for p in $(pf_pids); do v=$(pss_kb "$p"); v=${v:-0}; s=$((s+v)); [ "$v" -gt "$m" ] && m=$v; done
  else
    for p in ${CL_PIDS[$1]}; do v=$(rss_kb "$p"); v=${v:-0}; s=$((s+v)); [ "$v" -gt "$m" ] && m=$v; done
  fi
  echo "$s $m"
}

# start_sampler KIND FILE: keeps the peak "SUM MAX" in FILE until stopped.
start_sampler() {
  local kind=$1 file=$2
  echo "0 0" > "$file"
  (
    ms=0; mm=0
    while :; do
      read -r s m < <(mem_now "$kind")
      [ "$s" -gt "$ms" ] && ms=$s
      [ "$m" -gt "$mm" ] && mm=$m
      echo "$ms $mm" > "$file"
      sleep 0.25
    done
  ) &
  SAMPLER_PID=$!
}

# --- Postfix (the logic of peer-postfix.sh, maildir mode) ----------------------------------
PF=$WORK/pf
pf_start() {
  port_busy "$PF_PORT" && { echo "port $PF_PORT already in use; set PF_PORT" >&2; exit 1; }
  rm -rf "$PF"
  mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$PF/mail"
  chown 65534:65534 "$PF/mail"
  chown postfix "$PF/data"
  cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = $PF_DAEMON
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = pfbench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = $HOST
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP
biff = no
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery disabled
maillog_file_prefixes = /var, /dev/stdout, $PF
maillog_file = $PF/maillog
smtp_bind_address = $HOST
virtual_mailbox_domains = bench.test
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = regexp:$PF/etc/vmailbox
default_transport = error:benchmark sends nothing off this host
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# everything else (queue fsync, in_flow_delay=1s, process limits 100, ...) stays at Postfix defaults
EOF
  echo '/^user@bench\.test$/ bench.test/user/' > "$PF/etc/vmailbox"
  cat > "$PF/etc/master.cf" <<EOF
$HOST:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  /usr/sbin/postfix -c "$PF/etc" check >"$PF/check.log" 2>&1 || { cat "$PF/check.log" >&2; exit 1; }
  /usr/sbin/postfix -c "$PF/etc" start >"$PF/master.out" 2>&1
  for _ in $(seq 1 100); do [ -s "$PF/spool/pid/master.pid" ] && break; sleep 0.1; done
  MASTER_PID=$(tr -d ' \n' < "$PF/spool/pid/master.pid" 2>/dev/null)
  for _ in $(seq 1 100); do port_busy "$PF_PORT" && break; sleep 0.1; done
  port_busy "$PF_PORT" || { echo "postfix did not come up" >&2; cat "$PF/master.out" "$PF/maillog" >&2 2>/dev/null; exit 1; }
}
pf_queue_count() { find "$PF/spool/incoming" "$PF/spool/active" "$PF/spool/deferred" "$PF/spool/maildrop" -type f 2>/dev/null | wc -l; }
PF_COUNT_CMD="find $PF/mail/bench.test -path '*/new/*' -type f 2>/dev/null | wc -l"
pf_wait_idle() { for _ in $(seq 1 300); do [ "$(pf_queue_count)" = 0 ] && break; sleep 0.2; done; }

# --- clustermail (cm_start, cm_stop, cm_add_user: lib-cluster.sh) -----------------------------
# Per cluster (cm1, cm3): SMTP addresses, API URLs and node PIDs, space-separated.
declare -A CL_SMTP CL_API CL_PIDS
cm_count_cmd() { echo "CLUSTERMAIL_API=$2 $CM bench count --rcpt $1"; } # RCPT API
cm_queue_depth() { # API
  curl -sf "$1/metrics" 2>/dev/null | awk '/^clustermail_queue_depth/{s+=$NF} END{print s+0}'
}
cm_wait_idle() { for _ in $(seq 1 300); do [ "$(cm_queue_depth "$1")" = 0 ] && break; sleep 0.2; done; }

# settle: before each run, wait (up to SETTLE_S seconds) until the CPUs are at least 85 % idle
# over one second, so that no run starts inside the flushes and compactions another server
# still owes for the run before it (every server runs on the same two CPUs).
cpu_busy_pct() {
  local a b
  read -r -a a < /proc/stat; sleep 1; read -r -a b < /proc/stat
  local ta=0 tb=0 i
  for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=$((tb - ta))
  [ "$total" -gt 0 ] || { echo 0; return; }
  echo $(( 100 - 100 * idle / total ))
}
settle() {
  local t0=$SECONDS busy=100
  while [ $((SECONDS - t0)) -lt "$SETTLE_S" ]; do
    busy=$(cpu_busy_pct)
    [ "$busy" -le 15 ] && return
  done
  log "machine still ${busy}% busy after ${SETTLE_S}s; running anyway"
}

# --- one run ----------------------------------------------------------------------------------
# run SERVER GEN SIZE CONC TARGETS(comma) RCPT COUNT_CMD MEMKIND [API]
# With API (clustermail), clustermail's generator counts through the admin API in-process
# (the same mailbox stats as COUNT_CMD) and also reports when the queue was empty.
run() {
  local server=$1 gen=$2 size=$3 c=$4 targets=$5 rcpt=$6 count_cmd=$7 kind=$8 api=${9:-}
  local first=${targets%%,*} t0 t1 t2 rc d line memf=$WORK/mem.$$ extra="" before
  sync; settle
  local prof_pids=() i
  if [ "$PROFILE" = 1 ] && [ "$kind" != postfix ]; then
    mkdir -p "$PROFILE_DIR"
    i=0
    for a in ${CL_API[$kind]}; do
      i=$((i+1))
      curl -sf "$a/debug/pprof/profile?seconds=$PROFILE_S" -o "$PROFILE_DIR/$server-$size-$c-$gen-n$i.pprof" 2>/dev/null &
      prof_pids+=($!)
    done
  fi
  start_sampler "$kind" "$memf"
  if [ "$gen" = smtp-source ]; then
    [ "$REUSE" = 1 ] && extra="-d"
    before=$(bash -c "$count_cmd" 2>/dev/null | tail -1 | tr -dc '0-9'); before=${before:-0}
    t0=$(now)
    "$SRC" -4 $extra -s "$c" -m "$MSGS" -l "$size" -M client.test -f bench@client.test -t "$rcpt" "$first" \
      >"$WORK/source.log" 2>&1
    rc=$?
    t1=$(now)
    local last=-1 tl
    tl=$(date +%s)
    while :; do
      d=$(bash -c "$count_cmd" 2>/dev/null | tail -1 | tr -dc '0-9'); d=$(( ${d:-0} - before ))
      [ "$d" -ge "$MSGS" ] && break
      if [ "$d" != "$last" ]; then last=$d; tl=$(date +%s); fi
      [ $(( $(date +%s) - tl )) -ge "$STALL_S" ] && break
      sleep 0.2
    done
    t2=$(now)
    stop_sampler
    [ "$rc" = 0 ] || { echo "smtp-source errors ($server):" >&2; tail -3 "$WORK/source.log" >&2; }
    line=$(awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v n="$MSGS" -v d="$d" -v rc="$rc" 'BEGIN{
      a=t1-t0; e=t2-t0; if (e < a) e = a;
      printf "accept_s=%.2f accept_mps=%.1f deliver_s=%.2f deliver_mps=%.1f delivered=%d p50_ms=- p99_ms=- rc=%d", a, n/a, e, d/e, d, rc }')
  else
    local cflag=(--count-cmd "$count_cmd")
    [ -n "$api" ] && cflag=(--api "$api")
    [ "$REUSE" = 1 ] && extra="--reuse"
    line=$("$CM" bench smtp --targets "$targets" --sessions "$c" --messages "$MSGS" --size "$size" \
        --rcpt "$rcpt" --from bench@client.test $extra ${RATE:+--rate "$RATE"} --wait-delivered "${cflag[@]}" --poll 200ms \
        --stall "${STALL_S}s" --result-line --label "$server" 2>"$WORK/gen.err" | tee "$WORK/gen.out" | grep '^RESULT')
    rc=$?
    [ -s "$WORK/gen.err" ] && { echo "clustermail bench smtp ($server):" >&2; tail -3 "$WORK/gen.err" >&2
      grep '^errors' "$WORK/gen.out" >&2; }  # by stage and reply code: why they were not accepted
    stop_sampler
    line=$(echo "$line" | tr ' ' '\n' | grep -E '^(accept_s|accept_mps|deliver_s|deliver_mps|delivered|p50_ms|p99_ms|rc)=' | tr '\n' ' ')
  fi
  for i in "${prof_pids[@]}"; do wait "$i" 2>/dev/null; done
  local mem; mem=$(cat "$memf"); rm -f "$memf"
  # The 1-minute load average at the end of the run: the machine is shared, and a figure taken
  # while something else was busy (load well above the server's own) deserves a rerun.
  echo "ROW server=$server gen=$gen size=$size conc=$c msgs=$MSGS reuse=$REUSE $line mem_peak_kb=${mem% *} mem_peak_max_kb=${mem#* } load1=$(cut -d' ' -f1 /proc/loadavg)" \
    | tr -s ' ' | tee -a "$RESULTS"
}

idle_mem() { # SERVER KIND
  sleep 2
  local m; m=$(mem_now "$2")
  echo "IDLE server=$1 mem_kb=${m% *} mem_max_kb=${m#* }" | tee -a "$RESULTS"
}

# --- the matrix ---------------------------------------------------------------------------
log "work dir $WORK; MSGS=$MSGS SIZES=\"$SIZES\" CONC=\"$CONC\" REUSE=$REUSE GENS=\"$GENS\" SERVERS=\"$SERVERS\""
# The machine, measured before any server starts: figures from two machines compare only
# alongside these (a slow fsync costs Postfix most, a slow thread wake-up clustermail most).
MACHINE=$("$CM" bench machine --dir "$WORK" --result-line | grep '^MACHINE' | cut -d' ' -f2-)
log "machine: $MACHINE"
short() { [ "$1" = smtp-source ] && echo ss || echo cg; }


# Start every server, warm it up (20 messages) and measure its idle memory.
for server in $SERVERS; do
  case $server in
  postfix)
    log "postfix: starting a private instance on $HOST:$PF_PORT"
    pf_start
    "$SRC" -4 -s 2 -m 20 -l 1024 -M client.test -f bench@client.test -t user@bench.test "$HOST:$PF_PORT" >/dev/null 2>&1
    pf_wait_idle
    ;;
  cm1|cm3)
    n=1; owner=n1; off=0; [ "$server" = cm3 ] && { n=3; owner=n2; off=10; }
    log "$server: starting $n clustermail node(s) on $HOST:$((CM_PORT+off)).."
    CM_PORT=$((CM_PORT+off)) cm_start "$server" "$n"
    CL_SMTP[$server]="${CM_SMTP[*]}" CL_API[$server]="${CM_API[*]}" CL_PIDS[$server]="${CM_NODE_PIDS[*]}"
    cm_add_user user@bench.test "$owner" "${CM_API[0]}"
    "$SRC" -4 -s 2 -m 20 -l 1024 -M client.test -f bench@client.test -t user@bench.test "${CM_SMTP[0]}" >/dev/null 2>&1
    cm_wait_idle "${CM_API[0]}"
    ;;
  *) echo "unknown server $server (postfix, cm1, cm3)" >&2; exit 1 ;;
  esac
done
for server in $SERVERS; do idle_mem "$server" "$server"; done

labels=""
for server in $SERVERS; do
  labels="$labels $server"
  [ "$server" = cm3 ] && [ "$CM3_RR" = 1 ] && labels="$labels cm3rr"
done
for size in $SIZES; do for c in $CONC; do for gen in $GENS; do for label in $labels; do
  case $label in
  postfix)
    pf_wait_idle; rm -rf "$PF/mail/bench.test"
    log "postfix size=$size conc=$c gen=$gen"
    run postfix "$gen" "$size" "$c" "$HOST:$PF_PORT" user@bench.test "$PF_COUNT_CMD" postfix
    ;;
  *)
    cl=${label%rr}; owner=n1; [ "$cl" = cm3 ] && owner=n2
    read -r -a smtp <<< "${CL_SMTP[$cl]}"
    read -r -a apis <<< "${CL_API[$cl]}"
    targets=${smtp[0]}
    if [ "$label" = cm3rr ]; then
      [ "$gen" = clustermail ] || continue   # smtp-source talks to one server only
      targets=$(IFS=,; echo "${smtp[*]}")
    fi
    rcpt="r${size}c${c}$(short "$gen")${label}@bench.test"
    cm_add_user "$rcpt" "$owner" "${apis[0]}"
    cm_wait_idle "${apis[0]}"
    log "$label size=$size conc=$c gen=$gen rcpt=$rcpt"
    run "$label" "$gen" "$size" "$c" "$targets" "$rcpt" "$(cm_count_cmd "$rcpt" "${apis[0]}")" "$cl" "${apis[0]}"
    ;;
  esac
done; done; done; done

# Latency at half the peak: for each clustermail server and size, the load is paced to half the
# best accepted rate its clustermail-generator rows reached, at the concurrency of that row.
if [ "$HALF_RATE" = 1 ] && [[ " $GENS " == *" clustermail "* ]]; then
  for size in $SIZES; do for label in $labels; do
    [ "$label" = postfix ] && continue
    best=$(awk -v s="$label" -v z="$size" '$1 == "ROW" {
      delete F; for (i = 2; i <= NF; i++) { split($i, p, "="); F[p[1]] = p[2] }
      if (F["server"] == s && F["gen"] == "clustermail" && F["size"] == z && F["accept_mps"] + 0 > b) { b = F["accept_mps"] + 0; c = F["conc"] }
    } END { if (b > 0) printf "%.0f %s", b / 2, c }' "$RESULTS")
    [ -n "$best" ] || continue
    read -r rate c <<< "$best"
    cl=${label%rr}; owner=n1; [ "$cl" = cm3 ] && owner=n2
    read -r -a smtp <<< "${CL_SMTP[$cl]}"
    read -r -a apis <<< "${CL_API[$cl]}"
    targets=${smtp[0]}
    [ "$label" = cm3rr ] && targets=$(IFS=,; echo "${smtp[*]}")
    rcpt="r${size}c${c}half${label}@bench.test"
    cm_add_user "$rcpt" "$owner" "${apis[0]}"
    cm_wait_idle "${apis[0]}"
    log "$label size=$size conc=$c paced to $rate msgs/s (half its peak)"
    RATE=$rate run "$label" "half-peak" "$size" "$c" "$targets" "$rcpt" "$(cm_count_cmd "$rcpt" "${apis[0]}")" "$cl" "${apis[0]}"
  done; done
fi
stop_sampler; pf_stop; cm_stop

# --- the table ------------------------------------------------------------------------------
echo
echo "clustermail vs Postfix on $(nproc) CPUs, $MSGS messages per run, reuse=$REUSE, one mailbox per run; $(date -u +%F\ %H:%MZ)"
echo "machine: $MACHINE (clustermail bench machine)"
awk '
function kv(s,   i, a, n) { n = split(s, a, " "); delete F; for (i = 1; i <= n; i++) { split(a[i], p, "="); F[p[1]] = p[2] } }
function mb(k) { return (k == "" || k == 0) ? "-" : sprintf("%.0f", k / 1024) }
function ratio(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "-" }
/^IDLE/ { kv($0); idle[F["server"]] = F["mem_kb"]; idlemax[F["server"]] = F["mem_max_kb"]; next }
/^ROW/ {
  kv($0); k = F["size"] SUBSEP F["conc"] SUBSEP F["gen"]
  if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
  s = F["server"]; srv[k, s] = 1
  acc[k, s] = F["accept_mps"]; del[k, s] = F["deliver_mps"]; p50[k, s] = F["p50_ms"]; p99[k, s] = F["p99_ms"]
  mem[k, s] = F["mem_peak_kb"]; memx[k, s] = F["mem_peak_max_kb"]; rc[k, s] = F["rc"]; dl[k, s] = F["delivered"]; ld[k, s] = F["load1"]
}
END {
  printf "%-7s %-5s %-12s %-7s %9s %9s %8s %8s %10s %9s %9s %6s %s\n", "SIZE", "CONC", "GEN", "SERVER", "ACCEPT/s", "DELIV/s", "p50ms", "p99ms", "MEM_MB", "ACC_xPF", "DEL_xPF", "LOAD1", "NOTE"
  ns = split("postfix cm1 cm3 cm3rr", S, " ")
  for (i = 1; i <= nk; i++) {
    split(order[i], c, SUBSEP); k = order[i]
    for (j = 1; j <= ns; j++) {
      s = S[j]; if (!((k, s) in srv)) continue
      m = mb(mem[k, s]); if (s ~ /^cm3/) m = m "(" mb(memx[k, s]) ")"
      note = (rc[k, s] != 0) ? "rc=" rc[k, s] " delivered=" dl[k, s] : ""
      printf "%-7s %-5s %-12s %-7s %9s %9s %8s %8s %10s %9s %9s %6s %s\n", c[1], c[2], c[3], s, acc[k, s], del[k, s], p50[k, s], p99[k, s], m,
        (s == "postfix") ? "1.00" : ratio(acc[k, s], acc[k, "postfix"]), (s == "postfix") ? "1.00" : ratio(del[k, s], del[k, "postfix"]), (ld[k, s] == "") ? "-" : ld[k, s], note
    }
  }
  printf "\nidle memory (MB): "
  for (j = 1; j <= ns; j++) if (S[j] in idle) printf "%s %s%s   ", S[j], mb(idle[S[j]]), (S[j] == "cm3") ? " (largest node " mb(idlemax[S[j]]) ")" : ""
  printf "\n"
}' "$RESULTS"
cat <<'EOF'

ACCEPT/s: messages / wall time of the load generator (until the last reply after "." and QUIT).
DELIV/s:  messages in the mailbox / time from the load start until the last one was counted (0.2 s polling).
p50/p99:  "." -> 250 latency, measured by clustermail's generator only.
MEM_MB:   peak under load: postfix = PSS of master+children; cm1 = node RSS; cm3 = sum of 3 nodes (largest node).
cm3: load to n1, mailbox owned by n2; cm3rr: clustermail's generator round-robin over n1..n3.
half-peak: clustermail's generator paced to half the best rate that server reached at that size
          (its p99 is the latency goal; its rates are the pace, not a capacity).
LOAD1:    the machine's 1-minute load average at the end of the run (on 2 CPUs the server and the
          generator alone make about 2-3; far above that, something else was running: rerun).
EOF
if [ "$PROFILE" = 1 ]; then
  echo "CPU profiles in $PROFILE_DIR (KEEP=1 or PROFILE_DIR to keep them): go tool pprof -top FILE"
fi
