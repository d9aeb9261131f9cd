"""MMLU evaluation, as in open-instruct (and so as in the MoS paper), on a model with an optional adapter.

    python -m eval.mmlu.run_eval --ntrain 0 --data_dir data/eval/mmlu --save_dir output/run/mmlu_results \\
        --model_name_or_path meta-llama/Llama-2-7b-hf --adapter_path output/run --eval_batch_size 16 \\
        --use_chat_format --chat_formatting_function eval.templates.create_prompt_with_tulu_chat_format

In Python, on a model already loaded: ``evaluate_mmlu(model, tokenizer, data_dir, ntrain=0, ...)``
returns the metrics (it writes no file unless given ``save_dir``).

Prompt (per test row): "The following are multiple choice questions (with answers) about {subject}.\\n\\n",
then k dev examples "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: {X}\\n\\n", then the question without
its answer, ending in "\\nAnswer:". The subject is written as in the original: each "_"-separated word
preceded by a space, so there are two spaces after "about". With ``--use_chat_format`` the text is the
user turn of the chat format and "The answer is:" follows the assistant header. k starts at ``--ntrain``
and is reduced while the prompt is longer than 2048 tokens.

Scoring: the softmax of the next-token logits at the last position, restricted to the ids of " A" .. " D"
(the last sub-token of each), argmax. Batches are left padded and tokenized with the tokenizer's special
tokens (BOS for Llama).

Several adapters of a sweep (``--adapter_path a b c``) are scored on one base model load, each into its own
results directory (``--save_dir`` once per adapter, or once: then ``<save_dir>/<adapter directory name>``).

Outputs in ``--save_dir``: ``metrics.json`` with ``average_acc`` (mean over all questions), ``subcat_acc``
and ``cat_acc`` (questions pooled through the maps in ``eval/mmlu/categories.py``; subjects outside the
maps count only in ``average_acc``), and ``{subject}.csv``: the test rows plus ``correct`` and
``choiceA_probs`` .. ``choiceD_probs``.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from eval.cli import (
    EvalInputError,
    Progress,
    add_overwrite_argument,
    check_save_dir,
    int_at_least,
    run_cli,
    write_atomic,
    write_metrics,
)
from eval.mmlu.categories import categories, subcategories
from eval.templates import chat_function, format_chat_prompt
from eval.utils import (
    DATA_HINT,
    adapter_save_dirs,
    add_model_arguments,
    chat_format,
    get_next_word_predictions,
    iter_adapter_models,
    load_hf_lm_and_tokenizer,
    model_dtype,
    parse_eval_args,
    read_adapter_config,
    require_file,
    shared_prefix,
)

CHOICES = ["A", "B", "C", "D"]
MAX_PROMPT_TOKENS = 2048


# ----------------------------------------------------------------------------------------------- prompts

def format_subject(subject: str) -> str:
    """" high school physics" for "high_school_physics" (leading space kept, as in the original)."""
    return "".join(" " + word for word in subject.split("_"))


def format_example(df: pd.DataFrame, idx: int, include_answer: bool = True) -> str:
    """One question block: question, lettered choices, "Answer:" (and " {answer}\\n\\n" for demos)."""
    prompt = str(df.iloc[idx, 0])
    n_choices = df.shape[1] - 2
    for j in range(n_choices):
        prompt += f"\n{CHOICES[j]}. {df.iloc[idx, j + 1]}"
    prompt += "\nAnswer:"
    if include_answer:
        prompt += f" {df.iloc[idx, n_choices + 1]}\n\n"
    return prompt


def gen_prompt(dev_df: pd.DataFrame, subject: str, k: int = -1) -> str:
    """The subject header followed by the first k dev examples (all of them for k = -1)."""
    prompt = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    k = dev_df.shape[0] if k == -1 else min(k, dev_df.shape[0])
    for i in range(k):
        prompt += format_example(dev_df, i)
    return prompt


def build_prompt(dev_df, test_df, idx: int, subject: str, ntrain: int, tokenizer, chat_fn=None,
                 max_prompt_tokens: int = MAX_PROMPT_TOKENS) -> str:
    """The full prompt for test row ``idx``, dropping dev shots while it exceeds ``max_prompt_tokens``."""
    prompt_end = format_example(test_df, idx, include_answer=False)
    k = ntrain
    while True:
        prompt = gen_prompt(dev_df, subject, k) + prompt_end
        if chat_fn is not None:
            prompt = format_chat_prompt(chat_fn, [{"role": "user", "content": prompt}], tokenizer)
            prompt += "The answer is:" if prompt[-1] in ("\n", " ") else " The answer is:"
        n_tokens = len(tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids)
        if n_tokens <= max_prompt_tokens:
            return prompt
        if k <= 0:
            warnings.warn(f"{subject} row {idx}: the prompt has {n_tokens} tokens (> {max_prompt_tokens}) even "
                          "without dev examples; evaluating it as is.", stacklevel=2)
            return prompt
        k -= 1


def answer_choice_ids(tokenizer) -> list[int]:
    """Token ids of " A" .. " D": the last sub-token of each (the prompt ends in "Answer:")."""
    return [tokenizer.encode(" " + choice, add_special_tokens=False)[-1] for choice in CHOICES]


# ----------------------------------------------------------------------------------------------- scoring

def eval_subject(model, tokenizer, subject: str, dev_df, test_df, ntrain: int, chat_fn=None, batch_size: int = 1,
                 max_prompt_tokens: int = MAX_PROMPT_TOKENS, shared_prefix: bool = True):
    """Score one subject. Returns ``(correct: bool array, probs: (n, 4) array)``."""
    prompts = [build_prompt(dev_df, test_df, i, subject, ntrain, tokenizer, chat_fn, max_prompt_tokens)
               for i in range(test_df.shape[0])]
    pred_indices, probs = get_next_word_predictions(model, tokenizer, prompts, answer_choice_ids(tokenizer),
                                                    batch_size=batch_size, desc=subject,
                                                    shared_prefix=shared_prefix)
    answers = test_df.iloc[:, -1].astype(str).str.strip().to_numpy()
    correct = np.array([CHOICES[p] == a for p, a in zip(pred_indices, answers)], dtype=bool)
    return correct, np.array(probs, dtype=np.float64).reshape(len(prompts), len(CHOICES))


def aggregate(correct_by_subject: dict[str, np.ndarray]) -> dict:
    """``average_acc`` over all questions; ``subcat_acc``/``cat_acc`` pooling questions through the maps.

    Subcategories and categories with no evaluated question are left out; subjects outside the maps count
    only in ``average_acc``.
    """
    subcat_cors: dict[str, list] = {sub: [] for subs in subcategories.values() for sub in subs}
    cat_cors: dict[str, list] = {cat: [] for cat in categories}
    for subject, cors in correct_by_subject.items():
        for sub in subcategories.get(subject, []):
            subcat_cors[sub].append(cors)
            for cat, cat_subs in categories.items():
                if sub in cat_subs:
                    cat_cors[cat].append(cors)

    def mean(arrays):
        return float(np.mean(np.concatenate(arrays)))

    return {
        "average_acc": mean(list(correct_by_subject.values())),
        "subcat_acc": {sub: mean(c) for sub, c in subcat_cors.items() if c},
        "cat_acc": {cat: mean(c) for cat, c in cat_cors.items() if c},
    }


def list_subjects(data_dir: Path) -> list[str]:
    test_dir = data_dir / "test"
    if not test_dir.is_dir():
        raise FileNotFoundError(f"--data_dir {data_dir}: expected a folder {test_dir} holding <subject>_test.csv "
                                f"files (and dev/<subject>_dev.csv). {DATA_HINT}")
    subjects = sorted(p.name[: -len("_test.csv")] for p in test_dir.glob("*_test.csv"))
    if not subjects:
        raise FileNotFoundError(f"No <subject>_test.csv files in {test_dir}. {DATA_HINT}")
    return subjects


def read_split(data_dir: Path, split: str, subject: str) -> pd.DataFrame:
    """A headerless ``question,A,B,C,D,answer`` CSV, parsed with pandas defaults like the original.

    Every row must have the 6 fields and an answer A-D; anything else is an EvalInputError naming the file
    and the row (a row scored with a missing field or a foreign answer would be silently wrong).
    """
    path = require_file(data_dir / split / f"{subject}_{split}.csv", f"the MMLU {split} file")
    hint = "fix or re-download it (bash scripts/prepare_eval_data.sh)"
    try:
        df = pd.read_csv(path, header=None, encoding="utf-8-sig")  # -sig: a byte-order mark is skipped
    except pd.errors.EmptyDataError:
        raise EvalInputError(f"{path} is empty; {hint}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise EvalInputError(f"{path} is not a readable CSV ({str(err).strip().splitlines()[-1]}); {hint}") from None
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row]
    for i, row in enumerate(rows, start=1):
        if len(row) != len(CHOICES) + 2:
            raise EvalInputError(f"{path}: row {i} has {len(row)} fields, expected {len(CHOICES) + 2} (question, "
                                 f"{', '.join(CHOICES)}, answer); {hint}")
        if row[-1].strip() not in CHOICES:
            raise EvalInputError(f"{path}: row {i} has the answer {row[-1]!r}, expected one of {', '.join(CHOICES)}; "
                                 f"{hint}")
    if len(rows) != len(df):
        raise EvalInputError(f"{path}: pandas reads {len(df)} rows but the CSV has {len(rows)}; {hint}")
    return df


def read_mmlu(data_dir: str | Path, subjects: list[str] | None = None, ntrain: int = 5) -> dict:
    """``{subject: (dev rows, test rows)}``, every file checked: the first ``ntrain`` dev rows (the shots) and the
    test rows of ``subjects`` (default: every ``test/<subject>_test.csv``)."""
    data_dir = Path(data_dir)
    available = list_subjects(data_dir)
    if subjects:
        unknown = [s for s in subjects if s not in available]
        if unknown:
            raise EvalInputError(f"--subjects {unknown} have no test file in {data_dir / 'test'}; available: "
                                 f"{available}")
    splits = {}
    for subject in subjects or available:
        dev_df = read_split(data_dir, "dev", subject)[:ntrain] if ntrain > 0 else pd.DataFrame()
        splits[subject] = dev_df, read_split(data_dir, "test", subject)
    return splits


def evaluate_mmlu(model, tokenizer, data, *, ntrain: int = 5, subjects: list[str] | None = None,
                  n_instances: int | None = None, chat_format=None, batch_size: int = 1,
                  max_prompt_tokens: int = MAX_PROMPT_TOKENS, shared_prefix: bool = True,
                  save_dir: str | Path | None = None, progress: Progress | None = None) -> dict:
    """``{"average_acc", "subcat_acc", "cat_acc"}`` of ``model`` (its tokenizer left padded) on MMLU.

    ``data``: the MMLU folder, or what ``read_mmlu`` returned; ``n_instances``: at most this many test rows per
    subject (sampled with random_state=42); ``chat_format``: a formatting function or its name (None: plain
    prompts). With ``save_dir``, each subject's rows and probabilities go to ``{subject}.csv`` as it is scored; with
    ``progress`` as well, subjects an interrupted run with the same settings scored are read back instead."""
    if isinstance(data, (str, Path)):
        data = read_mmlu(data, subjects, ntrain)
    chat_fn = chat_function(chat_format)
    if save_dir is not None:
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
    correct_by_subject = {}
    for subject, (dev_df, test_df) in tqdm(data.items(), desc="MMLU subjects"):
        kept = save_dir / f"{subject}.csv" if save_dir is not None else None
        if progress is not None and subject in progress and kept.is_file():
            correct_by_subject[subject] = pd.read_csv(kept)["correct"].to_numpy(dtype=bool)
            tqdm.write(f"{subject}: scored by an interrupted run with the same settings; kept ({kept})")
            continue
        if n_instances and n_instances < test_df.shape[0]:
            test_df = test_df.sample(n_instances, random_state=42)
        correct, probs = eval_subject(model, tokenizer, subject, dev_df, test_df, ntrain, chat_fn, batch_size,
                                      max_prompt_tokens, shared_prefix)
        correct_by_subject[subject] = correct
        tqdm.write(f"Average accuracy {correct.mean():.3f} - {subject}")
        if kept is not None:
            test_df = test_df.copy()
            test_df["correct"] = correct
            for j, choice in enumerate(CHOICES):
                test_df[f"choice{choice}_probs"] = probs[:, j]
            write_atomic(kept, lambda tmp, df=test_df: df.to_csv(tmp, index=False), f"{subject}.csv")
        if progress is not None:
            progress.add(subject)
    return aggregate(correct_by_subject)


def run(args) -> dict:
    """Evaluate the requested subjects, write the per-subject CSVs and metrics.json, return the metrics.

    With several ``--adapter_path`` directories the base model is loaded once and each adapter is scored into
    its own results directory; the metrics of the last one are returned."""
    adapters = list(args.adapter_path or [])
    save_dirs = adapter_save_dirs(adapters, args.save_dir)
    for adapter in adapters:  # fail before loading the model
        read_adapter_config(adapter)
    available = list_subjects(Path(args.data_dir))
    chat_fn = chat_function(chat_format(args))
    for save_dir in save_dirs:
        check_save_dir(save_dir, args.overwrite)
    splits = read_mmlu(args.data_dir, args.subjects, args.ntrain)  # every file checked before the model is loaded
    if args.overwrite:  # --overwrite: the earlier results stop counting now; none of them is left beside the new
        for save_dir in save_dirs:
            (save_dir / "metrics.json").unlink(missing_ok=True)
            for stale in set(available) - set(splits):
                (save_dir / f"{stale}.csv").unlink(missing_ok=True)

    print(f"Loading {args.model_name_or_path}" + (f" with adapter(s) {', '.join(adapters)}" if adapters else ""))
    model, tokenizer = load_hf_lm_and_tokenizer(
        args.model_name_or_path, args.tokenizer_name_or_path, load_in_8bit=args.load_in_8bit,
        use_fast_tokenizer=not args.use_slow_tokenizer, dtype=model_dtype(args))
    models = iter_adapter_models(model, adapters) if adapters else [(None, model)]
    for (adapter, adapter_model), save_dir in zip(models, save_dirs):
        if adapter is not None:
            print(f"Adapter {adapter} -> {save_dir}")
        progress = Progress(save_dir, run_settings(args, adapter), args.overwrite)
        metrics = evaluate_mmlu(adapter_model, tokenizer, splits, ntrain=args.ntrain, n_instances=args.n_instances,
                                chat_format=chat_fn, batch_size=args.eval_batch_size,
                                max_prompt_tokens=args.max_prompt_tokens, shared_prefix=shared_prefix(args),
                                save_dir=save_dir, progress=progress)
        for name, acc in {**metrics["subcat_acc"], **metrics["cat_acc"]}.items():
            print(f"Average accuracy {acc:.3f} - {name}")
        print(f"Average accuracy: {metrics['average_acc']:.3f}")
        write_metrics(save_dir, metrics, indent=2)
        progress.finish()
    return metrics


def run_settings(args, adapter: str | None) -> dict:
    """What a subject's scores depend on: a rerun keeps a subject scored with the same settings."""
    skip = ("save_dir", "overwrite", "subjects", "adapter_path")
    return {**{k: v for k, v in sorted(vars(args).items()) if k not in skip},
            "adapter": str(Path(adapter).resolve()) if adapter else None}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ntrain", type=int_at_least(0), default=5, help="dev examples (shots) per prompt (default 5; launcher: 0)")
    ap.add_argument("--data_dir", default="data/eval/mmlu", help="folder with dev/ and test/ CSVs")
    ap.add_argument("--save_dir", default=["results/mmlu"], nargs="+",
                    help="where metrics.json and <subject>.csv go: one directory per --adapter_path, or one for "
                    "all of them (then a subdirectory named after each adapter directory)")
    ap.add_argument("--subjects", nargs="*", help="subjects to evaluate (default: every <subject>_test.csv)")
    ap.add_argument("--n_instances", type=int_at_least(1), default=None, help="at most this many test rows per subject "
                    "(sampled with random_state=42)")
    ap.add_argument("--max_prompt_tokens", type=int_at_least(1), default=MAX_PROMPT_TOKENS,
                    help="dev shots are dropped while a prompt is longer than this (default 2048, the original)")
    add_model_arguments(ap, batch_help="prompts per forward pass", many_adapters=True)
    add_overwrite_argument(ap)
    return ap


def main(argv=None) -> dict:
    return run(parse_eval_args(build_parser(), argv))


if __name__ == "__main__":
    run_cli(main)
