"""Convert downloaded instruction datasets into the ``messages`` JSON-lines format the trainer reads.

    python open_instruct/reformat_datasets.py --raw_data_dir data/raw_train/ --output_dir data/processed/
    python -m open_instruct.reformat_datasets --raw_data_dir data/raw_train/ --output_dir data/processed/ \\
        --dataset super_ni --seed 42

Each dataset ``D`` is read from ``RAW_DATA_DIR/D/`` and written to ``OUTPUT_DIR/D/D_data.jsonl``, one object
per line: ``{"dataset": D, "id": ..., "messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``.
No eos is added here (the trainer adds it). Supported datasets and the raw files they need:

    super_ni     splits/xlingual/train_tasks.txt and tasks/<task>.json (the natural-instructions repository)
    code_alpaca  code_alpaca_20k.json
    cot          cot_zsopt.jsonl, cot_fsopt.jsonl
    flan_v2      tulu_v1_resampled_flan_100k.jsonl

``random.seed(seed)`` is called once at the start and the datasets are converted in the order given, as
in the original script, so the same seed and dataset list reproduce the same files. Output files are
written to a temporary name and renamed at the end: a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from open_instruct.files import open_atomic  # noqa: E402
from open_instruct.instruction_encode_templates import (  # noqa: E402
    encode_few_shot_example,
    encode_instruction_example,
)

SUPER_NI_TASK_LIST = Path("splits") / "xlingual" / "train_tasks.txt"
MMLU_TASK_MARKER = "_mmmlu_"  # SuperNI's translated-MMLU tasks: skipped to avoid leaking the MMLU test set


# --------------------------------------------------------------------------------------------- helpers

def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with open(path, encoding="utf-8-sig") as fin:
            return json.load(fin)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    records = []
    with open(path, encoding="utf-8-sig") as fin:
        for lineno, line in enumerate(fin, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None
    return records


def _chat_record(dataset: str, example_id: str, prompt: str, completion: str) -> str:
    return json.dumps({"dataset": dataset, "id": example_id,
                       "messages": [{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": completion}]}) + "\n"


def _require(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {problem}")


# -------------------------------------------------------------------------------------------- super_ni

def read_super_ni_task_list(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """Return ``(tasks, skipped)`` from ``splits/xlingual/train_tasks.txt``; ``_mmmlu_`` tasks are skipped."""
    task_file = Path(data_dir) / SUPER_NI_TASK_LIST
    if not task_file.is_file():
        raise FileNotFoundError(f"SuperNI task list {task_file} does not exist; --raw_data_dir/super_ni must hold the "
                                "natural-instructions repository (scripts/prepare_train_data.sh downloads it)")
    tasks, skipped = [], []
    for line in task_file.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            (skipped if MMLU_TASK_MARKER in line else tasks).append(line.strip())
    return tasks, skipped


def load_super_ni_task(path: str | Path) -> dict[str, Any]:
    """Load one ``tasks/<task>.json`` and check the fields the conversion uses; errors name the file."""
    path = Path(path)
    task = _read_json(path)
    _require(isinstance(task, dict), path, "a task file must hold a JSON object")
    for key in ("Definition", "Positive Examples", "Instances"):
        _require(isinstance(task.get(key), list), path, f"needs a list field {key!r}")
    _require(bool(task["Definition"]) and isinstance(task["Definition"][0], str), path,
             "'Definition' must be a non-empty list of strings")
    for i, ex in enumerate(task["Positive Examples"]):
        _require(isinstance(ex, dict) and isinstance(ex.get("input"), str) and isinstance(ex.get("output"), str),
                 path, f"'Positive Examples'[{i}] needs string 'input' and 'output'")
    for i, inst in enumerate(task["Instances"]):
        _require(isinstance(inst, dict) and "id" in inst and isinstance(inst.get("input"), str), path,
                 f"'Instances'[{i}] needs 'id' and a string 'input'")
        out = inst.get("output")
        _require(isinstance(out, list) and bool(out) and isinstance(out[0], str), path,
                 f"'Instances'[{i}] (id {inst['id']!r}) needs 'output' as a non-empty list of strings")
    return task


def convert_super_ni_data(data_dir: str | Path, output_dir: str | Path, zero_shot_examples_per_task: int = 60,
                          few_shot_examples_per_task: int = 20, n_few_shot: int = 2,
                          seed: int | None = None) -> dict[str, Any]:
    """Write ``output_dir/super_ni_data.jsonl`` from the SuperNI tree at ``data_dir``; return a summary dict.

    Per listed task (``_mmmlu_`` tasks skipped): ``random.sample`` zero_shot + few_shot instances (all of them
    if the task has no more). The first ``zero_shot_examples_per_task`` become zero-shot examples with a
    random weighted template on ``Definition[0]``; the rest become few-shot examples with ``n_few_shot``
    random Positive Examples. Uses the global ``random`` generator (``seed`` reseeds it first, if given).
    """
    if seed is not None:
        random.seed(seed)
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    tasks, skipped = read_super_ni_task_list(data_dir)
    task_paths = [data_dir / "tasks" / f"{task}.json" for task in tasks]
    missing = [str(p) for p in task_paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} task(s) listed in {data_dir / SUPER_NI_TASK_LIST} have no task file, "
                                f"e.g. {missing[:3]}; re-download the natural-instructions repository")
    n_per_task = zero_shot_examples_per_task + few_shot_examples_per_task
    n_zero = n_few = 0
    out_path = output_dir / "super_ni_data.jsonl"
    with open_atomic(out_path) as fout:
        for path in tqdm(task_paths, desc="super_ni tasks", unit="task"):
            task = load_super_ni_task(path)
            instruction = task["Definition"][0]
            instances = task["Instances"]
            if n_per_task < len(instances):
                instances = random.sample(instances, k=n_per_task)
            for inst in instances[:zero_shot_examples_per_task]:
                ex = encode_instruction_example(instruction, inst["input"], inst["output"][0], random_template=True)
                fout.write(_chat_record("super_ni", f"super_ni_{inst['id']}", ex["prompt"], ex["completion"]))
                n_zero += 1
            positives = task["Positive Examples"]
            for inst in instances[zero_shot_examples_per_task:]:
                examplars = random.sample(positives, k=n_few_shot) if n_few_shot < len(positives) else positives
                ex = encode_few_shot_example(instruction, examplars, inst["input"], inst["output"][0])
                fout.write(_chat_record("super_ni", f"super_ni_{inst['id']}", ex["prompt"], ex["completion"]))
                n_few += 1
    summary = {"dataset": "super_ni", "output": str(out_path), "tasks_used": len(tasks),
               "tasks_skipped_mmmlu": len(skipped), "zero_shot": n_zero, "few_shot": n_few,
               "examples": n_zero + n_few}
    print(f"super_ni: {len(tasks)} tasks used, {len(skipped)} skipped ({MMLU_TASK_MARKER}); wrote {n_zero} zero-shot "
          f"+ {n_few} few-shot = {n_zero + n_few} examples to {out_path}")
    return summary


# ------------------------------------------------------------------------------------ other datasets

def convert_code_alpaca_data(data_dir: str | Path, output_dir: str | Path, num_examples: int | None = None,
                             seed: int | None = None) -> dict[str, Any]:
    """``code_alpaca_20k.json`` (a JSON array of instruction/input/output) → ``code_alpaca_data.jsonl``."""
    if seed is not None:
        random.seed(seed)
    path = Path(data_dir) / "code_alpaca_20k.json"
    examples = _read_json(path)
    _require(isinstance(examples, list), path, "expected a JSON array of {instruction, input, output} objects")
    for i, ex in enumerate(examples):
        _require(isinstance(ex, dict) and all(isinstance(ex.get(k), str) for k in ("instruction", "input", "output")),
                 path, f"record {i} needs string 'instruction', 'input' and 'output'")
    if num_examples:
        examples = random.sample(examples, k=num_examples)
    out_path = Path(output_dir) / "code_alpaca_data.jsonl"
    with open_atomic(out_path) as fout:
        for idx, ex in enumerate(tqdm(examples, desc="code_alpaca", unit="ex")):
            enc = encode_instruction_example(ex["instruction"], ex["input"], ex["output"], random_template=True)
            fout.write(_chat_record("code_alpaca", f"code_alpaca_{idx}", enc["prompt"], enc["completion"]))
    print(f"code_alpaca: wrote {len(examples)} examples to {out_path}")
    return {"dataset": "code_alpaca", "output": str(out_path), "examples": len(examples)}


def _inputs_targets_records(name: str, examples: list[Any], path: Path, fout) -> int:
    """Write FLAN-style ``{"inputs", "targets"}`` records as chats (prompt gets a newline unless it ends in ':')."""
    for idx, ex in enumerate(tqdm(examples, desc=name, unit="ex")):
        _require(isinstance(ex, dict) and isinstance(ex.get("inputs"), str) and isinstance(ex.get("targets"), str),
                 path, f"record {idx} needs string 'inputs' and 'targets'")
        prompt = ex["inputs"]
        if not prompt.endswith("\n") and not prompt.rstrip().endswith(":"):
            prompt += "\n"
        fout.write(_chat_record(name, f"{name}_{idx}", prompt, ex["targets"]))
    return len(examples)


def convert_cot_data(data_dir: str | Path, output_dir: str | Path, num_zero_shot_examples: int = 50000,
                     num_few_shot_examples: int = 50000, seed: int | None = None) -> dict[str, Any]:
    """``cot_zsopt.jsonl`` + ``cot_fsopt.jsonl`` (FLAN CoT, inputs/targets) → ``cot_data.jsonl``."""
    if seed is not None:
        random.seed(seed)
    examples: list[Any] = []
    for file_name, k in (("cot_zsopt.jsonl", num_zero_shot_examples), ("cot_fsopt.jsonl", num_few_shot_examples)):
        if k > 0:
            part = _read_jsonl(Path(data_dir) / file_name)
            examples.extend(random.sample(part, k=k) if k < len(part) else part)
    out_path = Path(output_dir) / "cot_data.jsonl"
    with open_atomic(out_path) as fout:
        n = _inputs_targets_records("cot", examples, Path(data_dir), fout)
    print(f"cot: wrote {n} examples to {out_path}")
    return {"dataset": "cot", "output": str(out_path), "examples": n}


def convert_flan_v2_data(data_dir: str | Path, output_dir: str | Path,
                         data_file: str = "tulu_v1_resampled_flan_100k.jsonl", seed: int | None = None) -> dict[str, Any]:
    """``tulu_v1_resampled_flan_100k.jsonl`` (inputs/targets) → ``flan_v2_data.jsonl``."""
    if seed is not None:
        random.seed(seed)
    path = Path(data_dir) / data_file
    examples = _read_jsonl(path)
    out_path = Path(output_dir) / "flan_v2_data.jsonl"
    with open_atomic(out_path) as fout:
        n = _inputs_targets_records("flan_v2", examples, path, fout)
    print(f"flan_v2: wrote {n} examples to {out_path}")
    return {"dataset": "flan_v2", "output": str(out_path), "examples": n}


CONVERTERS = {
    "super_ni": convert_super_ni_data,
    "cot": convert_cot_data,
    "flan_v2": convert_flan_v2_data,
    "code_alpaca": convert_code_alpaca_data,
}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw_data_dir", default="data/raw_train",
                    help="directory holding one sub-directory per dataset (default: %(default)s)")
    ap.add_argument("--output_dir", default="data/processed",
                    help="where OUTPUT_DIR/<dataset>/<dataset>_data.jsonl is written (default: %(default)s)")
    ap.add_argument("--dataset", nargs="+", choices=list(CONVERTERS), default=None,
                    help="datasets to convert, in this order (default: every one whose raw directory exists)")
    ap.add_argument("--seed", type=int, default=42, help="seed for random.seed, set once at the start (default: 42)")
    args = ap.parse_args(argv)

    raw = Path(args.raw_data_dir)
    if args.dataset is None:
        datasets = [d for d in CONVERTERS if (raw / d).is_dir()]
        for d in CONVERTERS:
            if d not in datasets:
                print(f"{d}: skipped, no raw directory {raw / d}")
        if not datasets:
            ap.error(f"no raw dataset directory found under {raw}; expected one of "
                     f"{[str(raw / d) for d in CONVERTERS]} (run scripts/prepare_train_data.sh)")
    else:
        datasets = args.dataset
        missing = [str(raw / d) for d in datasets if not (raw / d).is_dir()]
        if missing:
            ap.error(f"raw data directory not found: {missing} (run scripts/prepare_train_data.sh)")

    random.seed(args.seed)
    summaries = []
    for d in datasets:
        summaries.append(CONVERTERS[d](raw / d, Path(args.output_dir) / d))
    return summaries


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
