#!/usr/bin/env bash
# The whole test suite, as the README's second command. Installs what the tests need first.
#   ./scripts/test.sh            everything CI runs
#   QUICK=1 ./scripts/test.sh    skip the lint and model-checking stages
#   SKIP_TORCH=1 ./scripts/test.sh  skip the torch backend stage (downloads PyTorch once)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stage() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

stage "system packages"
./scripts/install-test-deps.sh libopus-dev pkg-config ffmpeg icecast2

if [[ -z "${QUICK:-}" ]]; then
  stage "cargo fmt --check"
  cargo fmt --all -- --check
  stage "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  stage "cargo doc (intra-doc links must resolve)"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
fi

stage "cargo test (workspace: unit, multi-process, end-to-end)"
cargo test --workspace --locked

stage "web player in a real browser (Debian chromium + playwright-core)"
./scripts/test-browser.sh

stage "operations: systemd units, Prometheus rules, live scrape through a real Prometheus"
./scripts/test-ops.sh

if [[ -z "${QUICK:-}" ]]; then
  stage "loom model of the shared-memory slot protocol"
  RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p shm-proto --release --locked --lib loom
fi

if [[ -z "${SKIP_TORCH:-}" ]]; then
  # PyTorch 2.11.0 cached in ~/.cache/auralis (4.6 GB once), its own target dir: see the script.
  stage "synthd torch backend: parity with the native engine on libtorch's CPU (SKIP_TORCH=1 skips)"
  ./scripts/test-torch.sh
fi

stage "done"
