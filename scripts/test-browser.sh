#!/usr/bin/env bash
# Browser test of the web player: starts `auralis up` on a free port in its own shared-memory
# namespace, drives Debian's headless chromium with playwright-core (client/tests/) against it, and
# stops the server. Never downloads a browser. Writes artifacts/player.png and artifacts/browser-*.log.
#   ./scripts/test-browser.sh                      build (debug) and test
#   AURALIS_BIN=target/release/auralis ./scripts/test-browser.sh   use an existing binary
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p artifacts

[[ -x /usr/bin/chromium ]] || ./scripts/install-test-deps.sh chromium
command -v node >/dev/null || { echo "test-browser: node (>= 20) is required" >&2; exit 1; }

(cd client/tests && npm ci --no-audit --no-fund --loglevel=error)

if [[ -z "${AURALIS_BIN:-}" ]]; then
  # Debug is enough (and quicker in CI); it embeds the client files just edited.
  cargo build --locked --bin auralis
  AURALIS_BIN=$ROOT/target/debug/auralis
else
  # A given binary may predate the client files: have streamd serve them from the tree.
  export STREAMD_CLIENT_DIR=$ROOT/client
fi

PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
NS="browser_$$_$RANDOM"
LOG=$ROOT/artifacts/browser-server.log

"$AURALIS_BIN" up --host 127.0.0.1 --port "$PORT" --namespace "$NS" >"$LOG" 2>&1 &
PID=$!

stop_server() {
  kill -0 "$PID" 2>/dev/null || return 0
  # The launcher's children, remembered in case it has to be killed (they have their own groups).
  local children
  children=$(cat /proc/"$PID"/task/*/children 2>/dev/null || true)
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 200); do                      # up to 20 s: streamd drains first
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "test-browser: the launcher did not stop in time; killing it" >&2
    kill -KILL "$PID" 2>/dev/null || true
    for c in $children; do kill -KILL "$c" 2>/dev/null || true; done
  fi
  wait "$PID" 2>/dev/null || true
}
trap stop_server EXIT

set +e
(cd client/tests && AURALIS_URL="http://127.0.0.1:$PORT" AURALIS_LAUNCHER_PID="$PID" \
  ARTIFACTS_DIR="$ROOT/artifacts" CLIENT_DIR="$ROOT/client" \
  timeout 180 node --test --test-reporter=spec --test-concurrency=1 player.test.mjs)
rc=$?
set -e
stop_server
trap - EXIT
if ((rc != 0)); then
  echo "test-browser: FAILED (server log: $LOG, browser log: artifacts/browser-console.log)" >&2
  tail -n 30 "$LOG" >&2 || true
fi
exit "$rc"
