"""Shared-prefix evaluation: the key/value cache of a prompt prefix that many rows share is computed once and
reused for every row (few-shot exemplars, a question's answer choices), through the Hugging Face model.

Layout of a cached batch (N rows over G distinct prefixes)::

    [ prefix g (left padded to the longest prefix) ][ suffix (left padded to the longest suffix) ]
      ^ one forward for the G prefixes                ^ one forward for the N rows, reading the prefix cache

The attention mask is 0 on every pad, and positions are the running count of real tokens
(``attention_mask.cumsum(-1) - 1``), so each real token sees exactly the tokens, at exactly the positions, it sees
in the uncached left-padded batch: the numbers are the uncached path's to float rounding (tested in float32 to
1e-4 in log-probability, with MoS and LoRA adapters). Rows pick their prefix by index (``batch_select_indices``).

``shared_prefix_length`` finds the shared part as the longest common *token* prefix of the full tokenizations,
so a tokenizer merge across the prefix boundary never changes what is scored.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch

MIN_SHARED_TOKENS = 8  # below this, caching saves too little to pay for the extra forward


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_argument(model) -> str | None:
    """The name under which the model's forward takes a KV cache (``cache`` in newer transformers,
    ``past_key_values`` before), or None when it takes none."""
    params = inspect.signature(_base(model).forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix, leaving every list at least one token of its own."""
    if not token_lists:
        return 0
    first = token_lists[0]
    n = min(len(t) for t in token_lists) - 1
    for t in token_lists[1:]:
        i = 0
        while i < n and t[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _cache_of(out):
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else out.past_key_values


class PrefixCache:
    """The KV cache of ``prefixes`` (token lists), computed with one forward; ``rows(indices)`` gives a fresh
    cache with one row per index (the prefix it continues) plus the matching attention mask."""

    def __init__(self, model, prefixes: Sequence[Sequence[int]], pad_id: int, device=None):
        self.model, self.arg = model, cache_argument(model)
        if self.arg is None:
            raise ValueError("this model's forward takes no KV cache; score it without a shared prefix")
        ids, mask = _left_pad(prefixes, pad_id)
        if device is not None:
            ids, mask = ids.to(device), mask.to(device)
        self.ids = ids
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True,
                        logits_to_keep=1)
        self.cache, self.mask = _cache_of(out), mask

    def rows(self, indices: Sequence[int]):
        index = torch.tensor(list(indices), dtype=torch.long, device=self.mask.device)
        cache = copy.deepcopy(self.cache)
        cache.batch_select_indices(index)
        return cache, self.mask[index]

    @torch.inference_mode()
    def forward(self, indices: Sequence[int], suffixes: Sequence[Sequence[int]], pad_id: int, logits_to_keep=0):
        """Logits of the suffix positions (``logits_to_keep`` as for the model: 1 = the last position only) of
        each row continuing prefix ``indices[i]`` with ``suffixes[i]`` (left padded)."""
        cache, prefix_mask = self.rows(indices)
        ids, mask = _left_pad(suffixes, pad_id)
        ids, mask = ids.to(prefix_mask.device), mask.to(prefix_mask.device)
        full = torch.cat([prefix_mask, mask], dim=1)
        out = self.model(input_ids=ids, attention_mask=full, position_ids=_positions(full)[:, prefix_mask.shape[1]:],
                         use_cache=True, logits_to_keep=logits_to_keep, **{self.arg: cache})
        return out.logits, mask

    def generate_inputs(self, indices: Sequence[int], suffixes: Sequence[Sequence[int]], pad_id: int) -> dict:
        """``model.generate`` arguments continuing the cached prefixes: the full input ids (prefix, pads, suffix),
        the full attention mask and the cache holding the prefix part."""
        cache, prefix_mask = self.rows(indices)
        index = torch.tensor(list(indices), dtype=torch.long, device=self.ids.device)
        ids, mask = _left_pad(suffixes, pad_id)
        device = prefix_mask.device
        return {"input_ids": torch.cat([self.ids[index], ids.to(device)], dim=1),
                "attention_mask": torch.cat([prefix_mask, mask.to(device)], dim=1), self.arg: cache}
