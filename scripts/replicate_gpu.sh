#!/usr/bin/env bash
# The replication grid on one lent GPU, as one prepared script: larger runs (setting "gpu"), 8 at a time.
# Needs the repository's environment (torch with CUDA) and network-free data prepared beforehand on the CPU
# machine (`python -m replication prepare`, `bash scripts/prepare_eval_data.sh`, the converted model);
# carry data/replication, data/eval/mmlu and models/ to the GPU machine. Results land in
# results/replication/gpu/ (copy them back and commit).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use scripts/replicate.sh')"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHON
"$PYTHON" -m replication run --setting gpu --parallel "${PARALLEL:-8}" --threads 2 "$@"
"$PYTHON" -m replication report --setting gpu
