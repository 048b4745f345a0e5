#!/usr/bin/env bash
# Sets up an environment for ebrl: uses the active virtualenv if there is one, else ./.venv.
# Installs the CPU build of torch 2.13.0 only where no torch is installed (an existing torch,
# CUDA or not, is kept), then ebrl itself (editable) with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
fi

if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  # torch==2.13.0 is a local CPU wheel on our machines; elsewhere fall back to PyTorch's CPU index
  # (plain `pip install torch` would pull a multi-GB CUDA build).
  "$PY" -m pip install --quiet "torch==2.13.0" \
    || "$PY" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install --quiet -e ".[dev]"
echo "setup: ok ($("$PY" -c 'import torch, gymnasium; print("torch", torch.__version__, "gymnasium", gymnasium.__version__)'))"
