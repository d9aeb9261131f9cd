# The per-task part of the launchers (sourced by scripts/launch.sh): what each task trains on and how its run
# is evaluated. The evaluations use the run's variables: PYTHON, out, EVAL_DATA_DIR, EVAL_MODEL_ARGS (base model,
# adapter = the run directory, batch size, chat format), VLLM_ARGS; `evaluate NAME SAVE_DIR CMD...` runs one.
#
#   superni  SuperNI -> MMLU (0-shot) and TyDiQA GoldP (1-shot, gold passage)
#   flan_v2  Flan v2 -> BBH with chain of thought (bbh_results/cot) and without (bbh_results/no_cot)
#   cot      the CoT split of Flan v2 -> GSM8K (8-shot, chain of thought)
#   code     Code Alpaca -> HumanEval: pass@1/5/10/20 at temperature 0.1 and pass@10 at 0.8, 20 samples each

task_setup() {
  TASK=$1
  case "$TASK" in
    superni)
      TASK_DATASET=super_ni; TASK_EVAL_DATA="mmlu/ and tydiqa/"
      TASK_DESCRIPTION="Trains on SuperNI, then evaluates MMLU (0-shot) and TyDiQA (1-shot) in <run dir>/mmlu_results and tydiqa_results."
      TASK_EXTRA_ENV='MMLU_ARGS="..." / TYDIQA_ARGS="..." (more eval flags)' ;;
    flan_v2)
      TASK_DATASET=flan_v2; TASK_EVAL_DATA="bbh/"
      TASK_DESCRIPTION="Trains on Flan v2, then evaluates BBH with and without chain of thought in <run dir>/bbh_results/{cot,no_cot}."
      TASK_EXTRA_ENV='BBH_ARGS="..." (more eval flags)' ;;
    cot)
      TASK_DATASET=cot; TASK_EVAL_DATA="gsm/"
      TASK_DESCRIPTION="Trains on the CoT split of Flan v2, then evaluates GSM8K (8-shot, chain of thought) in <run dir>/gsm_results."
      TASK_EXTRA_ENV='GSM_ARGS="..." (more eval flags)' ;;
    code)
      TASK_DATASET=code_alpaca; TASK_EVAL_DATA="codex_humaneval/HumanEval.jsonl.gz"
      TASK_DESCRIPTION="Trains on Code Alpaca, then evaluates HumanEval (n = 20 samples) in <run dir>/codex_results/pass1 (temperature 0.1, pass@1/5/10/20) and pass10 (temperature 0.8, pass@10)."
      TASK_EXTRA_ENV='CODEX_ARGS="..." (more eval flags)' ;;
    *) echo "error: unknown TASK '$TASK' (superni, flan_v2, cot, code)" >&2; exit 2 ;;
  esac
  TRAIN_FILE_DEFAULT=data/processed/$TASK_DATASET/${TASK_DATASET}_data.jsonl
}

task_eval_inputs() {  # the files / folders the task's evaluations read (checked before training starts)
  case "$TASK" in
    superni) echo "$EVAL_DATA_DIR/mmlu/test $EVAL_DATA_DIR/tydiqa/tydiqa-goldp-v1.1-dev.json" ;;
    flan_v2) echo "$EVAL_DATA_DIR/bbh" ;;
    cot) echo "$EVAL_DATA_DIR/gsm/test.jsonl" ;;
    code) echo "$EVAL_DATA_DIR/codex_humaneval/HumanEval.jsonl.gz" ;;
  esac
}

task_extra() {  # task_extra VAR: the words of an extra-flags variable (split, no globbing)
  local -a words=()
  read -r -a words <<<"${!1:-}"
  TASK_EXTRA=("${words[@]+"${words[@]}"}")
}

task_evaluate() {
  case "$TASK" in
    superni)
      task_extra MMLU_ARGS
      evaluate MMLU "$out/mmlu_results" "$PYTHON" -m eval.mmlu.run_eval --ntrain 0 --data_dir "$EVAL_DATA_DIR/mmlu" \
        --save_dir "$out/mmlu_results" "${EVAL_MODEL_ARGS[@]}" "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}"
      task_extra TYDIQA_ARGS
      evaluate TyDiQA "$out/tydiqa_results" "$PYTHON" -m eval.tydiqa.run_eval --data_dir "$EVAL_DATA_DIR/tydiqa" \
        --save_dir "$out/tydiqa_results" --n_shot 1 --max_context_length 512 "${EVAL_MODEL_ARGS[@]}" \
        "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}" ;;
    flan_v2)
      task_extra BBH_ARGS
      evaluate "BBH (no CoT)" "$out/bbh_results/no_cot" "$PYTHON" -m eval.bbh.run_eval --data_dir "$EVAL_DATA_DIR/bbh" \
        --save_dir "$out/bbh_results/no_cot" --no_cot "${EVAL_MODEL_ARGS[@]}" "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" \
        "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}"
      evaluate "BBH (CoT)" "$out/bbh_results/cot" "$PYTHON" -m eval.bbh.run_eval --data_dir "$EVAL_DATA_DIR/bbh" \
        --save_dir "$out/bbh_results/cot" "${EVAL_MODEL_ARGS[@]}" "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" \
        "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}" ;;
    cot)
      task_extra GSM_ARGS
      evaluate GSM8K "$out/gsm_results" "$PYTHON" -m eval.gsm.run_eval --data_dir "$EVAL_DATA_DIR/gsm" \
        --save_dir "$out/gsm_results" --n_shot 8 "${EVAL_MODEL_ARGS[@]}" "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" \
        "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}" ;;
    code)
      task_extra CODEX_ARGS
      local data="$EVAL_DATA_DIR/codex_humaneval/HumanEval.jsonl.gz"
      evaluate "HumanEval (pass@1, T=0.1)" "$out/codex_results/pass1" "$PYTHON" -m eval.codex_humaneval.run_eval \
        --data_file "$data" --save_dir "$out/codex_results/pass1" --eval_pass_at_ks 1 5 10 20 \
        --unbiased_sampling_size_n 20 --temperature 0.1 "${EVAL_MODEL_ARGS[@]}" "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" \
        "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}"
      evaluate "HumanEval (pass@10, T=0.8)" "$out/codex_results/pass10" "$PYTHON" -m eval.codex_humaneval.run_eval \
        --data_file "$data" --save_dir "$out/codex_results/pass10" --eval_pass_at_ks 10 \
        --unbiased_sampling_size_n 20 --temperature 0.8 "${EVAL_MODEL_ARGS[@]}" "${VLLM_ARGS[@]+"${VLLM_ARGS[@]}"}" \
        "${TASK_EXTRA[@]+"${TASK_EXTRA[@]}"}" ;;
  esac
}
