"""GSM8K: grade-school math word problems, exact match of the final number, 8-shot chain of thought.

    python -m eval.gsm.run_eval --data_dir data/eval/gsm --save_dir output/run/gsm_results --n_shot 8 \\
        --model_name_or_path BASE --adapter_path output/run --eval_batch_size 16 --use_chat_format

In Python, on a model already loaded: ``evaluate_gsm(model, tokenizer, data_dir, n_shot=8, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Data: ``--data_dir/test.jsonl`` (``{"question", "answer"}``, the answer's rationale ending in "#### <number>")
and, for the exemplars, ``--data_dir/cot_exemplars.jsonl`` (``{"question", "cot_answer", "short_answer"}``;
``scripts/prepare_eval_data.sh gsm`` writes the 8 chain-of-thought exemplars of Wei et al. (2022), taken
from lm-eval's ``gsm8k-cot`` task).

Prompt: "Answer the following questions.\\n\\n" + the first ``--n_shot`` exemplars ("Question: ..\\nAnswer: ..",
the answer the rationale, or only the number with ``--no_cot``), joined by "\\n\\n", then "\\n\\nQuestion: {q}"
and "\\nAnswer:" (with ``--use_chat_format`` the text is the user turn and "Answer:" follows the assistant
header). Greedy generation of at most 512 tokens, stopping at a blank line without chat format.

Answer extraction: commas between digits are removed, the prediction is the last number in the output
(the whole output when there is none). Gold: the text after "####", commas removed. Metric: exact match
ignoring case and punctuation, as HF ``evaluate``'s exact_match does.

Outputs in ``--save_dir``: ``predictions.jsonl`` (question, answer, model_output, prediction, correct) and
``metrics.json`` = ``{"exact_match": ..}`` (a fraction, 0-1).
"""

from __future__ import annotations

import argparse
import random
import re
import string
from pathlib import Path

from eval.cli import add_overwrite_argument, read_jsonl_file, write_metrics
from eval.generation import add_generation_arguments, greedy_outputs, load_model, run_cli
from eval.templates import chat_function, format_chat_prompt
from eval.utils import chat_format, load_tokenizer, require_file, shared_prefix
from open_instruct.files import write_jsonl_atomic

MAX_NEW_TOKENS = 512
NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def strip_digit_commas(text: str) -> str:
    return re.sub(r"(\d),(\d)", r"\1\2", text)


def gold_answer(answer: str) -> str:
    """The number after '####' in a GSM8K rationale, commas removed."""
    if "####" not in answer:
        raise ValueError(f"a GSM8K answer has no '#### <number>' line: {answer[-80:]!r}")
    return strip_digit_commas(answer.split("####")[-1].strip())


def extract_prediction(output: str) -> str:
    """The last number in the output (commas between digits removed), else the output itself."""
    numbers = NUMBER.findall(strip_digit_commas(output))
    return numbers[-1] if numbers else output


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Fraction of exact matches after lowercasing and deleting punctuation (HF evaluate's rules)."""
    if not references:
        raise ValueError("no examples to score")
    norm = [(p.lower().translate(_PUNCTUATION), r.lower().translate(_PUNCTUATION))
            for p, r in zip(predictions, references)]
    return sum(p == r for p, r in norm) / len(references)


def read_jsonl(path: Path, what: str) -> list[dict]:
    return read_jsonl_file(require_file(path, what))


def build_prefix(exemplars: list[dict], n_shot: int, cot: bool) -> str:
    prefix = "Answer the following questions.\n\n"
    if n_shot:
        shots = [f"Question: {ex['question']}\nAnswer: {ex['cot_answer'] if cot else ex['short_answer']}"
                 for ex in exemplars[:n_shot]]
        prefix += "\n\n".join(shots) + "\n\n"
    return prefix


def build_prompt(prefix: str, question: str, chat_fn=None, tokenizer=None) -> str:
    prompt = prefix + "Question: " + question.strip()
    if chat_fn is None:
        return prompt + "\nAnswer:"
    prompt = format_chat_prompt(chat_fn, [{"role": "user", "content": prompt}], tokenizer)
    return prompt + ("Answer:" if prompt[-1] in ("\n", " ") else " Answer:")


def score(examples: list[dict], outputs: list[str]) -> tuple[list[dict], dict]:
    """Per-question records and ``{"exact_match"}``."""
    records = []
    for ex, output in zip(examples, outputs):
        prediction, gold = extract_prediction(output), gold_answer(ex["answer"])
        records.append({"question": ex["question"], "answer": gold, "model_output": output,
                        "prediction": prediction, "correct": exact_match([prediction], [gold]) == 1.0})
    return records, {"exact_match": exact_match([r["prediction"] for r in records],
                                                [r["answer"] for r in records])}


def read_gsm(data_dir: str | Path, n_shot: int = 8, exemplars_file: str | Path | None = None,
             max_num_examples: int | None = None) -> tuple[list[dict], list[dict]]:
    """``(questions, exemplars)``, checked: the test questions (a seeded sample of ``max_num_examples``) and the
    chain-of-thought exemplars (``<data_dir>/cot_exemplars.jsonl`` unless ``exemplars_file``; none for 0 shots)."""
    data_dir = Path(data_dir)
    if n_shot < 0:
        raise ValueError(f"--n_shot must be >= 0, got {n_shot}.")
    examples = read_jsonl(data_dir / "test.jsonl", "the GSM8K test file (test.jsonl)")
    for i, ex in enumerate(examples, 1):
        if not isinstance(ex, dict) or not {"question", "answer"} <= set(ex):
            raise ValueError(f"{data_dir / 'test.jsonl'} line {i}: expected an object with question and answer.")
        gold_answer(ex["answer"])
    if max_num_examples and len(examples) > max_num_examples:
        examples = random.Random(42).sample(examples, max_num_examples)
    exemplars = []
    if n_shot:
        exemplars = read_jsonl(Path(exemplars_file or data_dir / "cot_exemplars.jsonl"),
                               "the GSM8K chain-of-thought exemplars (cot_exemplars.jsonl)")
        if len(exemplars) < n_shot:
            raise ValueError(f"--n_shot {n_shot}: only {len(exemplars)} exemplars available.")
    return examples, exemplars


def evaluate_gsm(model, tokenizer, data, *, n_shot: int = 8, cot: bool = True, exemplars_file=None,
                 max_num_examples: int | None = None, chat_format=None, max_new_tokens: int = MAX_NEW_TOKENS,
                 batch_size: int = 1, shared_prefix: bool = True, save_dir: str | Path | None = None) -> dict:
    """``{"exact_match"}`` of ``model`` (a Hugging Face model, its tokenizer left padded, or a vLLM engine) on
    GSM8K. ``data``: the data folder, or the ``(questions, exemplars)`` that ``read_gsm`` returned; ``chat_format``:
    a formatting function or its name (None: plain prompts). With ``save_dir``, writes ``predictions.jsonl`` there."""
    if isinstance(data, (str, Path)):
        data = read_gsm(data, n_shot, exemplars_file, max_num_examples)
    examples, exemplars = data
    chat_fn = chat_function(chat_format)
    prefix = build_prefix(exemplars, n_shot, cot=cot)
    prompts = [build_prompt(prefix, ex["question"], chat_fn, tokenizer) for ex in examples]
    stop = None if chat_fn is not None else ["\n\n"]
    outputs = greedy_outputs(model, tokenizer, prompts, max_new_tokens, stop, batch_size, shared_prefix, desc="GSM8K")

    records, metrics = score(examples, outputs)
    if save_dir is not None:
        write_jsonl_atomic(Path(save_dir) / "predictions.jsonl", records, ensure_ascii=True)
    print(f"GSM8K exact match: {metrics['exact_match']:.4f} on {len(records)} questions")
    return metrics


def run(args) -> dict:
    data = read_gsm(args.data_dir, args.n_shot, args.exemplars_file, args.max_num_examples)
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path,
                               use_fast=not args.use_slow_tokenizer)
    chat_fn = chat_function(chat_format(args))
    metrics = evaluate_gsm(load_model(args, args.adapter_path), tokenizer, data, n_shot=args.n_shot,
                           cot=not args.no_cot, chat_format=chat_fn, max_new_tokens=args.max_new_tokens,
                           batch_size=args.eval_batch_size, shared_prefix=shared_prefix(args), save_dir=args.save_dir)
    write_metrics(args.save_dir, metrics)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_dir", default="data/eval/gsm", help="folder with test.jsonl and cot_exemplars.jsonl")
    ap.add_argument("--save_dir", default="results/gsm", help="where metrics.json and predictions.jsonl go")
    add_overwrite_argument(ap)
    ap.add_argument("--n_shot", type=int, default=8, help="exemplars in the prompt (default 8)")
    ap.add_argument("--no_cot", action="store_true", help="exemplars give only the final number")
    ap.add_argument("--exemplars_file", default=None, help="default: <data_dir>/cot_exemplars.jsonl")
    ap.add_argument("--max_num_examples", type=int, default=None, help="a seeded sample of N questions")
    add_generation_arguments(ap, MAX_NEW_TOKENS)
    return ap


def main(argv=None) -> dict:
    return run_cli(run, build_parser(), argv)


if __name__ == "__main__":
    main()
