"""Multiple choice in cloze form: pick the answer whose *text* the model finds most likely.

    python -m eval.cloze.run_eval --task mmlu --data_dir data/eval/mmlu --n_instances 5 \\
        --model_name_or_path models/smollm2-135m-instruct --adapter_path output/run --save_dir output/run/cloze_mmlu
    python -m eval.cloze.run_eval --task arc_easy --data_file data/eval/arc_easy/test.jsonl --n_instances 500 ...

In Python, on a model already loaded: ``evaluate_cloze(model, tokenizer, "arc_easy", data_file, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Small models score at chance on MMLU's letter format (they cannot map a letter to an answer), but the
log-likelihood of each answer's text still separates them. Prompts are plain text (no chat format):

    mmlu      "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
              "Question: {question}\\nAnswer:"  + " {choice}"        (test split, headerless CSV)
    arc_easy  "Question: {question}\\nAnswer:" + " {choice}"          (JSONL: question, choices, gold)

Metrics (``metrics.json``): ``acc`` (argmax of the summed log-probability), ``acc_per_char`` (argmax of the
log-probability divided by the answer's length in characters, the usual choice for ARC), ``n``; per-question
rows in ``predictions.jsonl``. ``--n_instances`` takes a fixed random subset (seed 42): per subject for MMLU,
overall for ARC.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pandas as pd

from eval.cli import EvalInputError, add_overwrite_argument, check_save_dir, run_cli
from eval.loglik import continuation_logprobs
from eval.utils import (
    DATA_HINT,
    add_model_arguments,
    load_hf_lm_and_tokenizer,
    model_dtype,
    parse_eval_args,
    require_file,
    shared_prefix,
)
from open_instruct.files import write_jsonl_atomic

TASKS = ("mmlu", "arc_easy")


def mmlu_questions(data_dir: Path, n_instances: int | None) -> list[dict]:
    test_dir = data_dir / "test"
    files = sorted(test_dir.glob("*_test.csv")) if test_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no <subject>_test.csv files in {test_dir}. {DATA_HINT}")
    questions = []
    for path in files:
        subject = path.name[: -len("_test.csv")]
        try:  # utf-8-sig: a byte-order mark is skipped
            df = pd.read_csv(path, header=None, keep_default_na=False, dtype=str, encoding="utf-8-sig")
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path} is empty; fix or download it again. {DATA_HINT}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a readable CSV ({str(err).strip().splitlines()[-1]}); fix or download "
                             f"it again. {DATA_HINT}") from None
        if df.shape[1] != 6:
            raise ValueError(f"{path}: expected 6 columns (question, A, B, C, D, answer), found {df.shape[1]}")
        rows = list(range(len(df)))
        if n_instances and n_instances < len(rows):
            rows = sorted(random.Random(42).sample(rows, n_instances))
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        for i in rows:
            question, *choices, answer = (str(x) for x in df.iloc[i])
            if answer.strip() not in ("A", "B", "C", "D"):
                raise ValueError(f"{path} row {i + 1}: answer must be one of A, B, C, D, got {answer!r}")
            questions.append({"id": f"{subject}-{i}", "subject": subject,
                              "context": f"{header}Question: {question.strip()}\nAnswer:",
                              "choices": [c.strip() for c in choices], "gold": "ABCD".index(answer.strip())})
    return questions


def arc_questions(data_file: Path, n_instances: int | None) -> list[dict]:
    questions = []
    try:
        lines = require_file(data_file, "the ARC JSONL file").read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{data_file} is not UTF-8 text (byte offset {err.start}); fix or download it again") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            choices, gold = list(row["choices"]), int(row["gold"])
            question = str(row["question"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{data_file} line {lineno}: expected JSON with question, choices, gold ({e})") from None
        if not 0 <= gold < len(choices):
            raise ValueError(f"{data_file} line {lineno}: gold {gold} is not an index into {len(choices)} choices")
        questions.append({"id": str(row.get("id", lineno)), "context": f"Question: {question.strip()}\nAnswer:",
                          "choices": [str(c).strip() for c in choices], "gold": gold})
    if n_instances and n_instances < len(questions):
        keep = sorted(random.Random(42).sample(range(len(questions)), n_instances))
        questions = [questions[i] for i in keep]
    return questions


def score(model, tokenizer, questions: list[dict], batch_size: int, shared_prefix: bool = True) -> tuple[dict, list[dict]]:
    """Score every choice of every question; returns (metrics, per-question rows)."""
    pairs = [(q["context"], " " + choice) for q in questions for choice in q["choices"]]
    logprobs = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, desc="Cloze choices",
                                     shared_prefix=shared_prefix)
    rows, k, hits, hits_char = [], 0, 0, 0
    for q in questions:
        lp = [logprobs[k + j][0] for j in range(len(q["choices"]))]
        k += len(q["choices"])
        per_char = [v / max(len(" " + c), 1) for v, c in zip(lp, q["choices"])]
        pred, pred_char = max(range(len(lp)), key=lp.__getitem__), max(range(len(lp)), key=per_char.__getitem__)
        hits += pred == q["gold"]
        hits_char += pred_char == q["gold"]
        rows.append({"id": q["id"], "gold": q["gold"], "pred": pred, "pred_per_char": pred_char, "logprobs": lp})
    n = len(questions)
    return {"acc": hits / n, "acc_per_char": hits_char / n, "n": n}, rows


def read_cloze(task: str, data: str | Path, n_instances: int | None = None) -> list[dict]:
    """The questions of ``task``: ``data`` is the MMLU folder (``mmlu``) or the ARC JSONL file (``arc_easy``)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    questions = mmlu_questions(Path(data), n_instances) if task == "mmlu" else arc_questions(Path(data), n_instances)
    if not questions:
        raise ValueError(f"{data} holds no questions for --task {task} (an empty file?)")
    return questions


def evaluate_cloze(model, tokenizer, task: str, data, *, n_instances: int | None = None, batch_size: int = 1,
                   shared_prefix: bool = True, save_dir: str | Path | None = None) -> dict:
    """``{"acc", "acc_per_char", "n", "task"}`` of ``model`` on ``task`` (mmlu or arc_easy) in cloze form. ``data``:
    the task's data (see ``read_cloze``), or the questions ``read_cloze`` returned. With ``save_dir``, writes the
    per-question rows to ``predictions.jsonl`` there."""
    questions = read_cloze(task, data, n_instances) if isinstance(data, (str, Path)) else data
    metrics, rows = score(model, tokenizer, questions, batch_size, shared_prefix)
    metrics["task"] = task
    if save_dir is not None:
        write_jsonl_atomic(Path(save_dir) / "predictions.jsonl", rows, ensure_ascii=True)
    return metrics


def run(args) -> dict:
    save_dir = check_save_dir(args.save_dir, args.overwrite)
    questions = read_cloze(args.task, args.data_dir if args.task == "mmlu" else args.data_file, args.n_instances)
    model, tokenizer = load_hf_lm_and_tokenizer(args.model_name_or_path, args.tokenizer_name_or_path,
                                                adapter_path=args.adapter_path, load_in_8bit=args.load_in_8bit,
                                                use_fast_tokenizer=not args.use_slow_tokenizer,
                                                padding_side="right", dtype=model_dtype(args))
    metrics = evaluate_cloze(model, tokenizer, args.task, questions, batch_size=args.eval_batch_size,
                             shared_prefix=shared_prefix(args), save_dir=save_dir)
    (save_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{args.task} (cloze, {metrics['n']} questions): acc {metrics['acc']:.4f}, "
          f"acc_per_char {metrics['acc_per_char']:.4f} -> {save_dir / 'metrics.json'}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, required=True)
    ap.add_argument("--data_dir", default="data/eval/mmlu", help="MMLU folder with test/<subject>_test.csv")
    ap.add_argument("--data_file", default="data/eval/arc_easy/test.jsonl", help="ARC JSONL (question, choices, gold)")
    ap.add_argument("--n_instances", type=int, default=None, help="fixed random subset (per subject for MMLU)")
    ap.add_argument("--save_dir", required=True, help="where metrics.json and predictions.jsonl go")
    add_overwrite_argument(ap)
    add_model_arguments(ap, batch_help="sequences per forward pass")
    return ap


def main(argv=None) -> dict:
    args = parse_eval_args(build_parser(), argv)
    try:
        return run(args)
    except ValueError as err:  # the data checks above; EvalInputError and missing files pass through
        raise EvalInputError(str(err)) from None


if __name__ == "__main__":
    run_cli(main)
