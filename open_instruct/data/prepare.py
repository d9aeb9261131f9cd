"""Build the tokenized train / held-out eval datasets from one training file, as the original trainer does.

Steps: validate the file (:func:`load_jsonl_examples`), tokenize every record with ``datasets.map``, drop
records with no trainable token (e.g. a reply cut off by truncation), optionally add a ``length`` column
(for ``group_by_length``), then hold out ``max_eval_samples`` records with
``train_test_split(test_size=max_eval_samples, shuffle=True, seed=seed)``; the held-out records are removed
from training, like the original's 1024 SuperNI examples.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from datasets import Dataset

from .encoding import CHAT_FORMATS, IGNORE_INDEX, encode_example
from .loading import example_format, load_jsonl_examples

logger = logging.getLogger(__name__)


def _normalize(example: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields encoding needs, with the same keys for every row (Arrow needs one schema)."""
    if example_format(example) == "messages":
        messages = [{"role": m["role"], "content": m["content"]} for m in example["messages"]]
        return {"messages": messages, "prompt": None, "completion": None}
    return {"messages": None, "prompt": example["prompt"], "completion": example["completion"]}


def _encode_row(example, tokenizer, max_seq_length, chat_format):
    encoded = encode_example(example, tokenizer, max_seq_length, chat_format)
    encoded["length"] = len(encoded["input_ids"])
    encoded["num_trainable"] = sum(label != IGNORE_INDEX for label in encoded["labels"])
    return encoded


def _check_replies(rows: list[dict[str, Any]], train_file) -> None:
    """Warn about records whose replies are all empty; refuse a file where every reply is empty."""
    def empty(row) -> bool | None:  # None: no reply at all (dropped later as having no trainable token)
        if row["messages"] is None:
            return not row["completion"].strip()
        replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        return None if not replies else not any(r.strip() for r in replies)

    flags = [empty(r) for r in rows]
    n_empty, n_replies = sum(f is True for f in flags), sum(f is not None for f in flags)
    if n_replies and n_empty == n_replies:
        raise ValueError(f"{train_file}: every assistant reply / completion is empty, so training would learn only "
                         "the end-of-sequence token; check the file's assistant messages (or completions)")
    if n_empty:
        logger.warning("%d of %d examples in %s have only empty replies; they teach only the end-of-sequence "
                       "token", n_empty, len(rows), train_file)


def _check_positive_int(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def prepare_datasets(train_file: str | Path, tokenizer, max_seq_length: int, max_eval_samples: int | None = None,
                     seed: int = 42, do_eval: bool = True, num_proc: int = 1, max_train_samples: int | None = None,
                     chat_format: str = "tulu", add_length_column: bool = False,
                     eval_fraction_if_too_few: float | None = None,
                     ) -> tuple[Dataset, Dataset | None, dict[str, int]]:
    """Return ``(train_dataset, eval_dataset or None, stats)`` for ``train_file``.

    Each dataset has the columns ``input_ids``, ``labels``, ``attention_mask`` (plain int lists, ready for
    ``DataCollatorForSeq2Seq``) and, with ``add_length_column``, ``length``.

    * ``do_eval`` needs ``max_eval_samples`` (the original uses 1024): that many records, drawn with
      ``train_test_split(shuffle=True, seed=seed)``, form the eval set and are removed from training.
      A ``max_eval_samples`` that would leave no training record raises ``ValueError``, unless
      ``eval_fraction_if_too_few`` is given: then that fraction of the records (at least one) is held out
      instead, with a warning that says how many (a user's first small file with the default 1024).
    * ``max_train_samples`` keeps the first N training records after the split (as run_clm does).
    * ``chat_format``: ``"tulu"`` (the original's) or ``"tokenizer"`` (the tokenizer's chat template).

    Records whose every reply (assistant message / completion) is empty teach only the end-of-sequence
    token: a warning counts them, and a file with no non-empty reply at all raises ``ValueError``.

    ``stats`` counts: ``num_examples`` (records in the file), ``num_messages_format``,
    ``num_prompt_completion_format``, ``num_dropped_no_trainable_tokens``, ``num_at_max_seq_length``
    (records that reached ``max_seq_length``, i.e. were most likely truncated), ``num_train``, ``num_eval``
    and ``num_train_trainable_tokens``.
    """
    _check_positive_int("max_seq_length", max_seq_length, allow_none=False)
    _check_positive_int("max_train_samples", max_train_samples)
    _check_positive_int("num_proc", num_proc, allow_none=False)
    if chat_format not in CHAT_FORMATS:
        raise ValueError(f"unknown chat_format {chat_format!r}; choose one of {list(CHAT_FORMATS)}")
    if do_eval:
        if max_eval_samples is None:
            raise ValueError("do_eval needs max_eval_samples (how many examples to hold out for evaluation; "
                             "the original uses 1024); pass it or set do_eval=False")
        _check_positive_int("max_eval_samples", max_eval_samples)
    if not tokenizer.eos_token:
        raise ValueError("the tokenizer has no eos_token; set one before preparing the data")

    examples = load_jsonl_examples(train_file)
    rows = [_normalize(e) for e in examples]
    _check_replies(rows, train_file)
    n_messages = sum(r["messages"] is not None for r in rows)
    raw = Dataset.from_list(rows)
    del examples, rows

    encoded = raw.map(
        _encode_row,
        fn_kwargs=dict(tokenizer=tokenizer, max_seq_length=max_seq_length, chat_format=chat_format),
        num_proc=num_proc if num_proc > 1 else None,
        remove_columns=raw.column_names,
        desc=f"Tokenizing {Path(train_file).name}",
    )
    num_trainable = encoded["num_trainable"]
    lengths = encoded["length"]
    keep = [i for i, n in enumerate(num_trainable) if n > 0]
    dropped = len(encoded) - len(keep)
    if dropped:
        logger.warning("dropped %d of %d examples with no trainable token (all labels -100, e.g. the reply was "
                       "truncated away at max_seq_length=%d)", dropped, len(encoded), max_seq_length)
        encoded = encoded.select(keep)
    if not len(encoded):
        raise ValueError(f"{train_file}: no example has a trainable token at max_seq_length={max_seq_length}; "
                         "check the file's assistant replies / completions or raise max_seq_length")

    eval_dataset = None
    train_dataset = encoded
    if do_eval and max_eval_samples >= len(encoded) and eval_fraction_if_too_few and len(encoded) >= 2:
        held_out = max(1, int(len(encoded) * eval_fraction_if_too_few))
        logger.warning("max_eval_samples=%d but %s has only %d usable examples: holding out %d (%d%%) for "
                       "evaluation instead and training on %d; set --max_eval_samples (launcher: MAX_EVAL_SAMPLES) "
                       "to choose", max_eval_samples, train_file, len(encoded), held_out,
                       round(100 * eval_fraction_if_too_few), len(encoded) - held_out)
        max_eval_samples = held_out
    if do_eval:
        if max_eval_samples >= len(encoded):
            raise ValueError(f"max_eval_samples={max_eval_samples} but only {len(encoded)} usable examples in "
                             f"{train_file} ({dropped} dropped with no trainable token); the held-out examples are "
                             "removed from training, so lower max_eval_samples or set do_eval=False")
        split = encoded.train_test_split(test_size=max_eval_samples, shuffle=True, seed=seed)
        train_dataset, eval_dataset = split["train"], split["test"]
    if max_train_samples is not None and max_train_samples < len(train_dataset):
        train_dataset = train_dataset.select(range(max_train_samples))
    train_trainable_tokens = int(sum(train_dataset["num_trainable"]))
    helper_columns = ["num_trainable"] + ([] if add_length_column else ["length"])
    train_dataset = train_dataset.remove_columns(helper_columns)
    if eval_dataset is not None:
        eval_dataset = eval_dataset.remove_columns(helper_columns)

    stats = {
        "num_examples": len(raw),
        "num_messages_format": n_messages,
        "num_prompt_completion_format": len(raw) - n_messages,
        "num_dropped_no_trainable_tokens": dropped,
        "num_at_max_seq_length": sum(n >= max_seq_length for n in lengths),
        "num_train": len(train_dataset),
        "num_eval": len(eval_dataset) if eval_dataset is not None else 0,
        "num_train_trainable_tokens": train_trainable_tokens,
    }
    logger.info("prepared %s: %s", train_file, stats)
    return train_dataset, eval_dataset, stats
