"""BBH (BIG-Bench Hard): 3-shot prompts per task, with or without chain of thought, exact match per task.

    python -m eval.bbh.run_eval --data_dir data/eval/bbh --save_dir output/run/bbh_results/cot \\
        --model_name_or_path BASE --adapter_path output/run --eval_batch_size 16 --use_chat_format [--no_cot]

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
from eval.generation import _hf_model, add_generation_arguments, greedy_outputs, run_cli
from eval.gsm.run_eval import exact_match
from eval.templates import format_chat_prompt, get_chat_formatting_function
from eval.utils import DATA_HINT, load_tokenizer, require_file

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


def run(args) -> dict:
    data_dir, save_dir = Path(args.data_dir), Path(args.save_dir)
    tasks = list_tasks(data_dir)
    if args.tasks:
        unknown = sorted(set(args.tasks) - set(tasks))
        if unknown:
            raise ValueError(f"--tasks {unknown} have no file in {data_dir / 'bbh'}; available: {tasks}")
        tasks = [t for t in tasks if t in args.tasks]
    label = dataset_label(data_dir)
    print(f"{label['name']}: {len(tasks)} tasks, {'no ' if args.no_cot else ''}chain of thought "
          f"(source: {label['source']})")
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path,
                               use_fast=not args.use_slow_tokenizer)
    chat_fn = get_chat_formatting_function(args.chat_formatting_function) if args.use_chat_format else None
    by_task, prompts = {}, {}
    for task in tasks:
        examples = read_examples(data_dir, task, args.max_num_examples_per_task)
        task_prompt = read_prompt(data_dir, task, cot=not args.no_cot)
        by_task[task] = examples
        prompts[task] = [build_prompt(task_prompt, ex["input"], chat_fn, tokenizer) for ex in examples]
    stop = None if args.use_chat_format else ["\n\n"]

    (save_dir / "predictions").mkdir(parents=True, exist_ok=True)
    # a task scored by an interrupted run with the same settings is kept (its predictions file is written
    # atomically, then recorded); a rerun scores only the rest. Each task's outputs equal a run over all prompts
    # at once (greedy decoding of a prompt does not depend on the other prompts of its batch).
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("save_dir", "overwrite", "tasks")}
    progress = Progress(save_dir, settings, args.overwrite)
    model = None
    metrics = {}
    for task, examples in by_task.items():
        path = save_dir / "predictions" / f"{task}.jsonl"
        if task in progress and path.is_file():
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            print(f"{task}: scored by an interrupted run with the same settings; kept ({path})")
        else:
            if model is None and not args.use_vllm:
                model = _hf_model(args)
            outputs = greedy_outputs(args, prompts[task], tokenizer, args.max_new_tokens, stop, model=model,
                                     desc=f"BBH {task}")
            records = []
            for ex, output in zip(examples, outputs):
                prediction = extract_answer(output)
                records.append({"input": ex["input"], "target": ex["target"], "model_output": output,
                                "prediction": prediction,
                                "correct": exact_match([prediction], [ex["target"]]) == 1.0})
            write_atomic(path, lambda tmp, rs=records: tmp.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs), encoding="utf-8"))
            progress.add(task)
        metrics[task] = exact_match([r["prediction"] for r in records], [r["target"] for r in records])
        print(f"{task}: {metrics[task]:.4f}")
    metrics["average_exact_match"] = sum(metrics.values()) / len(by_task)
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
