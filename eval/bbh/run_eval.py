"""BBH (BIG-Bench Hard): 3-shot prompts per task, with or without chain of thought, exact match per task.

    python -m eval.bbh.run_eval --data_dir data/eval/bbh --save_dir output/run/bbh_results/cot \\
        --model_name_or_path BASE --adapter_path output/run --eval_batch_size 16 --use_chat_format [--no_cot]

In Python, on a model already loaded: ``evaluate_bbh(model, tokenizer, data_dir, cot=True, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Data: ``--data_dir/bbh/<task>.json`` (``{"examples": [{"input", "target"}]}``) and
``--data_dir/cot-prompts/<task>.txt``, as in the BBH repository; the prompt file's first two lines are a
header and are skipped. Offline, ``scripts/prepare_eval_data.sh bbh`` builds these files from BIG-bench
(``eval/data_prep/bbh.py``): that set is labelled "BBH (rebuilt from BIG-bench)" (``MANIFEST.json``), and
the label is printed and written to ``dataset.json`` next to the metrics; it is not BBH.

Prompt: the prompt file (without its header), stripped, + "\\n\\nQ: " + input, then "\\nA:" (with
``--use_chat_format`` the text is the user turn and "A:" follows the assistant header). ``--no_cot`` cuts
every exemplar's reasoning, leaving "A: <answer>". Greedy generation of at most 512 tokens, stopping at a
blank line without chat format.

Answer: the text after "the answer is" up to the next ".", else the whole output, stripped. Metric: exact
match ignoring case and punctuation, per task (0-1).

Outputs in ``--save_dir``: ``predictions/<task>.jsonl`` (input, target, model_output, prediction, correct),
``metrics.json`` = ``{<task>: em, ..., "average_exact_match": mean over tasks}`` and ``dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from eval.cli import Progress, add_overwrite_argument, read_json_file, write_atomic, write_metrics
from eval.generation import add_generation_arguments, greedy_outputs, load_model, run_cli
from eval.gsm.run_eval import exact_match
from eval.templates import chat_function, format_chat_prompt
from eval.utils import DATA_HINT, chat_format, load_tokenizer, require_file, shared_prefix
from open_instruct.files import write_jsonl_atomic

MAX_NEW_TOKENS = 512
ANSWER = re.compile(r"[t|T]he answer is (.*?)\.")
COT_EXEMPLAR = re.compile(r"A: Let's think step by step\..*?So the answer is (.*?)\.(?=\n\n|\s*$)", re.DOTALL)


def list_tasks(data_dir: Path) -> list[str]:
    tasks = sorted(p.stem for p in (data_dir / "bbh").glob("*.json"))
    if not tasks:
        raise FileNotFoundError(f"--data_dir {data_dir}: no task files bbh/<task>.json. {DATA_HINT}")
    return tasks


def dataset_label(data_dir: Path) -> dict:
    """``{"name", "source"}`` from the set's MANIFEST.json (written by prepare_eval_data.sh), else BBH."""
    manifest = data_dir / "MANIFEST.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        return {"name": data.get("label", "BBH"), "source": data.get("source", "unknown")}
    return {"name": "BBH", "source": f"files in {data_dir} (no MANIFEST.json)"}


def read_prompt(data_dir: Path, task: str, cot: bool) -> str:
    """The task's few-shot prompt: the file without its 2 header lines, stripped; reasoning cut without CoT."""
    path = require_file(data_dir / "cot-prompts" / f"{task}.txt", f"the BBH prompt of {task}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is skipped
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte offset {err.start}); download it again") from None
    prompt = "".join(text.splitlines(keepends=True)[2:]).strip()
    if not cot:
        prompt = COT_EXEMPLAR.sub(lambda m: "A: " + m.group(1), prompt)
    return prompt


def build_prompt(task_prompt: str, question: str, chat_fn=None, tokenizer=None) -> str:
    prompt = task_prompt + "\n\nQ: " + question
    if chat_fn is None:
        return prompt + "\nA:"
    prompt = format_chat_prompt(chat_fn, [{"role": "user", "content": prompt}], tokenizer)
    return prompt + ("A:" if prompt[-1] in ("\n", " ") else " A:")


def extract_answer(output: str) -> str:
    match = ANSWER.search(output)
    return (match.group(1) if match else output).strip()


def read_examples(data_dir: Path, task: str, max_per_task: int | None) -> list[dict]:
    path = require_file(data_dir / "bbh" / f"{task}.json", f"the BBH task file of {task}")
    try:
        examples = read_json_file(path, f"the BBH task file of {task}")["examples"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected {{\"examples\": [{{\"input\", \"target\"}}, ...]}} ({err}).") from None
    if not isinstance(examples, list) or not all(isinstance(e, dict) and {"input", "target"} <= set(e)
                                                 for e in examples):
        raise ValueError(f"{path}: every example needs an input and a target.")
    if not examples:
        raise ValueError(f"{path} holds no examples.")
    if max_per_task and len(examples) > max_per_task:
        examples = random.Random(42).sample(examples, max_per_task)
    return examples


def read_bbh(data_dir: str | Path, tasks: list[str] | None = None, cot: bool = True,
             max_num_examples_per_task: int | None = None) -> dict[str, tuple[str, list[dict]]]:
    """``{task: (few-shot prompt, examples)}``, checked, for ``tasks`` (default: every ``bbh/<task>.json``)."""
    data_dir = Path(data_dir)
    available = list_tasks(data_dir)
    if tasks:
        unknown = sorted(set(tasks) - set(available))
        if unknown:
            raise ValueError(f"--tasks {unknown} have no file in {data_dir / 'bbh'}; available: {available}")
    data = {}
    for task in available:
        if not tasks or task in tasks:
            examples = read_examples(data_dir, task, max_num_examples_per_task)
            data[task] = read_prompt(data_dir, task, cot=cot), examples
    return data


def kept_predictions(save_dir: Path | None, progress: Progress | None, task: str) -> Path | None:
    """The task's predictions file when an interrupted run with the same settings finished it, else None."""
    if save_dir is None or progress is None:
        return None
    path = Path(save_dir) / "predictions" / f"{task}.jsonl"
    return path if task in progress and path.is_file() else None


def evaluate_bbh(model, tokenizer, data, *, tasks: list[str] | None = None, cot: bool = True,
                 max_num_examples_per_task: int | None = None, chat_format=None,
                 max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 1, shared_prefix: bool = True,
                 save_dir: str | Path | None = None, progress: Progress | None = None) -> dict:
    """``{<task>: exact match, ..., "average_exact_match"}`` of ``model`` (a Hugging Face model, its tokenizer left
    padded, or a vLLM engine). ``data``: the data folder, or what ``read_bbh`` returned; ``chat_format``: a
    formatting function or its name (None: plain prompts). With ``save_dir``, each task's predictions go to
    ``predictions/<task>.jsonl`` as it finishes; with ``progress`` as well, tasks an interrupted run with the same
    settings finished are read back instead of generated again (``model`` may be None when every task is kept)."""
    if isinstance(data, (str, Path)):
        data = read_bbh(data, tasks, cot, max_num_examples_per_task)
    chat_fn = chat_function(chat_format)
    stop = None if chat_fn is not None else ["\n\n"]
    if save_dir is not None:
        (Path(save_dir) / "predictions").mkdir(parents=True, exist_ok=True)
    # Each task's outputs equal a run over all prompts at once (greedy decoding of a prompt does not depend on the
    # other prompts of its batch), so a rerun that generates only the unfinished tasks gives the same results.
    metrics = {}
    for task, (task_prompt, examples) in data.items():
        kept = kept_predictions(save_dir, progress, task)
        if kept is not None:
            records = [json.loads(line) for line in kept.read_text(encoding="utf-8").splitlines() if line.strip()]
            print(f"{task}: scored by an interrupted run with the same settings; kept ({kept})")
        else:
            prompts = [build_prompt(task_prompt, ex["input"], chat_fn, tokenizer) for ex in examples]
            outputs = greedy_outputs(model, tokenizer, prompts, max_new_tokens, stop, batch_size, shared_prefix,
                                     desc=f"BBH {task}")
            records = []
            for ex, output in zip(examples, outputs):
                prediction = extract_answer(output)
                records.append({"input": ex["input"], "target": ex["target"], "model_output": output,
                                "prediction": prediction,
                                "correct": exact_match([prediction], [ex["target"]]) == 1.0})
            if save_dir is not None:
                write_jsonl_atomic(Path(save_dir) / "predictions" / f"{task}.jsonl", records)
            if progress is not None:
                progress.add(task)
        metrics[task] = exact_match([r["prediction"] for r in records], [r["target"] for r in records])
        print(f"{task}: {metrics[task]:.4f}")
    metrics["average_exact_match"] = sum(metrics.values()) / len(data)
    return metrics


def run(args) -> dict:
    data_dir, save_dir = Path(args.data_dir), Path(args.save_dir)
    data = read_bbh(data_dir, args.tasks, not args.no_cot, args.max_num_examples_per_task)
    label = dataset_label(data_dir)
    print(f"{label['name']}: {len(data)} tasks, {'no ' if args.no_cot else ''}chain of thought "
          f"(source: {label['source']})")
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path,
                               use_fast=not args.use_slow_tokenizer)
    chat_fn = chat_function(chat_format(args))
    # a task scored by an interrupted run with the same settings is kept (its predictions file is written
    # atomically, then recorded); a rerun scores only the rest.
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("save_dir", "overwrite", "tasks")}
    progress = Progress(save_dir, settings, args.overwrite)
    needed = any(kept_predictions(save_dir, progress, task) is None for task in data)
    model = load_model(args, args.adapter_path) if needed else None
    metrics = evaluate_bbh(model, tokenizer, data, chat_format=chat_fn, max_new_tokens=args.max_new_tokens,
                           batch_size=args.eval_batch_size, shared_prefix=shared_prefix(args), save_dir=save_dir,
                           progress=progress)
    print(f"{label['name']}: average exact match {metrics['average_exact_match']:.4f}")
    write_atomic(save_dir / "dataset.json", lambda tmp: tmp.write_text(json.dumps({**label, "cot": not args.no_cot},
                                                                                indent=4)))
    write_metrics(save_dir, metrics)
    progress.finish()
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_dir", default="data/eval/bbh", help="folder with bbh/ and cot-prompts/")
    ap.add_argument("--save_dir", default="results/bbh", help="where metrics.json and predictions/ go")
    add_overwrite_argument(ap)
    ap.add_argument("--no_cot", action="store_true", help="exemplars without their reasoning")
    ap.add_argument("--tasks", nargs="*", help="only these tasks (default: every bbh/<task>.json)")
    ap.add_argument("--max_num_examples_per_task", type=int, default=None, help="a seeded sample per task")
    add_generation_arguments(ap, MAX_NEW_TOKENS)
    return ap


def main(argv=None) -> dict:
    return run_cli(run, build_parser(), argv)


if __name__ == "__main__":
    main()
