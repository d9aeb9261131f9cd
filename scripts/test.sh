#!/usr/bin/env bash
# The project's test command: bootstrap .venv if needed, then run the whole suite.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh tests/mos -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
