#!/usr/bin/env bash
# Finetune LLaMA-3.2-3B with MoS (or a baseline) on the CoT split of Flan v2 (one epoch), then evaluate GSM8K (8-shot).
#   bash ft_llama3_2_3b_cot_gsm8k.sh lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \
#        init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec
# Run with no arguments for the full usage and the environment overrides (MODEL, TRAIN_FILE, MAX_STEPS, ...).
set -euo pipefail
TASK=cot
MODEL_DEFAULT=meta-llama/Llama-3.2-3B
RUN_PREFIX=3B/MoS_cot
EVAL_BATCH_SIZE_DEFAULT=16
TRAIN_LENGTH_ARGS="--num_train_epochs 1"
if [ -n "${MAX_STEPS:-}" ]; then TRAIN_LENGTH_ARGS="--max_steps $MAX_STEPS"; fi
source "$(dirname "$0")/scripts/launch.sh"
