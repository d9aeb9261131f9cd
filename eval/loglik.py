"""Batched log-likelihood scoring: continuations given contexts, and held-out loss on chat examples.

Both pad on the right, sort by length to waste little padding, and return results in the input order.

* ``continuation_logprobs``: for each ``(context, continuation)`` the summed log-probability of the
  continuation's tokens given the context. The continuation's tokens are those of ``context + continuation``
  beyond the tokens of ``context`` (so a leading space joins the continuation, as in lm-eval).
* ``example_losses``: for each training-format example (``messages`` or prompt/completion), the summed
  cross-entropy over its label tokens (the assistant replies, as in training) and their count; the
  token-weighted mean over a set is ``sum(losses) / sum(counts)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from eval.utils import accepts_argument, input_device


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


@torch.inference_mode()
def _score(model, sequences: list[tuple[list[int], list[int]]], batch_size: int, desc: str,
           disable_tqdm: bool) -> list[tuple[float, int]]:
    """``sequences`` = (input_ids, labels with -100 for unscored positions) -> (sum log p of labels, count)."""
    device = input_device(model)
    keep_logits = accepts_argument(model, "logits_to_keep")
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=disable_tqdm, leave=False):
        idx = order[start:start + batch_size]
        ids = _pad([sequences[i][0] for i in idx], 0).to(device)
        labels = _pad([sequences[i][1] for i in idx], -100).to(device)
        mask = _pad([[1] * len(sequences[i][0]) for i in idx], 0).to(device)
        target = labels[:, 1:]
        scored = target != -100
        if keep_logits:  # the vocabulary projection only at positions some row scores (often a few of hundreds)
            keep = scored.any(0).nonzero().squeeze(-1)
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
            target, scored = target[:, keep], scored[:, keep]
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        rows = torch.log_softmax(logits[scored].float(), dim=-1)  # only the scored positions
        logp = torch.zeros(target.shape, dtype=rows.dtype, device=rows.device)
        logp[scored] = rows.gather(-1, target[scored].unsqueeze(-1)).squeeze(-1)
        sums = logp.sum(-1).tolist()
        counts = scored.sum(-1).tolist()
        for i, total, count in zip(idx, sums, counts):
            results[i] = (total, count)
    return results


def _groups(contexts: Sequence[str]) -> list[list[int]]:
    """Runs of consecutive indices with the same context (a question's answer choices)."""
    groups: list[list[int]] = []
    for i, context in enumerate(contexts):
        if groups and contexts[groups[-1][0]] == context:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@torch.inference_mode()
def _score_shared(model, sequences, groups: list[list[int]], pad_id: int, batch_size: int, desc: str,
                  disable_tqdm: bool) -> list[tuple[float, int]]:
    """``_score`` for groups of sequences sharing a context: each group's common token prefix (up to the token
    before its first target) is run once, as a prefix cache, and its sequences continue from it."""
    from eval.prefix_cache import PrefixCache, shared_prefix_length

    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    plans = []  # (group, prefix length)
    for group in groups:
        first_target = min(next(i for i, x in enumerate(sequences[j][1]) if x != -100) for j in group)
        plans.append((group, min(shared_prefix_length([sequences[j][0] for j in group]), first_target - 1)))
    batches, current = [], []
    for plan in plans:
        if current and sum(len(g) for g, _ in current) + len(plan[0]) > batch_size:
            batches.append(current)
            current = []
        current.append(plan)
    batches += [current] if current else []
    device = input_device(model)
    for batch in tqdm(batches, desc=desc, disable=disable_tqdm, leave=False):
        cached = PrefixCache(model, [sequences[g[0]][0][:n] for g, n in batch], pad_id, device)
        rows = [(k, j, n) for k, (g, n) in enumerate(batch) for j in g]
        logits, mask = cached.forward([k for k, _, _ in rows], [sequences[j][0][n:] for _, j, n in rows], pad_id)
        width = mask.shape[1]
        for r, (_, j, n) in enumerate(rows):
            ids, labels = sequences[j][0][n:], sequences[j][1][n:]
            offset = width - len(ids)  # left padding
            keep = [k for k in range(1, len(ids)) if labels[k] != -100]
            positions = torch.tensor([offset + k - 1 for k in keep], device=logits.device)
            targets = torch.tensor([ids[k] for k in keep], device=logits.device)
            logp = torch.log_softmax(logits[r, positions].float(), dim=-1).gather(-1, targets[:, None])
            results[j] = (logp.sum().item(), len(keep))
    return results


def continuation_logprobs(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 8,
                          max_length: int | None = None, disable_tqdm: bool = False,
                          desc: str = "Log-likelihood", shared_prefix: bool = True) -> list[tuple[float, int]]:
    """``[(sum log p(continuation | context), number of continuation tokens), ...]``.

    With ``max_length``, contexts are cut from the left so that context + continuation fit. With
    ``shared_prefix``, consecutive pairs with the same context (a question's choices) share one prefix cache
    (``eval.prefix_cache``): the context runs once per question instead of once per choice.
    """
    sequences = []
    for context, continuation in pairs:
        ctx = tokenizer(context, add_special_tokens=True).input_ids
        full = tokenizer(context + continuation, add_special_tokens=True).input_ids
        n_ctx = len(ctx)
        while n_ctx > 0 and full[:n_ctx] != ctx[:n_ctx]:  # a merge across the boundary: score from the split
            n_ctx -= 1
        if n_ctx >= len(full):
            raise ValueError(f"continuation {continuation!r} adds no token to its context")
        if max_length is not None and len(full) > max_length:
            cut = len(full) - max_length
            full, n_ctx = full[cut:], max(n_ctx - cut, 1)
        sequences.append((full, [-100] * n_ctx + full[n_ctx:]))
    groups = _groups([context for context, _ in pairs])
    if shared_prefix and len(groups) < len(pairs) and _can_share(model):
        shared = [g for g in groups if len(g) > 1]
        out = _score_shared(model, sequences, shared, tokenizer.pad_token_id or 0, batch_size, desc, disable_tqdm)
        alone = [g[0] for g in groups if len(g) == 1]
        for i, result in zip(alone, _score(model, [sequences[i] for i in alone], batch_size, desc, disable_tqdm)):
            out[i] = result
        return out
    return _score(model, sequences, batch_size, desc, disable_tqdm)


def _can_share(model) -> bool:
    from eval.prefix_cache import cache_argument

    return cache_argument(model) is not None and accepts_argument(model, "position_ids")


def example_losses(model, tokenizer, examples: Sequence[dict], max_seq_length: int, chat_format: str = "tulu",
                   batch_size: int = 8, disable_tqdm: bool = False,
                   desc: str = "Held-out loss") -> list[tuple[float, int]]:
    """``[(summed cross-entropy over label tokens, label token count), ...]``, encoded as in training."""
    from open_instruct.data.encoding import encode_example

    sequences = []
    for example in examples:
        enc = encode_example(example, tokenizer, max_seq_length, chat_format)
        sequences.append((list(enc["input_ids"]), list(enc["labels"])))
    return [(-total, count) for total, count in _score(model, sequences, batch_size, desc, disable_tqdm)]


def text_losses(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 8,
                disable_tqdm: bool = False, desc: str = "Held-out text loss") -> list[tuple[float, int]]:
    """``[(summed cross-entropy over every token after the first, token count), ...]`` for plain-text documents,
    tokenized as text training does (special tokens, then EOS) and cut to their first ``max_length`` tokens."""
    from open_instruct.data.text import document_tokens

    sequences = [(ids[:max_length], ids[:max_length]) for ids in document_tokens(list(texts), tokenizer)]
    return [(-total, count) for total, count in _score(model, sequences, batch_size, desc, disable_tqdm)]


def mean_loss(losses: Sequence[tuple[float, int]]) -> float:
    """Token-weighted mean of ``example_losses`` output."""
    tokens = sum(count for _, count in losses)
    if tokens == 0:
        raise ValueError("no label tokens to average over (every example was truncated away or empty)")
    return sum(total for total, _ in losses) / tokens
