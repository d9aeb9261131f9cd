"""Training data: validate instruction files, encode them with label masks, build train/eval datasets.

Public API (what ``finetune_trainer.py`` calls)::

    from open_instruct.data import prepare_datasets
    train_ds, eval_ds, stats = prepare_datasets("data/processed/super_ni/super_ni_data.jsonl", tokenizer,
                                                max_seq_length=512, max_eval_samples=1024, seed=42)

Modules: ``loading`` (file validation), ``encoding`` (tokenization + label masks), ``prepare`` (datasets).
"""

from .encoding import (
    CHAT_FORMATS,
    IGNORE_INDEX,
    encode_example,
    encode_with_messages_format,
    encode_with_prompt_completion_format,
    tulu_text,
)
from .loading import load_jsonl_examples, validate_example
from .prepare import prepare_datasets

__all__ = [
    "CHAT_FORMATS",
    "IGNORE_INDEX",
    "encode_example",
    "encode_with_messages_format",
    "encode_with_prompt_completion_format",
    "load_jsonl_examples",
    "prepare_datasets",
    "tulu_text",
    "validate_example",
]
