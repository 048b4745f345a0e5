#!/usr/bin/env bash
# All 18 runs of run.py, two at a time (one torch thread each), seed 0's six runs first, then
# seed 1's, then seed 2's; logs in runs/*.log. ebrl runs from a snapshot of the committed code
# (runs/src, on PYTHONPATH) so that edits to the checkout during the queue change no run.
# Run from the repository root: nohup nice -n 10 bash experiments/sac_mujoco/queue.sh &
set -euo pipefail
here=experiments/sac_mujoco
python=${PYTHON:-/work/benchenv/bin/python}
mkdir -p "$here/runs/src"
git archive HEAD ebrl | tar -x -C "$here/runs/src"
git rev-parse HEAD > "$here/runs/src/COMMIT"
export PYTHONPATH="$PWD/$here/runs/src"
for seed in 0 1 2; do
  for env in HalfCheetah-v5 Hopper-v5; do
    for agent in energy plain sb3; do
      [ -f "$here/runs/${agent}_${env}_s${seed}.json" ] && continue  # finished before
      echo "$python $here/run.py --agent $agent --env $env --seed $seed > $here/runs/${agent}_${env}_s${seed}.log 2>&1"
    done
  done
done | xargs -P 2 -I{} bash -c '{}'
