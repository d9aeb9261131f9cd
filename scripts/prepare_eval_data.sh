#!/usr/bin/env bash
# Download the evaluation benchmarks of the original into data/eval/.
#
#   bash scripts/prepare_eval_data.sh                  # mmlu tydiqa (what ft_llama2_7b_superni_mmlu.sh needs)
#   bash scripts/prepare_eval_data.sh all              # mmlu tydiqa bbh gsm humaneval (as the original)
#   bash scripts/prepare_eval_data.sh mmlu bbh         # any subset
#
# Sources and layout (those of the original harness):
#   mmlu       https://people.eecs.berkeley.edu/~hendrycks/data.tar  -> data/eval/mmlu/{dev,test}/<subject>_<split>.csv
#   tydiqa     https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-{dev,train}.json -> data/eval/tydiqa/
#   bbh        github.com/suzgunmirac/BIG-Bench-Hard main.zip -> data/eval/bbh/{bbh,cot-prompts}/
#   gsm        github.com/openai/grade-school-math test.jsonl -> data/eval/gsm/test.jsonl
#   humaneval  github.com/openai/human-eval HumanEval.jsonl.gz -> data/eval/codex_humaneval/ (.gz and gunzipped)
#
# Already-present data is not downloaded again, so files copied in by hand are used as is. Offline, the
# script stops after a short connectivity check and says where to put the files. No network at all? The
# repository ships synthetic samples in the same formats: data/samples/mmlu and data/samples/tydiqa.
#
# Environment: PYTHON (default .venv/bin/python, else python3), CHECK_TIMEOUT (seconds, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib_download.sh
source scripts/lib_download.sh

EVAL=data/eval
CHECK_TIMEOUT=${CHECK_TIMEOUT:-10}
ALL="mmlu tydiqa bbh gsm humaneval"
DEFAULT="mmlu tydiqa"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

MMLU_URL=https://people.eecs.berkeley.edu/~hendrycks/data.tar
TYDIQA_DEV_URL=https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.json
TYDIQA_TRAIN_URL=https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json
BBH_URL=https://github.com/suzgunmirac/BIG-Bench-Hard/archive/refs/heads/main.zip
GSM_URL=https://github.com/openai/grade-school-math/raw/master/grade_school_math/data/test.jsonl
HUMANEVAL_URL=https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

manual_hint() {  # where to put the files of benchmark $1 when downloading is impossible
    case "$1" in
        mmlu) echo "  mmlu: download $MMLU_URL elsewhere, then"
              echo "    mkdir -p $EVAL/mmlu && tar -xf data.tar -C $EVAL/mmlu --strip-components=1"
              echo "    (gives $EVAL/mmlu/dev/<subject>_dev.csv and $EVAL/mmlu/test/<subject>_test.csv)."
              echo "    Offline demo: --data_dir data/samples/mmlu" ;;
        tydiqa) echo "  tydiqa: put tydiqa-goldp-v1.1-dev.json and tydiqa-goldp-v1.1-train.json"
                echo "    ($TYDIQA_DEV_URL, $TYDIQA_TRAIN_URL) in $EVAL/tydiqa/."
                echo "    Offline demo: --data_dir data/samples/tydiqa" ;;
        bbh) echo "  bbh: unzip $BBH_URL and move BIG-Bench-Hard-main/ to $EVAL/bbh (needs $EVAL/bbh/bbh/*.json, $EVAL/bbh/cot-prompts/*.txt)" ;;
        gsm) echo "  gsm: put test.jsonl ($GSM_URL) in $EVAL/gsm/" ;;
        humaneval) echo "  humaneval: put HumanEval.jsonl.gz ($HUMANEVAL_URL) in $EVAL/codex_humaneval/ and gunzip -k it" ;;
    esac
}

have() {
    case "$1" in
        mmlu) compgen -G "$EVAL/mmlu/test/*_test.csv" >/dev/null ;;
        tydiqa) [[ -f $EVAL/tydiqa/tydiqa-goldp-v1.1-dev.json && -f $EVAL/tydiqa/tydiqa-goldp-v1.1-train.json ]] ;;
        bbh) [[ -d $EVAL/bbh/bbh && -d $EVAL/bbh/cot-prompts ]] ;;
        gsm) [[ -f $EVAL/gsm/test.jsonl ]] ;;
        humaneval) [[ -f $EVAL/codex_humaneval/HumanEval.jsonl ]] ;;
    esac
}

urls_of() {
    case "$1" in
        mmlu) echo "$MMLU_URL" ;;
        tydiqa) echo "$TYDIQA_DEV_URL $TYDIQA_TRAIN_URL" ;;
        bbh) echo "$BBH_URL" ;;
        gsm) echo "$GSM_URL" ;;
        humaneval) echo "$HUMANEVAL_URL" ;;
    esac
}

download() {
    local tmp=$EVAL/.download
    case "$1" in
        mmlu)
            rm -rf "$tmp" && mkdir -p "$tmp" "$EVAL/mmlu"
            fetch mmlu "$MMLU_URL" "$tmp/data.tar"
            tar -xf "$tmp/data.tar" -C "$EVAL/mmlu" --strip-components=1
            rm -rf "$tmp" ;;
        tydiqa)
            fetch tydiqa "$TYDIQA_DEV_URL" "$EVAL/tydiqa/tydiqa-goldp-v1.1-dev.json"
            fetch tydiqa "$TYDIQA_TRAIN_URL" "$EVAL/tydiqa/tydiqa-goldp-v1.1-train.json" ;;
        bbh)
            rm -rf "$tmp" && mkdir -p "$tmp"
            fetch bbh "$BBH_URL" "$tmp/bbh.zip"
            "$PYTHON" -m zipfile -e "$tmp/bbh.zip" "$tmp/"
            rm -rf "$EVAL/bbh" && mv "$tmp/BIG-Bench-Hard-main" "$EVAL/bbh"
            rm -rf "$tmp" ;;
        gsm)
            fetch gsm "$GSM_URL" "$EVAL/gsm/test.jsonl" ;;
        humaneval)
            fetch humaneval "$HUMANEVAL_URL" "$EVAL/codex_humaneval/HumanEval.jsonl.gz"
            gunzip -kf "$EVAL/codex_humaneval/HumanEval.jsonl.gz" ;;
    esac
}

benchmarks=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        all) read -r -a benchmarks <<<"$ALL" ;;
        mmlu|tydiqa|bbh|gsm|humaneval) benchmarks+=("$arg") ;;
        *) echo "error: unknown benchmark '$arg'; choose from: $ALL (or all)" >&2; exit 2 ;;
    esac
done
[[ ${#benchmarks[@]} -gt 0 ]] || read -r -a benchmarks <<<"$DEFAULT"

download_missing "${benchmarks[@]}"
echo "evaluation data ready under $EVAL: ${benchmarks[*]}"
