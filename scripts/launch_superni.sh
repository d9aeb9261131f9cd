#!/usr/bin/env bash
# Shared body of the ft_*_superni_mmlu.sh launchers: train with MoS (or a baseline) on SuperNI, then evaluate
# MMLU (0-shot, chat format) and TyDiQA (1-shot, gold passage) on the run's adapter.
# The top-level launchers set MODEL_DEFAULT, RUN_PREFIX, MMLU_BATCH_SIZE and TRAIN_LENGTH_ARGS, then source this.

usage() {
  cat >&2 <<USAGE
usage: bash $(basename "$0") lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \\
                              init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec

  lora_r                 rank r of the materialised adapter (e.g. 8)
  seed                   random seed (e.g. 0)
  GPU_ID                 CUDA device(s), e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES; ignored without GPUs)
  learning_rate          e.g. 2e-4
  finetune_mode          mos | lora | vera | tied_lora | prolora
  init_lora_A_vec_value  mean of the frozen per-rank scaling vector (1 in the paper; MoS only)
  init_lora_A_vec_std    its std (0 in the paper; MoS only)
  valid_param_private_r  p, private ranks per layer (prolora: u, unshared ranks)
  valid_param_lora_r     e, parameter-equivalent rank (MoS only)
  num_chunk_per_vec      c, shards per rank vector (prolora: m = n, chunk copies along in / out)

What each finetune_mode reads (the others are recorded in the run name and ignored):
$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && "${PYTHON:-python}" -m open_instruct.methods 2>/dev/null \
  || echo "  (python -m open_instruct.methods lists it)")
Every mode leaves a plain LoRA adapter in the run directory (exported exactly), so evaluation is the same.

example (the original's example run: r=16, e=4, p=2, c=4, lr 2e-4):  bash $(basename "$0") 16 0 0 2e-4 mos 1 0 2 4 4
baselines at about the same budget (python -m open_instruct.param_table --model llama2-7b prints the counts):
  bash $(basename "$0") 2 0 0 2e-4 lora 1 0 0 1 1        bash $(basename "$0") 256 0 0 2e-4 vera 1 0 0 1 1
  bash $(basename "$0") 8 0 0 2e-4 prolora 1 0 0 1 4    bash $(basename "$0") 46 0 0 2e-4 tied_lora 1 0 0 1 1

Environment overrides (defaults = the paper's settings):
  MODEL=$MODEL_DEFAULT   TRAIN_FILE=data/processed/super_ni/super_ni_data.jsonl
  EVAL_DATA_DIR=data/eval (mmlu/ and tydiqa/ inside)   OUTPUT_ROOT=./output
  MAX_STEPS=10000   BATCH_SIZE=16   MAX_SEQ_LENGTH=512   NUM_GPUS=(count of GPU_ID; 0 without CUDA)
  USE_QLORA=1 on GPU / 0 on CPU   CHAT_FORMAT=tulu|tokenizer   EVAL_BATCH_SIZE   SKIP_EVAL=0
  EXTRA_ARGS="..." (more finetune_trainer.py flags)   MMLU_ARGS="..." / TYDIQA_ARGS="..." (more eval flags)
  PYTHON=python
USAGE
  exit 2
}

die() { echo "error: $*" >&2; exit 2; }

[ "$#" -eq 10 ] || { [ "$#" -gt 0 ] && echo "error: expected 10 arguments, got $#" >&2; usage; }
lora_r=$1; seed=$2; GPU=$3; lr=$4; mode=$5; vec_value=$6; vec_std=$7; private_r=$8; valid_r=$9; chunk=${10}

is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_num() { [[ "$1" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]]; }
is_int "$lora_r" && [ "$lora_r" -gt 0 ] || die "lora_r must be a positive integer, got '$lora_r'"
is_int "$seed" || die "seed must be a non-negative integer, got '$seed'"
[[ "$GPU" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "GPU_ID must look like 0 or 0,1, got '$GPU'"
is_num "$lr" || die "learning_rate must be a number like 2e-4, got '$lr'"
case "$mode" in mos|lora|vera|tied_lora|prolora) ;;
  *) die "finetune_mode must be one of mos, lora, vera, tied_lora, prolora; got '$mode'";; esac
is_num "$vec_value" || die "init_lora_A_vec_value must be a number, got '$vec_value'"
is_num "$vec_std" || die "init_lora_A_vec_std must be a number >= 0, got '$vec_std'"
is_int "$private_r" || die "valid_param_private_r must be an integer >= 0, got '$private_r'"
is_int "$valid_r" && [ "$valid_r" -gt 0 ] || die "valid_param_lora_r must be a positive integer, got '$valid_r'"
is_int "$chunk" && [ "$chunk" -gt 0 ] || die "num_chunk_per_vec must be a positive integer, got '$chunk'"

cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
MODEL=${MODEL:-$MODEL_DEFAULT}
TRAIN_FILE=${TRAIN_FILE:-data/processed/super_ni/super_ni_data.jsonl}
EVAL_DATA_DIR=${EVAL_DATA_DIR:-data/eval}
OUTPUT_ROOT=${OUTPUT_ROOT:-./output}
BATCH_SIZE=${BATCH_SIZE:-16}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-512}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-$MMLU_BATCH_SIZE}
CHAT_FORMAT=${CHAT_FORMAT:-tulu}
case "$CHAT_FORMAT" in
  tulu) CHAT_FN=eval.templates.create_prompt_with_tulu_chat_format ;;
  tokenizer) CHAT_FN=eval.templates.create_prompt_with_tokenizer_chat_template ;;
  *) die "CHAT_FORMAT must be tulu or tokenizer, got '$CHAT_FORMAT'" ;;
esac
[ -f "$TRAIN_FILE" ] || die "TRAIN_FILE $TRAIN_FILE not found: run scripts/prepare_train_data.sh or set TRAIN_FILE"

export CUDA_VISIBLE_DEVICES=$GPU
HAS_CUDA=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null) \
  || die "cannot import torch with PYTHON=$PYTHON; activate the project's environment (bash scripts/bootstrap.sh)"
if [ "$HAS_CUDA" = 1 ]; then
  NUM_GPUS=${NUM_GPUS:-$(awk -F, '{print NF}' <<<"$GPU")}
  USE_QLORA=${USE_QLORA:-1}
  DEVICE_ARGS="--torch_dtype bfloat16 --bf16 True --tf32 True --gradient_checkpointing True"
  EVAL_DEVICE_ARGS="--load_in_8bit"
  PREPROCESSING_WORKERS=${PREPROCESSING_WORKERS:-16}
else
  NUM_GPUS=0
  USE_QLORA=${USE_QLORA:-0}
  DEVICE_ARGS="--torch_dtype float32 --use_cpu True"
  EVAL_DEVICE_ARGS=""
  PREPROCESSING_WORKERS=${PREPROCESSING_WORKERS:-1}
  echo "[launcher] no CUDA device: training on the CPU in float32 without 4-bit quantization" >&2
fi
[ "$USE_QLORA" = 1 ] && QLORA=True || QLORA=False

TIME=$(date +%Y%m%d-%H%M%S)
out="${OUTPUT_ROOT}/${RUN_PREFIX}_${TIME}_GPU_${GPU}_r_${lora_r}_lr_${lr}_sd_${seed}_ft_mode_${mode}_init_lora_A_vec_value_${vec_value}_init_lora_A_vec_std_${vec_std}_valid_param_private_r_${private_r}_valid_param_lora_r_${valid_r}_num_chunk_${chunk}"
mkdir -p "$out"
echo "[launcher] output: $out"

if [ "${NUM_GPUS}" -gt 1 ]; then
  RUN=("$PYTHON" -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG:-configs/accelerate/multi_gpu.yaml}" --num_processes "$NUM_GPUS" open_instruct/finetune_trainer.py)
else
  RUN=("$PYTHON" open_instruct/finetune_trainer.py)
fi

# shellcheck disable=SC2086
"${RUN[@]}" \
  --model_name_or_path "$MODEL" --train_file "$TRAIN_FILE" --max_seq_length "$MAX_SEQ_LENGTH" \
  --use_lora True --use_qlora "$QLORA" --enable_lora_vec True --lora_alpha 16 --lora_dropout 0.1 \
  --enable_lora_rotation True --enable_lora_bias False --init2zero_via_vec False --lora_modules all \
  --ft_mode "$mode" --lora_r "$lora_r" --init_lora_A_vec_value "$vec_value" --init_lora_A_vec_std "$vec_std" \
  --valid_param_private_r "$private_r" --valid_param_lora_r "$valid_r" --num_chunk_per_vec "$chunk" \
  --chat_format "$CHAT_FORMAT" $DEVICE_ARGS \
  --use_fast_tokenizer False --preprocessing_num_workers "$PREPROCESSING_WORKERS" --group_by_length True \
  --remove_unused_columns True --optim paged_adamw_32bit --lr_scheduler_type linear --warmup_ratio 0.03 \
  --per_device_train_batch_size "$BATCH_SIZE" --gradient_accumulation_steps 1 $TRAIN_LENGTH_ARGS \
  --learning_rate "$lr" --weight_decay 0.0 --max_grad_norm 0.3 --seed "$seed" \
  --do_eval True --max_eval_samples "${MAX_EVAL_SAMPLES:-1024}" --eval_strategy steps \
  --eval_steps "${EVAL_STEPS:-1000}" --per_device_eval_batch_size "$BATCH_SIZE" \
  --logging_steps "${LOGGING_STEPS:-10}" --save_steps "${SAVE_STEPS:-1000}" --save_total_limit 1 \
  --report_to "${REPORT_TO:-tensorboard}" --output_dir "$out" --resume_from_checkpoint auto ${EXTRA_ARGS:-} \
  || die "training failed (see $out/run.log); rerun the same command with OUTPUT_ROOT and EXTRA_ARGS=\"--output_dir $out\" to resume"

[ "${SKIP_EVAL:-0}" = 1 ] && { echo "[launcher] SKIP_EVAL=1: done, outputs in $out"; exit 0; }

# shellcheck disable=SC2086
"$PYTHON" -m eval.mmlu.run_eval --ntrain 0 --data_dir "$EVAL_DATA_DIR/mmlu" --save_dir "$out/mmlu_results" \
  --model_name_or_path "$MODEL" --tokenizer_name_or_path "$MODEL" --adapter_path "$out" \
  --eval_batch_size "$EVAL_BATCH_SIZE" --use_slow_tokenizer $EVAL_DEVICE_ARGS \
  --use_chat_format --chat_formatting_function "$CHAT_FN" ${MMLU_ARGS:-} \
  || die "MMLU evaluation failed; the trained adapter is in $out"

# shellcheck disable=SC2086
"$PYTHON" -m eval.tydiqa.run_eval --data_dir "$EVAL_DATA_DIR/tydiqa" --save_dir "$out/tydiqa_results" \
  --n_shot 1 --max_context_length 512 \
  --model_name_or_path "$MODEL" --tokenizer_name_or_path "$MODEL" --adapter_path "$out" \
  --eval_batch_size "$EVAL_BATCH_SIZE" --use_slow_tokenizer $EVAL_DEVICE_ARGS ${USE_VLLM:+--use_vllm} \
  --use_chat_format --chat_formatting_function "$CHAT_FN" ${TYDIQA_ARGS:-} \
  || die "TyDiQA evaluation failed; the trained adapter is in $out"

echo "[launcher] done: $out"
