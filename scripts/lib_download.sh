# Download helpers shared by prepare_train_data.sh and prepare_eval_data.sh (sourced, not run).
# The sourcing script defines, per item (dataset or benchmark) $1:
#   have ITEM         -> status 0 when its files are already in place
#   urls_of ITEM      -> the URLs it needs (checked for reachability before any download)
#   download ITEM     -> fetches and unpacks it (with `fetch ITEM URL FILE`)
#   manual_hint ITEM  -> where to put its files by hand
# and CHECK_TIMEOUT (seconds).

check_reachable() {  # fail fast: can we open a connection to the server of $2 (item $1)?
    local err
    if ! err=$(curl --silent --show-error --location --head --max-time "$CHECK_TIMEOUT" -o /dev/null "$2" 2>&1); then
        echo "error: cannot reach $2 (${err//$'\n'/ })" >&2
        echo "This machine seems to be offline (or the server is down). Supply the data by hand:" >&2
        manual_hint "$1" >&2
        echo "then rerun this script: data already in place is not downloaded again." >&2
        exit 1
    fi
}

fetch() {  # fetch URL $2 to file $3 for item $1; a partial download never takes the final name
    echo "downloading $2 -> $3"
    mkdir -p "$(dirname "$3")"
    if ! curl --fail --location --show-error --retry 2 --connect-timeout "$CHECK_TIMEOUT" -o "$3.part" "$2"; then
        rm -f "$3.part"
        echo "error: download of $2 failed. Supply the data by hand:" >&2
        manual_hint "$1" >&2
        exit 1
    fi
    mv "$3.part" "$3"
}

download_missing() {  # download_missing ITEM...: skip what is there, check every URL first, then download
    local item url missing=()
    for item in "$@"; do
        if have "$item"; then echo "$item: already in place, not downloading"; else missing+=("$item"); fi
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    command -v curl >/dev/null || { echo "error: curl is needed to download ${missing[*]}; install it or supply the data by hand:" >&2
                                   for item in "${missing[@]}"; do manual_hint "$item" >&2; done; exit 1; }
    for item in "${missing[@]}"; do
        for url in $(urls_of "$item"); do check_reachable "$item" "$url"; done
    done
    for item in "${missing[@]}"; do download "$item"; done
}
