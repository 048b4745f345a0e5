#!/usr/bin/env bash
# The speed benchmarks on a CUDA device, in one command: the CUDA tests first, then the same
# tables as on the CPU (samplers, SAC, SoftQ), written to scripts/results/*_cuda.md.
# Needs a CUDA build of torch in the environment and the bench extra (stable-baselines3):
#   pip install -e ".[bench]"
# Usage: scripts/bench_gpu.sh [python]     (default: .venv/bin/python, else python)
# The whole run should take ~17 minutes on an H200 host (estimated from the trimmed runs in
# scripts/results/gpu_h200.md); for a short lease, REPEATS=1 scripts/bench_gpu.sh runs each
# training table once (~10 minutes there, estimated). STEPS sets the training runs' length.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
STEPS=${STEPS:-10000}
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    'bench_gpu: no CUDA device (torch ' + torch.__version__ + ')')"
"$PY" -m pytest -q tests/test_cuda.py tests/test_anchored.py -k cuda
"$PY" scripts/bench_samplers.py --device cuda --threads 1 --repeats "${REPEATS_SAMPLERS:-7}" \
    --out scripts/results/bench_samplers_cuda.md
"$PY" scripts/bench_sac.py --device cuda --steps "$STEPS" --repeats "${REPEATS:-2}"
"$PY" scripts/bench_softq.py --device cuda --steps "$STEPS" --repeats "${REPEATS:-3}"
