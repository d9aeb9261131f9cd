#!/usr/bin/env bash
# One short GPU check (a few minutes on one H100/H200-class GPU), run from anywhere:
#
#   bash bench/gpu_check.sh
#
#   (c) versions of the stack and the GPU
#   (a) bench/mos_vs_lora.py on CUDA in bf16 with a random-init Llama-3.2-1B-shaped model:
#       a throughput-bound shape (batch 8 x 1024), the same with gradient checkpointing, and a launch-bound
#       one (batch 1 x 256); prints the MoS/LoRA ratios. torch.profiler tables of the first shape go to a log.
#   (b) tests/test_gpu_qlora.py (-m gpu, through bench/gpu_qlora_check.py): every method's training steps on a
#       bitsandbytes NF4 (QLoRA) base, loss finite and falling, export_lora, exported LoRA vs the method's logits.
#
# Python packages missing on the machine (bitsandbytes, or another peft) can be put as wheels in .whl/ at the
# repository root; on a CUDA machine they are installed into /tmp/site first. Logs go to $OUT (default /tmp/gpu_check).
# Each benchmark run is capped at BENCH_TIMEOUT seconds (default 120), the 4-bit check at QLORA_TIMEOUT (300).
# Without CUDA every GPU part is skipped with a SKIP line; CPU_DRY_RUN=1 runs (a) on the tiny model and (b) on an
# unquantized CPU base (the test file's cpu cases) instead, to test this script. Exit status: 0 if every part that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_ADVISORY_WARNINGS=1
PY=${PYTHON:-python3}  # the device image's python3 holds torch; here, fall back to the project's venv
if [ -z "${PYTHON:-}" ] && ! "$PY" -c "import torch" 2>/dev/null && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
OUTDIR=${OUT:-/tmp/gpu_check}
mkdir -p "$OUTDIR"
status=0

has_cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$has_cuda" = 1 ] && compgen -G ".whl/*.whl" >/dev/null; then  # only on the GPU machine
    echo "== installing carried wheels: $(cd .whl && echo ./*.whl)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "FAIL: wheel install"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

echo "== (c) versions"
"$PY" bench/gpu_qlora_check.py --versions || status=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader


bench() {  # bench NAME ARGS...: run mos_vs_lora.py, full log to $OUTDIR/NAME.log, table to stdout
    local name=$1; shift
    echo "-- $name: $*"
    timeout "${BENCH_TIMEOUT:-120}" "$PY" bench/mos_vs_lora.py "$@" --json "$OUTDIR/$name.json" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    grep -v -E "USDT|Loading weights|^\[W" "$OUTDIR/$name.log" | sed -n '/^ *MoS  *LoRA/,$p' | grep -v -E "^-{3}|^ *$" \
        | sed -n '1,12p'
    [ $rc -eq 0 ] || { echo "FAIL: $name exited $rc (log: $OUTDIR/$name.log)"; tail -20 "$OUTDIR/$name.log"; status=1; }
}

echo "== (a) MoS vs LoRA step time / peak memory"
if [ "$has_cuda" = 1 ]; then
    common=(--device cuda --dtype bfloat16 --synthetic-llama 1b --r 8 --e 2 --p 1 --c 4 --warmup 3)
    bench bench_1b_b8_s1024 "${common[@]}" --batch-size 8 --seq-len 1024 --steps 20 --profile 3
    bench bench_1b_b8_s1024_gc "${common[@]}" --batch-size 8 --seq-len 1024 --steps 12 --grad-checkpointing
    bench bench_1b_b1_s256 "${common[@]}" --batch-size 1 --seq-len 256 --steps 30
    echo "-- profile of bench_1b_b8_s1024 (MoS − LoRA by op, ms/step):"
    sed -n '/^--- self .* time per step/,$p' "$OUTDIR/bench_1b_b8_s1024.log" | sed -n '1,24p'
elif [ "${CPU_DRY_RUN:-0}" = 1 ]; then
    bench bench_tiny_cpu --device cpu --model tiny --batch-size 1 --seq-len 32 --steps 2 --warmup 1
else
    echo "SKIP (a): no CUDA device (CPU_DRY_RUN=1 runs it on the tiny model)"
fi

echo "== (b) every method on a 4-bit NF4 base (QLoRA)"
if [ "$has_cuda" = 1 ]; then
    timeout "${QLORA_TIMEOUT:-300}" "$PY" bench/gpu_qlora_check.py 2>&1 | tee "$OUTDIR/qlora.log" | grep -v -E "USDT|Loading weights|Writing model|warnings.warn|FutureWarning|real_accelerator"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL: qlora check"; status=1; }
elif [ "${CPU_DRY_RUN:-0}" = 1 ]; then
    "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_qlora.py -k cpu 2>&1 \
        | tee "$OUTDIR/qlora.log" | tail -3
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL: qlora dry run"; status=1; }
else
    echo "SKIP (b): no CUDA device (CPU_DRY_RUN=1 runs it unquantized on the CPU)"
fi

echo "== summary"
for f in "$OUTDIR"/bench_*.log; do
    [ -e "$f" ] && echo "$(basename "$f" .log): $(grep -h "^RATIO" "$f" || echo "no RATIO line")"
done
grep -h "^QLORA_CHECK" "$OUTDIR/qlora.log" 2>/dev/null || true
echo "GPU_CHECK $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
