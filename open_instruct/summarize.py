"""Summaries of finetuning runs: one row per run with losses, benchmark scores and hyperparameters.

Shared logic behind the top-level ``mmlu_summarize.py``, ``tydiqa_summarize.py``, ``bbh_summarize.py``,
``gsm_summarize.py`` and ``codex_summarize.py``.

Compared with the original summarizers (same scan, same first columns) this adds: the hyperparameters
(r, seed, lr, ft_mode, p, e, c) from the run's ``run.json`` (for runs made before it, parsed from the
launcher's directory name), the trainable-parameter count
(all_results.json, else the run's metrics.json), runs that were only evaluated (e.g. a base model), a
terminal table, the reasons runs were skipped, and a plot of score against trainable parameters.

Scan: every ``all_results.json`` under ``--output_root`` whose folder name does not contain "checkpoint"
and that was modified in the last ``--ts`` hours (-1: any time), sorted by path. A run whose benchmark
``metrics.json`` is missing or unreadable is listed as skipped, with the reason; it never stops the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from open_instruct.errors import UserError, one_line, one_line_usage
from open_instruct.run_spec import hyperparameters, read_run_spec

TRAIN_COLUMNS = ["dir", "train_loss", "eval_loss", "time_h"]
HPARAM_COLUMNS = ["r", "seed", "lr", "ft_mode", "p", "e", "c"]
EXTRA_COLUMNS = ["trainable_params", "path"]
INT_COLUMNS = ["r", "seed", "p", "e", "c", "trainable_params"]

# The launcher's directory names, parsed only for run directories without a run.json (made before it existed):
# LLaMA2_7b_MoS_superni_${TIME}_GPU_${GPU}_r_${r}_lr_${lr}_sd_${seed}_ft_mode_${mode}_init_lora_A_vec_value_${v}
# _init_lora_A_vec_std_${s}_valid_param_private_r_${p}_valid_param_lora_r_${e}_num_chunk_${c}
RUN_NAME = re.compile(
    r"(?P<prefix>.*)_(?P<time>\d{8}-\d{6})_GPU_(?P<gpu>\d+(?:,\d+)*)_r_(?P<r>\d+)_lr_(?P<lr>[0-9.eE+-]+)"
    r"_sd_(?P<seed>\d+)_ft_mode_(?P<ft_mode>.+?)_init_lora_A_vec_value_(?P<v>[^_]+)_init_lora_A_vec_std_(?P<s>[^_]+)"
    r"_valid_param_private_r_(?P<p>\d+)_valid_param_lora_r_(?P<e>\d+)_num_chunk_(?P<c>\d+)")


@dataclass(frozen=True)
class Benchmark:
    """What a summarizer reads: ``<run>/<results_dir>/metrics.json`` turned into score columns.

    ``parts``: for evaluations run more than once per run (BBH with and without CoT, HumanEval pass1 and
    pass10), the results folders; ``extract`` then gets ``{part: metrics or None}`` and a run is skipped only
    when none of them has a metrics.json. ``label_file``: a JSON file in a results folder whose "name" goes
    into a ``dataset`` column (BBH: "BBH (rebuilt from BIG-bench)" when built offline).
    """

    name: str
    results_dir: str
    score_columns: tuple[str, ...]
    extract: Callable[[dict], dict]  # metrics.json -> {score column: value}; KeyError when a key is missing
    plot_column: str
    default_csv: str
    parts: tuple[str, ...] = ()
    label_file: str | None = None

    @property
    def metrics_paths(self) -> tuple[str, ...]:
        return tuple(f"{part}/metrics.json" for part in (self.parts or (self.results_dir,)))


def _mmlu_scores(metrics: dict) -> dict:
    cat = metrics["cat_acc"]
    return {"MMLU_acc_STEM": cat.get("STEM"), "MMLU_acc_humanities": cat.get("humanities"),
            "MMLU_acc_socialsciences": cat.get("social sciences"),
            "MMLU_acc_other": cat.get("other (business, health, misc.)"), "MMLU_acc": metrics["average_acc"]}


def _tydiqa_scores(metrics: dict) -> dict:
    return {"f1": metrics["average"]["f1"], "em": metrics["average"]["exact_match"]}


def _bbh_scores(by_part: dict) -> dict:
    return {f"BBH_{part.rsplit('/', 1)[1]}_em": (m["average_exact_match"] if m is not None else None)
            for part, m in by_part.items()}


def _gsm_scores(metrics: dict) -> dict:
    return {"GSM_em": metrics["exact_match"]}


def _codex_scores(by_part: dict) -> dict:
    pass1, pass10 = by_part["codex_results/pass1"], by_part["codex_results/pass10"]
    return {"pass@1": pass1["pass@1"] if pass1 is not None else None,
            "pass@10": pass10["pass@10"] if pass10 is not None else None}


MMLU = Benchmark("MMLU", "mmlu_results", ("MMLU_acc_STEM", "MMLU_acc_humanities", "MMLU_acc_socialsciences",
                                          "MMLU_acc_other", "MMLU_acc"), _mmlu_scores, "MMLU_acc",
                 "mmlu_summary.csv")
TYDIQA = Benchmark("TyDiQA", "tydiqa_results", ("f1", "em"), _tydiqa_scores, "f1", "tydiqa_summary.csv")
BBH = Benchmark("BBH", "bbh_results", ("BBH_cot_em", "BBH_no_cot_em"), _bbh_scores, "BBH_cot_em", "bbh_summary.csv",
                parts=("bbh_results/cot", "bbh_results/no_cot"), label_file="dataset.json")
GSM = Benchmark("GSM8K", "gsm_results", ("GSM_em",), _gsm_scores, "GSM_em", "gsm_summary.csv")
CODEX = Benchmark("HumanEval", "codex_results", ("pass@1", "pass@10"), _codex_scores, "pass@1",
                  "codex_summary.csv", parts=("codex_results/pass1", "codex_results/pass10"))


class SkipRun(Exception):
    """A run that cannot be summarized; the message is the reason shown to the user."""


# ----------------------------------------------------------------------------------------------- reading

def parse_run_name(name: str) -> dict:
    """Hyperparameters from a launcher directory name made before run.json; all ``None`` when it does not match."""
    match = RUN_NAME.fullmatch(name)
    if match is None:
        return dict.fromkeys(HPARAM_COLUMNS)
    g = match.groupdict()
    return {"r": int(g["r"]), "seed": int(g["seed"]), "lr": float(g["lr"]), "ft_mode": g["ft_mode"],
            "p": int(g["p"]), "e": int(g["e"]), "c": int(g["c"])}


def run_hyperparameters(run_dir: Path) -> dict:
    """The run's hyperparameters from its run.json; from its directory name only for a run made before run.json."""
    try:
        spec = read_run_spec(run_dir)
    except UserError as err:
        raise SkipRun(str(err)) from err
    return hyperparameters(spec) if spec else parse_run_name(run_dir.name)


def read_json(path: Path, what: str) -> dict:
    """Load a JSON object or raise SkipRun saying what is missing or broken."""
    if not path.is_file():
        raise SkipRun(f"missing {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark is skipped
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SkipRun(f"corrupt {what} ({err})") from err
    if not isinstance(data, dict):
        raise SkipRun(f"corrupt {what} (a JSON object was expected, got {type(data).__name__})")
    return data


def read_trainable_params(run_dir: Path, all_results: dict) -> int | None:
    """``trainable_params`` from all_results.json, else from the run's metrics.json; None when absent."""
    if all_results.get("trainable_params") is not None:
        return int(all_results["trainable_params"])
    try:
        metrics = read_json(run_dir / "metrics.json", "metrics.json")
    except SkipRun:
        return None
    value = metrics.get("trainable_params")
    return int(value) if value is not None else None


def summarize_run(run_dir: Path, benchmark: Benchmark, output_root: Path) -> dict:
    """One row for a run directory (raises SkipRun with the reason when its scores cannot be read)."""
    trained = (run_dir / "all_results.json").is_file()
    all_results = read_json(run_dir / "all_results.json", "all_results.json") if trained else {}
    if benchmark.parts:
        found = {p: run_dir / p / "metrics.json" for p in benchmark.parts}
        if not any(path.is_file() for path in found.values()):
            raise SkipRun("missing " + " and ".join(benchmark.metrics_paths))
        what = " / ".join(benchmark.metrics_paths)
        metrics = {p: read_json(path, f"{p}/metrics.json") if path.is_file() else None for p, path in found.items()}
    else:
        what = f"{benchmark.results_dir}/metrics.json"
        metrics = read_json(run_dir / benchmark.results_dir / "metrics.json", what)
    try:
        scores = benchmark.extract(metrics)
    except (KeyError, TypeError) as err:
        raise SkipRun(f"{what} has no {err} entry") from err
    if benchmark.label_file:
        scores["dataset"] = _dataset_label(run_dir, benchmark)
    runtime = all_results.get("train_runtime")
    row = {"dir": run_dir.name, "train_loss": all_results.get("train_loss"),
           "eval_loss": all_results.get("eval_loss"), "time_h": runtime / 3600 if runtime is not None else None}
    row.update(scores)
    row.update(run_hyperparameters(run_dir))
    row["trainable_params"] = read_trainable_params(run_dir, all_results)
    row["path"] = str(run_dir.relative_to(output_root)) if run_dir.is_relative_to(output_root) else str(run_dir)
    return row


def _dataset_label(run_dir: Path, benchmark: Benchmark) -> str | None:
    for part in benchmark.parts or (benchmark.results_dir,):
        path = run_dir / part / benchmark.label_file
        if path.is_file():
            try:
                return json.loads(path.read_text()).get("name")
            except (json.JSONDecodeError, AttributeError):
                return None
    return None


def find_runs(output_root: Path, ts_hours: float, benchmark: Benchmark, include_eval_only: bool = True) -> list[Path]:
    """Run directories to summarize, sorted by path.

    Trained runs: folders with ``all_results.json`` (not named "*checkpoint*") modified within ``ts_hours``
    (-1: any time). Eval-only runs: folders with ``<results_dir>/metrics.json`` but no ``all_results.json``,
    filtered on the metrics file's modification time.
    """
    threshold = None if ts_hours == -1 else time.time() - ts_hours * 3600

    def recent(path: Path) -> bool:
        return threshold is None or path.stat().st_mtime > threshold

    runs = {p.parent for p in output_root.rglob("all_results.json")
            if "checkpoint" not in p.parent.name and recent(p)}
    if include_eval_only:
        for pattern in benchmark.metrics_paths:
            for metrics in output_root.rglob(pattern):
                run = metrics.parents[pattern.count("/")]
                if not (run / "all_results.json").exists() and "checkpoint" not in run.name and recent(metrics):
                    runs.add(run)
    return sorted(runs)


def summarize(benchmark: Benchmark, output_root: str | Path = "./output", ts_hours: float = 6,
              include_eval_only: bool = True, verbose: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The summary table and the ``(run path, reason)`` list of skipped runs."""
    output_root = Path(output_root)
    if not output_root.is_dir():
        raise FileNotFoundError(f"--output_root {output_root} is not a directory; point it at the folder holding "
                                "the run directories (the launchers write to ./output).")
    rows, skipped = [], []
    for run_dir in find_runs(output_root, ts_hours, benchmark, include_eval_only):
        if verbose:
            print(run_dir)
        try:
            rows.append(summarize_run(run_dir, benchmark, output_root))
        except SkipRun as reason:
            skipped.append((str(run_dir), str(reason)))
    label = ["dataset"] if benchmark.label_file else []
    columns = TRAIN_COLUMNS + list(benchmark.score_columns) + label + HPARAM_COLUMNS + EXTRA_COLUMNS
    df = pd.DataFrame(rows, columns=columns)
    for col in columns:
        if col in INT_COLUMNS:
            df[col] = pd.array(df[col].tolist(), dtype="Int64")
        elif col not in ("dir", "ft_mode", "path", "dataset"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df, skipped


# ----------------------------------------------------------------------------------------------- output

def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2):]


def _display_name(path: str, output_root: Path) -> str:
    """A launcher run as "<prefix>_<TIME>" (its hyperparameters have their own columns), others shortened."""
    run_dir = Path(path) if Path(path).is_absolute() else output_root / path
    name = run_dir.name
    try:
        spec = read_run_spec(run_dir)
    except UserError:
        spec = None
    if spec and name == Path(spec.run_name()).name:
        return _short(f"{Path(spec.run_prefix).name}_{spec.started}")
    match = None if spec else RUN_NAME.fullmatch(name)
    return _short(f"{match['prefix']}_{match['time']}" if match else name)


def format_table(df: pd.DataFrame, output_root: str | Path = ".") -> str:
    """The summary for the terminal: directory names shortened, all-empty columns left out."""
    if df.empty:
        return "(no runs)"
    shown = df.drop(columns=["path"]).dropna(axis=1, how="all").copy()
    shown["dir"] = [_display_name(path, Path(output_root)) for path in df["path"]]
    for col in shown.columns:
        fmt = "{:g}" if col == "lr" else "{:.4f}" if pd.api.types.is_float_dtype(shown[col]) else "{}"
        shown[col] = ["" if pd.isna(x) else fmt.format(x) for x in shown[col]]
    return shown.to_string(index=False)


def plot_scores(df: pd.DataFrame, benchmark: Benchmark, path: str | Path) -> Path:
    """Score against trainable parameters (log x), one line per method (ft_mode); eval-only runs as
    horizontal dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = benchmark.plot_column
    fig, ax = plt.subplots(figsize=(7, 4.5))
    trained = df[df["trainable_params"].notna() & df[score].notna()].copy()
    trained["method"] = trained["ft_mode"].fillna("unknown")
    for i, (method, group) in enumerate(trained.groupby("method", sort=True)):
        color = f"C{i % 10}"
        ax.scatter(group["trainable_params"].astype(float), group[score], color=color, alpha=0.5, s=18)
        means = group.groupby("trainable_params")[score].mean().sort_index()  # mean over seeds
        ax.plot(means.index.astype(float), means.values, marker="o", color=color, label=str(method))
    baselines = df[df["train_loss"].isna() & df["trainable_params"].isna() & df[score].notna()]
    for _, row in baselines.iterrows():
        ax.axhline(row[score], linestyle="--", color="gray", linewidth=1)
        ax.annotate(_short(row["dir"], 32), (0.01, row[score]), xycoords=("axes fraction", "data"), fontsize=7,
                    va="bottom", color="gray")
    if trained.empty:
        ax.text(0.5, 0.5, "no run with a trainable-parameter count", transform=ax.transAxes, ha="center")
    else:
        ax.set_xscale("log")
        ax.legend(title="ft_mode")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(score)
    labels = sorted(df["dataset"].dropna().unique()) if "dataset" in df else []
    ax.set_title(f"{', '.join(labels) or benchmark.name}: {score} vs trainable parameters")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_parser(benchmark: Benchmark) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=f"Summarize {benchmark.name} results of the runs under --output_root into a table and a CSV.\n\n"
        + __doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ts", default="6", help="only runs modified in the last TS hours (default 6; "
                    "-1 for all)")
    ap.add_argument("--output_root", default="./output", help="folder scanned recursively (default ./output)")
    ap.add_argument("--csv", default=benchmark.default_csv, help=f"CSV to write, overwritten (default "
                    f"{benchmark.default_csv} in the current directory; the original wrote summary.csv)")
    ap.add_argument("--plot", default=None, metavar="FILE.png", help=f"also plot {benchmark.plot_column} against "
                    "trainable parameters, one line per ft_mode, log x")
    ap.add_argument("--skip_eval_only", action="store_true", help=f"by default folders with "
                    f"{benchmark.results_dir}/metrics.json but no all_results.json (e.g. a base-model evaluation) "
                    "are listed too, with empty training columns; this leaves them out")
    return ap


def _fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_ts(text: str) -> float:
    """``--ts``: a finite, positive number of hours, or -1 for all runs."""
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or (hours <= 0 and hours != -1):
        _fail(f"--ts {text}: give a positive number of hours (e.g. --ts 6) or -1 for all runs.")
    return hours


def main(benchmark: Benchmark, argv=None) -> pd.DataFrame:
    """Command-line entry point shared by the summarizer scripts."""
    args = one_line_usage(build_parser(benchmark)).parse_args(argv)
    ts = parse_ts(args.ts)
    try:
        df, skipped = summarize(benchmark, args.output_root, ts, not args.skip_eval_only)
    except (FileNotFoundError, UserError) as err:
        _fail(one_line(err))
    labels = sorted(df["dataset"].dropna().unique()) if "dataset" in df else []
    print(f"\n{benchmark.name}" + (f" (data: {', '.join(labels)})" if labels else ""))
    print(format_table(df, args.output_root))
    if skipped:
        print(f"\nSkipped {len(skipped)} run(s):")
        for run, reason in skipped:
            print(f"  {run}: {reason}")
    if df.empty:
        kept = " (the existing file is left unchanged)" if Path(args.csv).exists() else ""
        print(f"\nNo runs to summarize under {args.output_root} (--ts {args.ts}); "
              f"no CSV written to {args.csv}{kept}.")
        return df
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.csv, index=False)
    print(f"\nWrote {len(df)} row(s) to {args.csv}")
    if args.plot:
        print(f"Wrote {plot_scores(df, benchmark, args.plot)}")
    return df
