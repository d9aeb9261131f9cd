#!/usr/bin/env bash
# Finetune LLaMA-2-13B with MoS (or a baseline) on Code Alpaca, then evaluate HumanEval (pass@1 at T=0.1, pass@10 at T=0.8).
#   bash ft_llama2_13b_code.sh lora_r seed GPU_ID learning_rate finetune_mode init_lora_A_vec_value \
#        init_lora_A_vec_std valid_param_private_r valid_param_lora_r num_chunk_per_vec
# Run with no arguments for the full usage and the environment overrides (MODEL, TRAIN_FILE, MAX_STEPS, ...).
set -euo pipefail
TASK=code
MODEL_DEFAULT=meta-llama/Llama-2-13b-hf
RUN_PREFIX=LLaMA2_13b_MoS_code_alpaca
EVAL_BATCH_SIZE_DEFAULT=4
TRAIN_LENGTH_ARGS="--max_steps ${MAX_STEPS:-10000}"
source "$(dirname "$0")/scripts/launch.sh"
