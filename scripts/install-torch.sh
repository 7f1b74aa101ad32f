#!/usr/bin/env bash
# Installs PyTorch 2.11.0 from PyPI into a cached virtualenv outside the repository, for building
# synthd's torch backend (`--features torch`; tch 0.24 is the release for PyTorch 2.11.0, see
# shared/GPU.md). Idempotent: does nothing when the venv is there and `import torch` gives 2.11.0.
# The wheel is about 4.6 GB with its CUDA libraries (~2 min); on a machine without a GPU libtorch
# simply runs on the CPU. Prints the environment to export.
#   ./scripts/install-torch.sh                   # install (or check) and print the exports
#   eval "$(./scripts/install-torch.sh --env)"   # install quietly and export into this shell
set -euo pipefail
VERSION=2.11.0
VENV="${AURALIS_TORCH_VENV:-$HOME/.cache/auralis/torch-$VERSION}"
quiet=""; [[ "${1:-}" == "--env" ]] && quiet=1
log() { [[ -n "$quiet" ]] && echo "$*" >&2 || echo "$*"; }

have() {
  [[ -x "$VENV/bin/python" ]] &&
    [[ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" == "$VERSION" ]]
}

if have; then
  log "PyTorch $VERSION already in $VENV"
else
  log "installing PyTorch $VERSION into $VENV (about 4.6 GB, a few minutes)"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "torch==$VERSION" >&2
  have || { echo "install-torch: torch $VERSION is not importable from $VENV" >&2; exit 1; }
fi

lib="$("$VENV/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")' 2>/dev/null)"
exports="export VIRTUAL_ENV=$VENV
export PATH=$VENV/bin:\$PATH
export LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH=$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
if [[ -n "$quiet" ]]; then
  echo "$exports"
else
  echo "# export these to build and run synthd with --features torch:"
  echo "$exports"
fi
