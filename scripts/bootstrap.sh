#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the pinned stack + the project.
# Idempotent: a second run only checks that the installed set still matches requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.requirements.sha"
want=$(cat requirements.txt requirements-gpu.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing pinned requirements (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
  # DeepSpeed (a GPU extra) installs on the CPU without building its ops; the test suite runs ZeRO-2 with it.
  DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$(grep '^deepspeed==' requirements-gpu.txt)"
  # lm-eval: an independent consumer of the exported LoRA adapters in the tests.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
else
  echo "[bootstrap] reusing $VENV (requirements unchanged)"
fi
