#!/usr/bin/env bash
# Listeners per core of the Ogg/Opus HTTP stream: streamd's `/stream/focus.opus` side by side with
# Icecast 2 serving the SAME stream (streamd is its source client), in one run on this machine.
#
#   ./scripts/bench-icecast.sh                 # 1, 500, 1000, 2000 listeners, 20 s each
#   LISTENERS="1 1000" SECS=30 ./scripts/bench-icecast.sh
#
# For each listener count it measures streamd, then Icecast, with the same load generator
# (`auralis-loadtest --url http://...`, raw HTTP GETs that count bytes and stalls). The CPU of both
# servers is read from /proc over the measured window only (after every listener connected). The
# marginal cost per listener is (cpu(N) - cpu(1)) / (N - 1); listeners per core is 100 % divided by
# it. Both servers carry the same fixed work in every run (streamd renders nothing itself but
# encodes the feed once and relays it to Icecast; Icecast receives it), which the subtraction
# removes. Needs icecast2 (Debian package; scripts/install-test-deps.sh installs it). Results:
# target/bench-icecast/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTENERS="${LISTENERS:-1 500 1000 2000}"
SECS="${SECS:-20}"
ICECAST="${ICECAST:-/usr/bin/icecast2}"
[[ -x "$ICECAST" ]] || { echo "bench-icecast: $ICECAST not found (apt-get install icecast2)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-icecast: jq not found" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --bin auralis --bin auralis-loadtest 2>&1 | tail -1
bin=target/release
out=target/bench-icecast
rm -rf "$out"; mkdir -p "$out/icecast/log"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ice_port=$(free_port)
port=$(free_port)
password=bench-$$
max=0; for n in $LISTENERS; do (( n > max )) && max=$n; done

# Icecast refuses to run as root unless it can drop to another user.
changeowner=""
if [[ $(id -u) == 0 ]]; then
  changeowner="<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
  chmod 777 "$out/icecast" "$out/icecast/log"
fi
dir=$(cd "$out/icecast" && pwd)
cat > "$dir/icecast.xml" <<EOF
<icecast>
  <limits><clients>$((max + 100))</clients><sources>4</sources><burst-size>65535</burst-size>
    <source-timeout>10</source-timeout><queue-size>524288</queue-size></limits>
  <authentication><source-password>$password</source-password>
    <admin-user>admin</admin-user><admin-password>$password</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>$ice_port</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><basedir>$dir</basedir><logdir>$dir/log</logdir><webroot>$dir</webroot>
    <adminroot>$dir</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>$changeowner</security>
</icecast>
EOF

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

"$ICECAST" -c "$dir/icecast.xml" >/dev/null 2>&1 &
ice_pid=$!; pids+=("$ice_pid")
ns="bench_icecast_$$"
STREAMD_ICECAST="http://source:$password@127.0.0.1:$ice_port" \
STREAMD_ICECAST_MOUNTS="focus=/focus.opus" \
WS_MAX_CONNECTIONS=$((max + 1000)) AURALIS_LOG_LEVEL=warn \
  "$bin/auralis" up --host 127.0.0.1 --port "$port" --namespace "$ns" >"$out/auralis.log" 2>&1 &
up_pid=$!; pids=("$up_pid" "${pids[@]}")

mount="http://127.0.0.1:$ice_port/focus.opus"
ours="http://127.0.0.1:$port/stream/focus.opus"
code() { curl -s -m 1 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }
for _ in $(seq 120); do [[ $(code "$mount") == 200 ]] && break; sleep 0.5; done
[[ $(code "$mount") == 200 ]] || {
  echo "bench-icecast: the Icecast mount never came up" >&2; tail -5 "$out/auralis.log" >&2; grep -v fserve "$dir/log/error.log" | tail -5 >&2; exit 1; }
streamd_pid=$(pgrep -P "$up_pid" -f 'auralis streamd' | head -1)
[[ -n "$streamd_pid" ]] || { echo "bench-icecast: no streamd under the launcher" >&2; exit 1; }
echo "streamd pid $streamd_pid on $port, icecast pid $ice_pid on $ice_port; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

run() { # server url n
  local server=$1 url=$2 n=$3 ramp
  ramp=$(( n / 100 + 1 ))
  "$bin/auralis-loadtest" --url "$url" --listeners "$n" --ramp "$ramp" --warmup 3 \
    --duration "$SECS" --pids "streamd=$streamd_pid,icecast=$ice_pid" --json \
    > "$out/$server-$n.json"
  jq -r --arg s "$server" --arg n "$n" '
    (.processes | to_entries | map({key: (.key | split(":")[0]), value: .value}) | from_entries) as $p
    | [$s, $n, .connected, ($p[$s].cpu_pct), ($p.loadtest.cpu_pct), .kbit_s_per_listener.p50,
       .stalls_over_1s, .closed_early, ($p[$s].rss_mib_max)] | @tsv' "$out/$server-$n.json"
}

{
  printf 'server\tlisteners\tstreaming\tserver_cpu_pct\tloadgen_cpu_pct\tkbit_s_p50\tstalls\tclosed_early\tserver_rss_mib\n'
  for n in $LISTENERS; do
    run streamd "$ours" "$n"
    run icecast "$mount" "$n"
  done
} | tee "$out/runs.tsv"

# Marginal cost per listener from the smallest and each larger count.
awk -F'\t' 'NR > 1 { cpu[$1, $2] = $4; if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2; ns[$2] = 1 }
  END {
    printf "\n%-8s %10s %22s %20s\n", "server", "listeners", "CPU per listener (%)", "listeners per core"
    for (s in lo) for (n in ns) if (n > lo[s] && (s, n) in cpu) {
      d = (cpu[s, n] - cpu[s, lo[s]]) / (n - lo[s])
      printf "%-8s %10d %22.5f %20s\n", s, n, d, (d > 0 ? sprintf("%.0f", 100 / d) : "n/a")
    }
  }' "$out/runs.tsv" | tee "$out/summary.txt"
