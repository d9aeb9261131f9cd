"""Training batches: padded (the original's) or padding-free, with the vocabulary projection only where it counts.

* ``padding_free=False``: ``DataCollatorForSeq2Seq(padding="longest")``, right padding, labels padded with -100.
* ``padding_free=True``: ``DataCollatorWithFlattening``: the examples of a batch concatenated into one row with
  ``position_ids`` restarting at 0 for each; the first label of each example is -100, so no token is trained to
  predict the next example. The attention implementation must then keep the examples apart: with sdpa/eager,
  transformers builds a block-diagonal causal mask from the restarting ``position_ids`` (no attention mask is
  passed); flash-attention uses the same positions. ``tests/data/test_collate.py`` checks, in float64, that the
  loss and every gradient equal those of the examples run one by one.
* ``supervised_logits=True`` (with either): the model projects onto the vocabulary only at positions whose next
  token is a target (``logits_to_keep``: the positions where some row of the batch has a label) and the loss is
  computed there (``shift_labels``). Instruction data trains on the replies only, so most positions of a prompt
  need no logits; the loss and its gradients are those of the full projection (the skipped positions have no
  target). Plain text (every token a target) gains nothing and loses nothing.
"""

from __future__ import annotations

import inspect

import torch

IGNORE_INDEX = -100


def supports_supervised_logits(model) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` and its loss is transformers' causal-LM loss (which
    takes ``shift_labels``); other models get the full projection."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        from transformers.loss.loss_utils import ForCausalLMLoss

        takes = "logits_to_keep" in inspect.signature(base.forward).parameters
        return takes and getattr(base, "loss_function", None) is ForCausalLMLoss
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


class SupervisedLogits:
    """Wrap a collator: add ``logits_to_keep`` (1-D positions where some row's next token is a target) and
    ``shift_labels`` (the targets at those positions, -100 where a row has none). ``labels`` stays in the batch
    (the Trainer counts the targets of ``shift_labels`` for ``num_items_in_batch``)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        batch = self.collator(features)
        labels = batch["labels"]
        shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = (shifted != IGNORE_INDEX).any(0).nonzero().squeeze(-1)
        if keep.numel() == 0:  # nothing to train on in this batch: keep one position so shapes stay valid
            keep = torch.zeros(1, dtype=torch.long)
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[:, keep].contiguous()
        return batch


def build_collator(tokenizer, model, padding_free: bool = False, supervised_logits: bool = True):
    """The training collator (see the module doc); ``supervised_logits`` is dropped where the model cannot use it."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if padding_free:
        collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, padding="longest", label_pad_token_id=IGNORE_INDEX)
    if supervised_logits and supports_supervised_logits(model):
        return SupervisedLogits(collator)
    return collator
