#!/usr/bin/env bash
# synthd's torch backend: installs PyTorch 2.11.0 (cached outside the repository), then builds and
# tests `synthd --features torch` in its own target directory (target/torch, so the default build
# is not invalidated): clippy, the unit tests (device selection, the engine, parity of every
# device voice family with the native voice code on libtorch's CPU, and on CUDA when a GPU is
# present, and the routed station against a native one), and the integration test proving a
# torch tick of several stations allocates nothing on the Rust side. The default build and
# `cargo test --workspace` need none of this.
#   ./scripts/test-torch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(./scripts/install-torch.sh --env)"
export CARGO_TARGET_DIR=target/torch
start=$(date +%s)
step() { printf -- '--- %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

if [[ -z "${QUICK:-}" ]]; then
  step "cargo clippy -p synthd --features torch"
  cargo clippy -p synthd --features torch --all-targets --locked -- -D warnings
fi
step "cargo test -p synthd --features torch (parity on libtorch's CPU; CUDA when present)"
log=$(mktemp)
cargo test -p synthd --features torch --locked --lib -- device torch --nocapture 2>&1 | tee "$log"
# The filter above selects by name: fail if the parity and routing tests did not actually run.
for t in torch_cpu_matches_the_native_dry_pad_path torch_cpu_matches_the_native_bass \
  torch_cpu_matches_the_native_soft_piano torch_cpu_matches_the_native_electric_piano \
  torch_cpu_matches_the_native_bell torch_cpu_matches_the_native_shimmer \
  chunks_past_the_notes_are_silent_and_memory_is_bounded_by_the_batch \
  torch_routed_stations_sound_like_native_ones torch_cpu_starts_the_engine_and_reports_its_memory; do
  grep -q "$t ... ok" "$log" || { echo "test-torch: $t did not run and pass" >&2; exit 1; }
done
step "cargo test -p synthd --features torch --test torch_no_alloc (a torch tick allocates nothing)"
cargo test -p synthd --features torch --locked --test torch_no_alloc -- --nocapture 2>&1 | tee "$log"
grep -q "a_torch_tick_of_several_stations_never_allocates ... ok" "$log" || {
  echo "test-torch: a_torch_tick_of_several_stations_never_allocates did not run and pass" >&2
  exit 1
}
rm -f "$log"
# The GPU bench is type-checked by clippy --all-targets above; its release build (~5 min of
# libtorch C++ in release mode) is left to whoever runs it on a GPU machine.
step "torch backend done"
