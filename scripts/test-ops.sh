#!/usr/bin/env bash
# Operations checks, run by scripts/test.sh (or alone):
#   1. systemd units: `systemd-analyze verify` on copies whose ExecStart= points at the freshly
#      built binaries (verify checks that they exist and are executable); any warning fails.
#      The sysusers.d file is applied to a scratch root.
#   2. Prometheus: `promtool check rules`, `promtool test rules`, `promtool check config`.
#   3. Live: `auralis up` on free loopback ports and a unique shared-memory namespace, a real
#      Prometheus scraping composer, synthd and streamd, and series read back through its HTTP
#      API; every Grafana panel query must evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
say() { printf '[test-ops %3ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

./scripts/install-test-deps.sh systemd prometheus curl

say "building the binaries"
cargo build --locked --bins -p auralis -p composer -p synthd -p streamd 2>&1 | tail -n 2
bin=$(pwd)/target/debug
for b in auralis auralis-loadtest composer synthd streamd; do [[ -x $bin/$b ]] || fail "missing $bin/$b"; done

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. systemd ------------------------------------------------------------------------------
say "systemd-analyze verify"
mkdir -p "$tmp/units"
for unit in systemd/*.service systemd/*.target; do
  sed -e "s#/usr/local/bin/#$bin/#" "$unit" >"$tmp/units/$(basename "$unit")"
done
grep -q "ExecStart=$bin/composer run" "$tmp/units/auralis-composer.service" || fail "ExecStart not substituted"
out=$(systemd-analyze verify --man=no "$tmp"/units/*.service "$tmp"/units/auralis.target 2>&1) \
  || { echo "$out"; fail "systemd-analyze verify"; }
[[ -z $out ]] || { echo "$out"; fail "systemd-analyze verify printed warnings"; }
# Properties the deployment relies on.
for unit in composer synthd streamd; do
  f=systemd/auralis-$unit.service
  for want in Type=notify WatchdogSec= Restart=on-failure User=auralis Group=auralis RemoveIPC=no \
              PartOf=auralis.target EnvironmentFile=-/etc/auralis/auralis.env ProtectSystem=strict \
              NoNewPrivileges=yes MemoryDenyWriteExecute=yes SystemCallFilter=@system-service; do
    grep -q "^$want" "$f" || fail "$f lacks $want"
  done
  for banned in DynamicUser= PrivateIPC= PrivateTmp= PrivateDevices=; do
    ! grep -q "^$banned" "$f" || fail "$f sets $banned (it would unshare or delete /dev/shm)"
  done
done
mkdir -p "$tmp/sysroot/etc"
sysusers_out=$(systemd-sysusers --root="$tmp/sysroot" - <systemd/sysusers.d/auralis.conf 2>&1) \
  || fail "systemd-sysusers rejected sysusers.d/auralis.conf: $sysusers_out"
grep -q '^auralis:' "$tmp/sysroot/etc/passwd" && grep -q '^auralis:' "$tmp/sysroot/etc/group" \
  || fail "sysusers.d/auralis.conf did not create user and group auralis"

# --- 2. Prometheus rules ---------------------------------------------------------------------
say "promtool"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
promtool check config deploy/prometheus/prometheus.yml

# --- 3. live scrape --------------------------------------------------------------------------
free_port() {
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    # Nothing answers a connect: free (good enough on a CI box; a clash fails loudly below).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port"
}
web=$(free_port); cm=$(free_port); sm=$(free_port); prom=$(free_port)
ns="ops_$$_$RANDOM"
say "auralis up: streamd :$web, composer metrics :$cm, synthd metrics :$sm, namespace $ns"
AURALIS_COMPOSER_METRICS_ADDR=127.0.0.1:$cm AURALIS_SYNTHD_METRICS_ADDR=127.0.0.1:$sm \
  AURALIS_LOG_LEVEL=warn "$bin/auralis" up --host 127.0.0.1 --port "$web" --namespace "$ns" \
  >"$tmp/auralis.log" 2>&1 &
pids+=($!)

cp deploy/prometheus/alerts.yml "$tmp/alerts.yml"
cat >"$tmp/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - {job_name: auralis-composer, static_configs: [{targets: ["127.0.0.1:$cm"]}]}
  - {job_name: auralis-synthd, static_configs: [{targets: ["127.0.0.1:$sm"]}]}
  - {job_name: auralis-streamd, static_configs: [{targets: ["127.0.0.1:$web"]}]}
YAML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

api="http://127.0.0.1:$prom/api/v1"
query() { curl -fsS -G --data-urlencode "query=$1" "$api/query"; }
# Waits until `$1` returns at least one series.
wait_series() {
  for _ in $(seq 60); do
    if query "$1" 2>/dev/null | grep -q '"result":\[{'; then say "series present: $1"; return; fi
    sleep 0.5
  done
  echo "--- auralis log"; tail -n 30 "$tmp/auralis.log"; echo "--- prometheus log"; tail -n 10 "$tmp/prometheus.log"
  echo "--- targets"; curl -fsS "$api/targets" || true; echo
  fail "no series for $1"
}
wait_series 'synthesis_latency_seconds_count{job="auralis-synthd",station="focus"} > 0'
wait_series 'buffer_depth_chunks{job="auralis-synthd"}'
wait_series 'composer_bars_total{job="auralis-composer",station="focus"} > 0'
wait_series 'process_cpu_seconds_total{job="auralis-composer"}'
wait_series 'memory_usage_mb{job="auralis-synthd"} > 0'
wait_series 'gpu_memory_allocated_mb{job="auralis-synthd"}'
wait_series 'active_websocket_connections{job="auralis-streamd"}'
wait_series 'process_resident_memory_bytes{job="auralis-streamd"}'

# streamd's per-station series need a listener: two load-test listeners stream "focus" while
# Prometheus scrapes (the load generator stops on its own; cleanup kills it first).
"$bin/auralis-loadtest" --url "ws://127.0.0.1:$web/ws" --listeners 2 --ramp 0.1 --duration 120 \
  --stations focus >"$tmp/loadtest.log" 2>&1 &
pids=("$!" "${pids[@]}")
wait_series 'streamd_listeners{job="auralis-streamd",station="focus"} > 0'
wait_series 'chunk_encoding_duration_seconds_count{job="auralis-streamd",station="focus",format="websocket"} > 0'
wait_series 'chunk_delivery_jitter_ms_count{job="auralis-streamd",station="focus"} > 0'
wait_series 'buffer_underruns_total{job="auralis-streamd",station="focus"}'
wait_series 'buffer_depth_chunks{job="auralis-streamd",station="focus"}'
wait_series 'streamd_chunks_encoded_total{job="auralis-streamd",station="focus"} > 0'
wait_series 'streamd_listener_skips_total{job="auralis-streamd",station="focus"}'
wait_series 'streamd_lagged_chunks_total{job="auralis-streamd",station="focus"}'
wait_series 'streamd_stations{job="auralis-streamd"} > 0'
wait_series 'sum(streamd_listeners_by_tier{job="auralis-streamd"}) > 0'
# The dashboard's streamd panels draw something (rates need two scrapes).
wait_series 'histogram_quantile(0.95, sum by (le) (rate(chunk_delivery_jitter_ms_bucket{job="auralis-streamd"}[1m])))'
wait_series 'histogram_quantile(0.99, sum by (le) (rate(chunk_encoding_duration_seconds_bucket{job="auralis-streamd"}[1m])))'
wait_series 'sum by (station) (rate(buffer_underruns_total{job="auralis-streamd"}[1m]))'

# Every Grafana panel query (and every alert expression) must evaluate.
grep -o '"expr": "[^"]*\(\\"[^"]*\)*"' deploy/grafana/auralis.json | sed -e 's/^"expr": "//' -e 's/"$//' -e 's/\\"/"/g' >"$tmp/exprs"
grep -E '^\s+expr: ' deploy/prometheus/alerts.yml | sed -E 's/^\s+expr: //' >>"$tmp/exprs"
n=0
while IFS= read -r expr; do
  query "$expr" | grep -q '"status":"success"' || fail "query does not evaluate: $expr"
  n=$((n + 1))
done <"$tmp/exprs"
(( n >= 20 )) || fail "only $n dashboard/alert queries found"
say "$n dashboard and alert queries evaluate"
say "ok"
