"""Plain text for continued pretraining: documents -> tokens -> full blocks of ``max_seq_length``, loss on all.

A text training file is JSON lines of ``{"text": str, ...}`` (one document per line; extra keys are kept out of
training). Each document is tokenized with the tokenizer's special tokens (BOS where it adds one) and followed by
its EOS; the documents are concatenated in file order and cut into blocks of exactly ``max_seq_length`` tokens,
the remainder after the last full block being dropped. Every token of a block is a target (labels = input_ids),
so blocks need no padding and a batch holds no padding at all. Attention runs across document boundaries inside
a block, as in standard language-model pretraining (the EOS between documents marks the boundary).

Held-out documents for the Trainer's evaluation are whole documents (``max_eval_samples`` of them, drawn with a
seeded shuffle) removed before packing, so no held-out text is trained on.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from datasets import Dataset

from .loading import load_jsonl_examples

logger = logging.getLogger(__name__)

TEXT_FORMATS = ("auto", "instruction", "text")


def validate_text_record(record: Any) -> str | None:
    """What is wrong with one decoded text record, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object with a 'text' string, got {type(record).__name__}"
    if "text" not in record:
        if "messages" in record or "prompt" in record:
            return ("is an instruction record (messages or prompt/completion) in a --train_format text file; "
                    "use --train_format instruction (or auto) for instruction data")
        return f"needs a 'text' string; found keys {sorted(record)}"
    if not isinstance(record["text"], str):
        return f"'text' must be a string, got {type(record['text']).__name__}"
    return None


def is_text_file(path: str | Path) -> bool:
    """Whether the first record of a JSON-lines file is a plain-text record (``text`` and no instruction keys)."""
    import json

    with open(path, encoding="utf-8", errors="replace") as fin:
        for line in fin:
            if line.strip():
                try:
                    record = json.loads(line.lstrip("\ufeff"))
                except json.JSONDecodeError:
                    return False  # the instruction loader reports the bad line
                return isinstance(record, dict) and "text" in record and not ({"messages", "prompt"} & set(record))
    return False


def document_tokens(texts: list[str], tokenizer) -> list[list[int]]:
    """Each document's token ids with the tokenizer's special tokens, followed by EOS (once)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; text training separates documents with it")
    out = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        ids = list(ids)
        out.append(ids if ids and ids[-1] == eos else ids + [eos])
    return out


def pack_blocks(docs: list[list[int]], block: int) -> tuple[list[list[int]], int]:
    """Concatenate ``docs`` and cut into blocks of ``block`` tokens; returns (blocks, tokens dropped at the end)."""
    flat = [t for doc in docs for t in doc]
    n = len(flat) // block
    return [flat[i * block:(i + 1) * block] for i in range(n)], len(flat) - n * block


def _dataset(blocks: list[list[int]]) -> Dataset:
    return Dataset.from_dict({"input_ids": blocks, "labels": [list(b) for b in blocks],
                              "attention_mask": [[1] * len(b) for b in blocks]})


def prepare_text_datasets(train_file: str | Path, tokenizer, max_seq_length: int, max_eval_samples: int | None = None,
                          seed: int = 42, do_eval: bool = True, max_train_samples: int | None = None,
                          ) -> tuple[Dataset, Dataset | None, dict[str, int]]:
    """``(train blocks, eval blocks or None, stats)`` from a text file (see the module doc).

    ``max_eval_samples`` counts held-out *documents* (packed into their own blocks); ``max_train_samples`` keeps
    the first N training blocks. Too little text for one block, or for the held-out documents, is a ValueError."""
    records = load_jsonl_examples(train_file, validate=validate_text_record)
    texts = [r["text"] for r in records if r["text"].strip()]
    if not texts:
        raise ValueError(f"{train_file}: every 'text' is empty")
    order = list(range(len(texts)))
    held: set[int] = set()
    if do_eval and max_eval_samples:
        if max_eval_samples >= len(texts):
            raise ValueError(f"max_eval_samples={max_eval_samples} held-out documents but {train_file} has only "
                             f"{len(texts)} non-empty documents; lower max_eval_samples or set do_eval=False")
        random.Random(seed).shuffle(order)
        held = set(order[:max_eval_samples])
    docs = document_tokens(texts, tokenizer)
    train_blocks, dropped = pack_blocks([d for i, d in enumerate(docs) if i not in held], max_seq_length)
    if not train_blocks:
        raise ValueError(f"{train_file}: the training documents hold {dropped} tokens, fewer than one block of "
                         f"max_seq_length={max_seq_length}; add text or lower max_seq_length")
    if max_train_samples is not None:
        train_blocks = train_blocks[:max_train_samples]
    eval_ds = None
    if held:
        eval_blocks, _ = pack_blocks([docs[i] for i in sorted(held)], max_seq_length)
        if not eval_blocks:  # short held-out documents: one block of what there is
            flat = [t for i in sorted(held) for t in docs[i]]
            eval_blocks = [flat[:max_seq_length]]
        eval_ds = _dataset(eval_blocks)
    stats = {"num_documents": len(texts), "num_heldout_documents": len(held), "num_train": len(train_blocks),
             "num_eval": len(eval_ds) if eval_ds is not None else 0,
             "num_train_trainable_tokens": len(train_blocks) * (max_seq_length - 1),  # targets: all but the first
             "num_tokens_dropped_after_last_block": dropped, "num_dropped_no_trainable_tokens": 0}
    logger.info("prepared text %s: %s", train_file, stats)
    return _dataset(train_blocks), eval_ds, stats
