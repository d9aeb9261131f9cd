#!/usr/bin/env bash
# Download the original's training data into data/raw_train/ and convert it into
# data/processed/<dataset>/<dataset>_data.jsonl with open_instruct/reformat_datasets.py (seed 42).
#
#   bash scripts/prepare_train_data.sh                 # super_ni cot flan_v2 code_alpaca (as the original)
#   bash scripts/prepare_train_data.sh super_ni        # only what ft_llama2_7b_superni_mmlu.sh needs
#
# Sources (those of the original harness):
#   super_ni     https://github.com/allenai/natural-instructions/archive/refs/heads/master.zip
#   cot          beaker.org cot_zsopt.jsonl / cot_fsopt.jsonl (FLAN v2 chain-of-thought submix)
#   flan_v2      beaker.org flan_v2_resampled_100k.jsonl / _50k.jsonl (tulu v1 / v2 resamples)
#   code_alpaca  https://raw.githubusercontent.com/sahil280114/codealpaca/master/data/code_alpaca_20k.json
# (The original also fetched LIMA with an HF_TOKEN for tulu_v2; no MoS launcher uses it, so it is left out.)
#
# Already-present raw data is not downloaded again, so data copied in by hand is used as is. Offline, the
# script stops after a short connectivity check and says where to put the files. No network at all? The
# repository ships a synthetic SuperNI-format sample: data/samples/natural-instructions (see its README).
#
# Environment: PYTHON (default .venv/bin/python, else python3), CHECK_TIMEOUT (seconds, default 10),
# RAW_TRAIN_DIR (default data/raw_train), PROCESSED_DIR (default data/processed; the launchers' TRAIN_FILE
# defaults live there). Relative paths are taken from the current directory.
set -euo pipefail
abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s' "$PWD/$1" ;; esac; }
[[ -z "${RAW_TRAIN_DIR:-}" ]] || RAW_TRAIN_DIR=$(abspath "$RAW_TRAIN_DIR")
[[ -z "${PROCESSED_DIR:-}" ]] || PROCESSED_DIR=$(abspath "$PROCESSED_DIR")
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib_download.sh
source scripts/lib_download.sh

RAW=${RAW_TRAIN_DIR:-data/raw_train}
OUT=${PROCESSED_DIR:-data/processed}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-10}
ALL="super_ni cot flan_v2 code_alpaca"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

SUPER_NI_URL=https://github.com/allenai/natural-instructions/archive/refs/heads/master.zip
COT_ZS_URL=https://beaker.org/api/v3/datasets/01GXZ52K2Q932H6KZY499A7FE8/files/cot_zsopt.jsonl
COT_FS_URL=https://beaker.org/api/v3/datasets/01GXZ51ZV283RAZW7J3ECM4S58/files/cot_fsopt.jsonl
FLAN_V1_URL=https://beaker.org/api/v3/datasets/01GZTTS2EJFPA83PXS4FQCS1SA/files/flan_v2_resampled_100k.jsonl
FLAN_V2_URL=https://beaker.org/api/v3/datasets/01HBS0N5ZSDF5AECA9VMB1RKXQ/files/flan_v2_resampled_50k.jsonl
CODE_ALPACA_URL=https://raw.githubusercontent.com/sahil280114/codealpaca/master/data/code_alpaca_20k.json

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

manual_hint() {  # where to put the files of dataset $1 when downloading is impossible
    case "$1" in
        super_ni) echo "  super_ni: download $SUPER_NI_URL elsewhere, unzip it and move the contents of"
                  echo "    natural-instructions-master/ to $RAW/super_ni/ (needs $RAW/super_ni/splits/xlingual/train_tasks.txt"
                  echo "    and $RAW/super_ni/tasks/*.json). Offline demo: ln -s ../samples/natural-instructions $RAW/super_ni" ;;
        cot)      echo "  cot: put cot_zsopt.jsonl and cot_fsopt.jsonl in $RAW/cot/ ($COT_ZS_URL, $COT_FS_URL)" ;;
        flan_v2)  echo "  flan_v2: put tulu_v1_resampled_flan_100k.jsonl (from $FLAN_V1_URL) and"
                  echo "    tulu_v2_resampled_flan_50k.jsonl (from $FLAN_V2_URL) in $RAW/flan_v2/" ;;
        code_alpaca) echo "  code_alpaca: put code_alpaca_20k.json ($CODE_ALPACA_URL) in $RAW/code_alpaca/" ;;
    esac
}

have() {  # is the raw data of dataset $1 already there?
    case "$1" in
        super_ni) [[ -f $RAW/super_ni/splits/xlingual/train_tasks.txt ]] ;;
        cot) [[ -f $RAW/cot/cot_zsopt.jsonl && -f $RAW/cot/cot_fsopt.jsonl ]] ;;
        flan_v2) [[ -f $RAW/flan_v2/tulu_v1_resampled_flan_100k.jsonl ]] ;;
        code_alpaca) [[ -f $RAW/code_alpaca/code_alpaca_20k.json ]] ;;
    esac
}

urls_of() {
    case "$1" in
        super_ni) echo "$SUPER_NI_URL" ;;
        cot) echo "$COT_ZS_URL $COT_FS_URL" ;;
        flan_v2) echo "$FLAN_V1_URL $FLAN_V2_URL" ;;
        code_alpaca) echo "$CODE_ALPACA_URL" ;;
    esac
}

download() {
    case "$1" in
        super_ni)
            local tmp=$RAW/super_ni/.download
            rm -rf "$tmp" && mkdir -p "$tmp"
            fetch super_ni "$SUPER_NI_URL" "$tmp/master.zip"
            "$PYTHON" -m zipfile -e "$tmp/master.zip" "$tmp/"
            mv "$tmp"/natural-instructions-master/* "$RAW/super_ni/"
            rm -rf "$tmp" ;;
        cot)
            fetch cot "$COT_ZS_URL" "$RAW/cot/cot_zsopt.jsonl"
            fetch cot "$COT_FS_URL" "$RAW/cot/cot_fsopt.jsonl" ;;
        flan_v2)
            fetch flan_v2 "$FLAN_V1_URL" "$RAW/flan_v2/tulu_v1_resampled_flan_100k.jsonl"
            fetch flan_v2 "$FLAN_V2_URL" "$RAW/flan_v2/tulu_v2_resampled_flan_50k.jsonl" ;;
        code_alpaca)
            fetch code_alpaca "$CODE_ALPACA_URL" "$RAW/code_alpaca/code_alpaca_20k.json" ;;
    esac
}

datasets=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        all) read -r -a datasets <<<"$ALL" ;;
        super_ni|cot|flan_v2|code_alpaca) datasets+=("$arg") ;;
        *) echo "error: unknown dataset '$arg'; choose from: $ALL (or all)" >&2; exit 2 ;;
    esac
done
[[ ${#datasets[@]} -gt 0 ]] || read -r -a datasets <<<"$ALL"

download_missing "${datasets[@]}"

"$PYTHON" open_instruct/reformat_datasets.py --raw_data_dir "$RAW/" --output_dir "$OUT/" --dataset "${datasets[@]}" --seed 42
