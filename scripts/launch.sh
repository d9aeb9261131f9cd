#!/usr/bin/env bash
# Shared body of the ft_*.sh launchers: train with MoS (or a baseline), then run the task's evaluations on the
# run's adapter. The top-level launchers set TASK (superni | flan_v2 | cot | code), MODEL_DEFAULT, RUN_PREFIX,
# EVAL_BATCH_SIZE_DEFAULT and TRAIN_LENGTH_ARGS, then source this file. The training part is the same for
# every task; what each task trains on and how it is evaluated is in scripts/launch_tasks.sh.
#
# Run directories are never shared or reused by accident: each launch creates a new one exclusively, a resume
# (RUN_DIR=<run dir>) trains and evaluates in exactly that directory, and a run marked `completed` is refused.

LAUNCHER_DIR=$(cd "$(dirname "$0")" && pwd)
LAUNCHER_NAME=$(basename "$0")
# shellcheck source=scripts/launch_tasks.sh
source "$LAUNCHER_DIR/scripts/launch_tasks.sh"
task_setup "$TASK"

usage() {
  cat >&2 <<USAGE
usage: bash $LAUNCHER_NAME lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \\
                              init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec

$TASK_DESCRIPTION

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

example (the original's example run: r=16, e=4, p=2, c=4, lr 2e-4):  bash $LAUNCHER_NAME 16 0 0 2e-4 mos 1 0 2 4 4
baselines at about the same budget (python -m open_instruct.param_table --model llama2-7b prints the counts):
  bash $LAUNCHER_NAME 2 0 0 2e-4 lora 1 0 0 1 1        bash $LAUNCHER_NAME 256 0 0 2e-4 vera 1 0 0 1 1
  bash $LAUNCHER_NAME 8 0 0 2e-4 prolora 1 0 0 1 4    bash $LAUNCHER_NAME 46 0 0 2e-4 tied_lora 1 0 0 1 1

Environment overrides (defaults = the paper's settings; relative paths are taken from the current directory):
  MODEL=$MODEL_DEFAULT   TRAIN_FILE=$TRAIN_FILE_DEFAULT
  EVAL_DATA_DIR=data/eval ($TASK_EVAL_DATA inside)   OUTPUT_ROOT=./output (of the repository)
  MAX_STEPS=10000   BATCH_SIZE=16   MAX_SEQ_LENGTH=512   MAX_EVAL_SAMPLES=1024 (held-out examples; a file
  too small for them holds out 10% instead)   EVAL_STEPS=1000   SAVE_STEPS=1000   LOGGING_STEPS=10
  NUM_GPUS=(count of GPU_ID; 0 without CUDA)   USE_QLORA=1 on GPU / 0 on CPU   CHAT_FORMAT=tulu|tokenizer
  TRAIN_FORMAT=auto|instruction|text (text: continued pretraining on {"text": ...} JSONL, loss on every token)
  PACKING=0|1 (1: padding-free batches, exact)   PRECISION=bf16|fp32 (default: bf16 on GPU, fp32 on CPU)
  EVAL_BATCH_SIZE=$EVAL_BATCH_SIZE_DEFAULT   USE_VLLM=0|1   SKIP_EVAL=0|1   PYTHON=python   REPORT_TO=tensorboard
  EXTRA_ARGS="..." (more finetune_trainer.py flags)   $TASK_EXTRA_ENV
Runs:
  RUN_DIR=<run dir>   resume an interrupted run in that directory (same arguments; a completed run is refused)
  SIGTERM / SIGUSR1   (preemption) the launcher passes it on: training saves a checkpoint and stops, the launcher
                      prints the resume command and exits with 75; an evaluation stops and keeps finished parts
  NUM_MACHINES=1  MACHINE_RANK=0  MAIN_PROCESS_IP=  MAIN_PROCESS_PORT=29500   several machines (accelerate's
                      multi-machine launch; one launch per machine, all with the same RUN_DIR on a shared
                      filesystem; machine 0 evaluates). scripts/slurm/train.sbatch sets them from SLURM
  EVAL_ONLY=1         with RUN_DIR: run only the evaluations whose metrics.json is missing (completed runs)
  DRY_RUN=1           print the training and evaluation commands, create nothing
USAGE
  exit 2
}

die() { echo "error: $*" >&2; exit 2; }

[ "$#" -eq 10 ] || { [ "$#" -gt 0 ] && echo "error: expected 10 arguments, got $#" >&2; usage; }
lora_r=$1; seed=$2; GPU=$3; lr=$4; mode=$5; vec_value=$6; vec_std=$7; private_r=$8; valid_r=$9; chunk=${10}
ARGS=("$@")

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

# Environment overrides: checked before anything runs, one line naming the variable when one is wrong.
env_int() {  # env_int NAME DEFAULT MIN: the variable as an integer >= MIN, else exit 2
  local name=$1 value=${!1:-$2}
  is_int "$value" && [ "$value" -ge "$3" ] || die "$name must be an integer >= $3, got '$value'"
  printf -v "$name" '%s' "$value"
}
env_flag() {  # env_flag NAME DEFAULT: 0 or 1
  local name=$1 value=${!1:-$2}
  [[ "$value" =~ ^[01]$ ]] || die "$name must be 0 or 1, got '$value'"
  printf -v "$name" '%s' "$value"
}
env_int BATCH_SIZE 16 1; env_int MAX_SEQ_LENGTH 512 1; env_int MAX_EVAL_SAMPLES 1024 0
env_int EVAL_STEPS 1000 1; env_int SAVE_STEPS 1000 1; env_int LOGGING_STEPS 10 1
env_int EVAL_BATCH_SIZE "$EVAL_BATCH_SIZE_DEFAULT" 1
[ -z "${MAX_STEPS:-}" ] || env_int MAX_STEPS "" 1
[ -z "${NUM_GPUS:-}" ] || env_int NUM_GPUS "" 0
[ -z "${PREPROCESSING_WORKERS:-}" ] || env_int PREPROCESSING_WORKERS "" 1
[ -z "${USE_QLORA:-}" ] || env_flag USE_QLORA ""
env_flag SKIP_EVAL 0; env_flag EVAL_ONLY 0; env_flag DRY_RUN 0; env_flag USE_VLLM 0
env_flag PACKING 0
env_int NUM_MACHINES 1 1; env_int MACHINE_RANK 0 0; env_int MAIN_PROCESS_PORT 29500 1
[ "$MACHINE_RANK" -lt "$NUM_MACHINES" ] || die "MACHINE_RANK must be below NUM_MACHINES ($NUM_MACHINES), got $MACHINE_RANK"
if [ "$NUM_MACHINES" -gt 1 ]; then
  [ -n "${MAIN_PROCESS_IP:-}" ] || die "NUM_MACHINES=$NUM_MACHINES needs MAIN_PROCESS_IP (the address of machine 0)"
  [ -n "${RUN_DIR:-}" ] || die "NUM_MACHINES=$NUM_MACHINES needs RUN_DIR=<run dir>, one directory on a filesystem all machines share (create it first)"
fi
TRAIN_FORMAT=${TRAIN_FORMAT:-auto}
case "$TRAIN_FORMAT" in auto|instruction|text) ;;
  *) die "TRAIN_FORMAT must be auto, instruction or text, got '$TRAIN_FORMAT'" ;; esac
case "${PRECISION:-}" in ""|fp32|bf16) ;; *) die "PRECISION must be fp32 or bf16, got '$PRECISION'" ;; esac
CHAT_FORMAT=${CHAT_FORMAT:-tulu}
case "$CHAT_FORMAT" in
  tulu) CHAT_FN=eval.templates.create_prompt_with_tulu_chat_format ;;
  tokenizer) CHAT_FN=eval.templates.create_prompt_with_tokenizer_chat_template ;;
  *) die "CHAT_FORMAT must be tulu or tokenizer, got '$CHAT_FORMAT'" ;;
esac

# Paths given by the caller are relative to the caller's directory; the defaults to the repository.
abspath() {  # absolute and normalised (./ and ../ resolved, symlinks kept); ~/ is the home directory
  local p=$1
  case "$p" in "~"/*) p="$HOME/${p#\~/}" ;; /*) ;; *) p="$PWD/$p" ;; esac
  realpath -ms -- "$p" 2>/dev/null || printf '%s' "$p"
}
looks_like_path() { [[ "$1" == /* || "$1" == .* || "$1" == "~"* || -e "$1" || "$1" == */*/* ]]; }
if [ -n "${MODEL:-}" ] && looks_like_path "$MODEL"; then
  MODEL=$(abspath "$MODEL")
  [ -d "$MODEL" ] || die "MODEL $MODEL is not a directory; give a model directory (config.json + weights) or a hub id like $MODEL_DEFAULT"
fi
for var in TRAIN_FILE EVAL_DATA_DIR OUTPUT_ROOT RUN_DIR ACCELERATE_CONFIG; do
  [ -z "${!var:-}" ] || printf -v "$var" '%s' "$(abspath "${!var}")"
done
if [ -n "${PYTHON:-}" ] && [[ "$PYTHON" == */* ]]; then PYTHON=$(abspath "$PYTHON"); fi

# EXTRA_ARGS is split into words (no globbing). The old resume recipe, EXTRA_ARGS="--output_dir DIR", means RUN_DIR=DIR.
read -r -a EXTRA <<<"${EXTRA_ARGS:-}"
KEEP=()
for ((i = 0; i < ${#EXTRA[@]}; i++)); do
  case "${EXTRA[i]}" in
    --output_dir) [ $((i + 1)) -lt ${#EXTRA[@]} ] || die "EXTRA_ARGS: --output_dir needs a directory"
                  RUN_DIR=$(abspath "${EXTRA[i + 1]}"); i=$((i + 1)) ;;
    --output_dir=*) RUN_DIR=$(abspath "${EXTRA[i]#--output_dir=}") ;;
    --overwrite_output_dir*) die "EXTRA_ARGS: the launcher never overwrites a run; start a new run (leave RUN_DIR unset)" ;;
    *) KEEP+=("${EXTRA[i]}") ;;
  esac
done
EXTRA=("${KEEP[@]+"${KEEP[@]}"}")
[ "$EVAL_ONLY" = 0 ] || [ -n "${RUN_DIR:-}" ] || die "EVAL_ONLY=1 needs RUN_DIR=<run dir> (the run to evaluate)"

cd "$LAUNCHER_DIR"
PYTHON=${PYTHON:-python}
MODEL=${MODEL:-$MODEL_DEFAULT}
TRAIN_FILE=${TRAIN_FILE:-$TRAIN_FILE_DEFAULT}
EVAL_DATA_DIR=${EVAL_DATA_DIR:-data/eval}
OUTPUT_ROOT=${OUTPUT_ROOT:-$LAUNCHER_DIR/output}
[ "$EVAL_ONLY" = 1 ] || [ -f "$TRAIN_FILE" ] \
  || die "TRAIN_FILE $TRAIN_FILE not found: run scripts/prepare_train_data.sh $TASK_DATASET or set TRAIN_FILE"
if [ "$SKIP_EVAL" = 0 ]; then  # found out now, not after hours of training
  for needed in $(task_eval_inputs); do
    [ -e "$needed" ] || die "evaluation data $needed not found: run scripts/prepare_eval_data.sh, set EVAL_DATA_DIR, or SKIP_EVAL=1"
  done
fi

export CUDA_VISIBLE_DEVICES=$GPU
HAS_CUDA=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null) \
  || die "cannot import torch with PYTHON=$PYTHON; activate the project's environment (bash scripts/bootstrap.sh)"
if [ "$HAS_CUDA" = 1 ]; then
  NUM_GPUS=${NUM_GPUS:-$(awk -F, '{print NF}' <<<"$GPU")}
  USE_QLORA=${USE_QLORA:-1}
  if [ "${PRECISION:-bf16}" = bf16 ]; then DEVICE_ARGS=(--torch_dtype bfloat16 --bf16 True)
  else DEVICE_ARGS=(--torch_dtype float32 --bf16 False); fi
  DEVICE_ARGS+=(--tf32 True --gradient_checkpointing True)
  EVAL_DEVICE_ARGS=(--load_in_8bit)
  PREPROCESSING_WORKERS=${PREPROCESSING_WORKERS:-16}
else
  NUM_GPUS=0
  USE_QLORA=${USE_QLORA:-0}
  PREPROCESSING_WORKERS=${PREPROCESSING_WORKERS:-1}
  if [ "${PRECISION:-fp32}" = bf16 ]; then
    # As on a GPU: frozen base weights in bfloat16, the trainable adapter in float32, autocast to bfloat16.
    DEVICE_ARGS=(--torch_dtype bfloat16 --use_cpu True --bf16 True)
    EVAL_DEVICE_ARGS=(--torch_dtype bfloat16)
    echo "[launcher] no CUDA device: training and evaluating on the CPU in bfloat16 (adapter weights float32)" >&2
    grep -qsE 'avx512_bf16|amx_bf16' /proc/cpuinfo \
      || echo "[launcher] warning: this CPU has no native bfloat16 (avx512_bf16/AMX): PRECISION=bf16 is far slower" \
              "here than PRECISION=fp32" >&2
  else
    DEVICE_ARGS=(--torch_dtype float32 --use_cpu True)
    EVAL_DEVICE_ARGS=()
    echo "[launcher] no CUDA device: training on the CPU in float32 without 4-bit quantization" >&2
  fi
fi
[ "$USE_QLORA" = 1 ] && QLORA=True || QLORA=False
VLLM_ARGS=(); [ "$USE_VLLM" = 0 ] || VLLM_ARGS=(--use_vllm)
DATA_ARGS=()  # only what differs from the trainer's defaults, so the default command stays the original's
[ "$TRAIN_FORMAT" = auto ] || DATA_ARGS+=(--train_format "$TRAIN_FORMAT")
[ "$PACKING" = 0 ] || DATA_ARGS+=(--padding_free True)

# What a resume must match (GPU_ID may change between attempts).
SIGNATURE="launcher=$LAUNCHER_NAME lora_r=$lora_r seed=$seed lr=$lr mode=$mode vec_value=$vec_value vec_std=$vec_std p=$private_r e=$valid_r c=$chunk model=$MODEL"
rerun_hint() {  # how to continue this run ($1: what to prefix, e.g. EVAL_ONLY=1)
  printf '%sRUN_DIR=%q bash %q' "${1:+$1 }" "$out" "$LAUNCHER_DIR/$LAUNCHER_NAME"
  printf ' %q' "${ARGS[@]}"
}

NAME_TAIL="GPU_${GPU}_r_${lora_r}_lr_${lr}_sd_${seed}_ft_mode_${mode}_init_lora_A_vec_value_${vec_value}_init_lora_A_vec_std_${vec_std}_valid_param_private_r_${private_r}_valid_param_lora_r_${valid_r}_num_chunk_${chunk}"
if [ -n "${RUN_DIR:-}" ]; then
  out=$RUN_DIR
  [ -d "$out" ] || die "RUN_DIR $out does not exist; to start a new run leave RUN_DIR unset (runs go to OUTPUT_ROOT)"
  if [ -f "$out/launcher_args.txt" ] && [ "$(cat "$out/launcher_args.txt")" != "$SIGNATURE" ]; then
    die "RUN_DIR $out was started with other arguments ($(cat "$out/launcher_args.txt")); resume it with those"
  fi
  if [ "$NUM_MACHINES" -gt 1 ] && [ "$MACHINE_RANK" = 0 ] && [ "$DRY_RUN" = 0 ] && [ ! -f "$out/launcher_args.txt" ]; then
    printf '%s\n' "$SIGNATURE" >"$out/.launcher_args.txt.tmp" && mv "$out/.launcher_args.txt.tmp" "$out/launcher_args.txt"
  fi
  if [ -e "$out/completed" ] && [ "$EVAL_ONLY" = 0 ]; then
    die "RUN_DIR $out holds a completed run (marked by $out/completed); the launcher does not touch it. Start a new run without RUN_DIR, or run its missing evaluations with $(rerun_hint EVAL_ONLY=1)"
  fi
  [ "$EVAL_ONLY" = 0 ] || [ -e "$out/completed" ] \
    || die "EVAL_ONLY=1: RUN_DIR $out has no finished training (no $out/completed); resume it without EVAL_ONLY"
  echo "[launcher] run directory (resumed): $out"
elif [ "$DRY_RUN" = 1 ]; then
  out="$OUTPUT_ROOT/${RUN_PREFIX}_$(date +%Y%m%d-%H%M%S)_$NAME_TAIL"
  echo "[launcher] run directory (dry run, not created): $out"
else
  mkdir -p "$OUTPUT_ROOT/$(dirname "$RUN_PREFIX")" || die "cannot create OUTPUT_ROOT $OUTPUT_ROOT"
  for attempt in $(seq 1 60); do  # mkdir without -p is atomic: a directory taken by a concurrent launch fails
    out="$OUTPUT_ROOT/${RUN_PREFIX}_$(date +%Y%m%d-%H%M%S)_$NAME_TAIL"
    if mkdir "$out" 2>/dev/null; then break; fi
    [ -e "$out" ] || die "cannot create the run directory $out"
    out=""; sleep 1  # another launch took this second's name: the next second gives a new one
  done
  [ -n "$out" ] || die "could not create a new run directory in $OUTPUT_ROOT (names taken for 60 s)"
  printf '%s\n' "$SIGNATURE" >"$out/launcher_args.txt"
  echo "[launcher] run directory: $out"
fi

LOCK="$out/.launcher.lock"; [ "$MACHINE_RANK" = 0 ] || LOCK="$out/.launcher.lock.machine$MACHINE_RANK"
if [ "$DRY_RUN" = 0 ] && command -v flock >/dev/null; then  # one launch per run directory (and machine) at a time
  exec 9>>"$LOCK"   # held by this launch and its children, released when they exit (even by kill -9)
  flock -n 9 || die "another launch is still running in $out (it holds $LOCK); wait for it or stop it first"
fi

run_step() {  # run_step WHAT CMD...: print it in a dry run, else run it, passing SIGTERM / SIGUSR1 / SIGINT on
  local what=$1; shift
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] %s:' "$what"; printf ' %q' "$@"; printf '\n'; return 0; fi
  echo "[launcher] $what in $out"
  # In the background so that the launcher can pass a preemption signal on (a background command ignores SIGINT,
  # so Ctrl-C is passed on as SIGTERM: a clean stop). The child may get a signal twice (once from the process
  # group, once from here): the trainer and the evaluators act on the first and ignore repeats.
  "$@" &
  local child=$! status
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  trap 'kill -USR1 "$child" 2>/dev/null' USR1
  while :; do
    wait "$child"; status=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned early for a trapped signal: the child still runs
  done
  trap - TERM INT USR1
  return "$status"
}

if [ "$NUM_MACHINES" -gt 1 ]; then  # accelerate's multi-machine launch (torchrun's static rendezvous on machine 0)
  PER_MACHINE=$(( NUM_GPUS > 0 ? NUM_GPUS : 1 ))
  MACHINE_ARGS=(--multi_gpu)  # torchrun under accelerate; on machines without CUDA the trainer runs on the CPU (gloo)
  [ -z "${ACCELERATE_CONFIG:-}" ] || MACHINE_ARGS=(--config_file "$ACCELERATE_CONFIG")
  RUN=("$PYTHON" -m accelerate.commands.launch "${MACHINE_ARGS[@]}" --num_machines "$NUM_MACHINES"
       --machine_rank "$MACHINE_RANK" --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT"
       --num_processes $(( NUM_MACHINES * PER_MACHINE )) --rdzv_backend static --same_network
       open_instruct/finetune_trainer.py)
elif [ "$NUM_GPUS" -gt 1 ]; then
  RUN=("$PYTHON" -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG:-configs/accelerate/multi_gpu.yaml}" --num_processes "$NUM_GPUS" open_instruct/finetune_trainer.py)
else
  RUN=("$PYTHON" open_instruct/finetune_trainer.py)
fi
# shellcheck disable=SC2206
TRAIN_LENGTH=(${TRAIN_LENGTH_ARGS})
if [ "$MAX_EVAL_SAMPLES" = 0 ]; then EVAL_ARGS=(--do_eval False)
else EVAL_ARGS=(--do_eval True --max_eval_samples "$MAX_EVAL_SAMPLES" --eval_strategy steps --eval_steps "$EVAL_STEPS"
                --per_device_eval_batch_size "$BATCH_SIZE"); fi

if [ "$EVAL_ONLY" = 0 ]; then
  run_step training "${RUN[@]}" \
    --model_name_or_path "$MODEL" --train_file "$TRAIN_FILE" --max_seq_length "$MAX_SEQ_LENGTH" \
    --use_lora True --use_qlora "$QLORA" --enable_lora_vec True --lora_alpha 16 --lora_dropout 0.1 \
    --enable_lora_rotation True --enable_lora_bias False --init2zero_via_vec False --lora_modules all \
    --ft_mode "$mode" --lora_r "$lora_r" --init_lora_A_vec_value "$vec_value" --init_lora_A_vec_std "$vec_std" \
    --valid_param_private_r "$private_r" --valid_param_lora_r "$valid_r" --num_chunk_per_vec "$chunk" \
    --chat_format "$CHAT_FORMAT" "${DATA_ARGS[@]+"${DATA_ARGS[@]}"}" "${DEVICE_ARGS[@]}" \
    --use_fast_tokenizer False --preprocessing_num_workers "$PREPROCESSING_WORKERS" --group_by_length True \
    --remove_unused_columns True --optim paged_adamw_32bit --lr_scheduler_type linear --warmup_ratio 0.03 \
    --per_device_train_batch_size "$BATCH_SIZE" --gradient_accumulation_steps 1 "${TRAIN_LENGTH[@]}" \
    --learning_rate "$lr" --weight_decay 0.0 --max_grad_norm 0.3 --seed "$seed" "${EVAL_ARGS[@]}" \
    --logging_steps "$LOGGING_STEPS" --save_steps "$SAVE_STEPS" --save_total_limit 1 \
    --report_to "${REPORT_TO:-tensorboard}" --output_dir "$out" --resume_from_checkpoint auto \
    "${EXTRA[@]+"${EXTRA[@]}"}" \
  || { status=$?
       if [ "$status" = 75 ]; then  # SIGTERM / SIGUSR1: a complete checkpoint was saved and the run marked preempted
         echo "[launcher] training was preempted (a signal stopped it after saving a checkpoint; $out/preempted); to resume: $(rerun_hint)" >&2
         exit 75
       fi
       if compgen -G "$out/checkpoint-*/trainer_state.json" >/dev/null; then
         die "training failed (exit $status; see $out/run.log); to resume from its last checkpoint: $(rerun_hint)"
       fi
       die "training failed (exit $status) before any checkpoint was written; see $out/run.log (nothing to resume)"; }
fi

[ "$SKIP_EVAL" = 1 ] && { echo "[launcher] done (SKIP_EVAL=1: not evaluated): $out"; exit 0; }
[ "$MACHINE_RANK" = 0 ] || { echo "[launcher] machine $MACHINE_RANK: training done; machine 0 evaluates $out"; exit 0; }

# The evaluations of the task, on the base model with the run's adapter; never over results already there.
EVAL_MODEL_ARGS=(--model_name_or_path "$MODEL" --tokenizer_name_or_path "$MODEL" --adapter_path "$out"
                 --eval_batch_size "$EVAL_BATCH_SIZE" --use_slow_tokenizer "${EVAL_DEVICE_ARGS[@]+"${EVAL_DEVICE_ARGS[@]}"}"
                 --use_chat_format --chat_formatting_function "$CHAT_FN")
evaluate() {  # evaluate NAME SAVE_DIR CMD...: skip a finished one, explain a failure
  local name=$1 save_dir=$2; shift 2
  if [ "$DRY_RUN" = 0 ] && [ -f "$save_dir/metrics.json" ]; then
    echo "[launcher] $name: $save_dir/metrics.json already exists, not evaluating again"; return 0
  fi
  run_step "$name evaluation" "$@" || { local status=$?
    if [ "$status" = 75 ]; then
      echo "[launcher] $name evaluation was stopped by a signal (finished parts are kept); to continue: $(rerun_hint EVAL_ONLY=1)" >&2
      exit 75
    fi
    die "$name evaluation failed; the trained adapter is in $out; to run the missing evaluations: $(rerun_hint EVAL_ONLY=1)"; }
}
task_evaluate
if [ "$DRY_RUN" = 1 ]; then echo "[launcher] dry run: nothing was run or created"; else echo "[launcher] done: $out"; fi
