#!/usr/bin/env bash
# The replication experiment (issue: does MoS match LoRA at the same budget, and approach LoRA r=8e?), resumable.
#
#   bash scripts/replicate.sh                 # CPU grid (SmolLM2-135M): about a day of CPU; stop and rerun at will
#   PARALLEL=2 THREADS=1 bash scripts/replicate.sh   # the default on 2 cores: two runs of one thread each
#   SETTING=gpu PARALLEL=8 bash scripts/replicate.sh      # same grid, larger runs, 8 at once on one GPU
#   bash scripts/replicate.sh --stages regime lr          # only some stages (extra args go to `run`)
#
# Every finished run appends one row to results/replication/<setting>/runs.csv (commit it); a rerun skips the
# rows already there and resumes an interrupted training from its last checkpoint. Tables and the plot:
# results/replication/<setting>/tables.md and score_vs_params.png. See `python -m replication --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
SETTING=${SETTING:-cpu}
if [ "${SKIP_BOOTSTRAP:-0}" != 1 ]; then bash scripts/bootstrap.sh; PYTHON=$PWD/.venv/bin/python; fi
PYTHON=${PYTHON:-python}
export PYTHON HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_ADVISORY_WARNINGS=1
MODEL=${MODEL:-models/smollm2-135m-instruct}
[ -f "$MODEL/config.json" ] || "$PYTHON" -m open_instruct.models fetch-smollm2 --out "$MODEL"
[ -d data/eval/mmlu/test ] || bash scripts/prepare_eval_data.sh
"$PYTHON" -m replication prepare --setting "$SETTING"
# One thread per run, as many runs as cores (and 4 GiB of free memory each): on 2 cores two 1-thread runs train at
# 3.6 s/step each, one 2-thread run at 3.6 s/step alone (measured, SmolLM2-135M, batch 4 x 160).
if [ -z "${PARALLEL:-}" ]; then
  mem_runs=$(awk '/MemAvailable/ {print int($2 / 4194304)}' /proc/meminfo 2>/dev/null || echo 1)
  PARALLEL=$(( $(nproc) < mem_runs ? $(nproc) : mem_runs )); [ "$PARALLEL" -ge 1 ] || PARALLEL=1
fi
"$PYTHON" -m replication run --setting "$SETTING" --model "$MODEL" --parallel "$PARALLEL" \
  --threads "${THREADS:-1}" "$@"
"$PYTHON" -m replication report --setting "$SETTING"
