#!/usr/bin/env bash
# Finetune LLaMA-2-13B with MoS (or a baseline) on Flan v2, then evaluate BBH with and without chain of thought.
#   bash ft_llama2_13b_flan_v2.sh lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \
#        init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec
# Run with no arguments for the full usage and the environment overrides (MODEL, TRAIN_FILE, MAX_STEPS, ...).
set -euo pipefail
TASK=flan_v2
MODEL_DEFAULT=meta-llama/Llama-2-13b-hf
RUN_PREFIX=LLaMA2_13b_MoS_flan_v2
EVAL_BATCH_SIZE_DEFAULT=16
TRAIN_LENGTH_ARGS="--max_steps ${MAX_STEPS:-10000}"
source "$(dirname "$0")/scripts/launch.sh"
