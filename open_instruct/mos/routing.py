"""Shard index lists: which pool shards each layer's rank vectors are made of.

Exactly the original's construction, per (module type, layer l):

* the pool holds ``e·L·c`` shards; rows ``[0, P0)`` with ``P0 = (e−p)·L·c`` are shared by all layers, rows
  ``[P0, e·L·c)`` are private, ``p·c`` per layer: layer l owns ``P0 + [l·p·c, (l+1)·p·c)``;
* a layer's list is ``randperm(P0)[:(r−p)·c]`` (distinct within the list, may repeat across layers) followed
  by its private shards, ``r·c`` entries in all;
* A and B draw their shared shards independently (pair dissociation).

Rank vector j is the concatenation of shards ``idx[j·c:(j+1)·c]``, so the first r−p rank vectors are built
from shared shards and the last p from the layer's private ones.
"""

from __future__ import annotations

import torch


def num_pool_shards(e: int, num_layers: int, c: int) -> int:
    return e * num_layers * c


def private_shards(layer: int, num_layers: int, e: int, p: int, c: int) -> torch.Tensor:
    """The ``p·c`` private shards of layer ``layer``: ``P0 + [l·p·c, (l+1)·p·c)`` with ``P0 = (e−p)·L·c``."""
    return (e - p) * num_layers * c + torch.arange(layer * p * c, (layer + 1) * p * c, dtype=torch.long)


def layer_index_list(layer: int, num_layers: int, r: int, e: int, p: int, c: int, generator: torch.Generator):
    """The ``r·c`` shard indices of one matrix (A or B) of layer ``layer`` (0-based among the type's layers)."""
    n_shared_pool = (e - p) * num_layers * c
    private = private_shards(layer, num_layers, e, p, c)
    n_shared = (r - p) * c
    if n_shared_pool == 0:
        shared = torch.empty(0, dtype=torch.long)
    else:
        shared = torch.randperm(n_shared_pool, generator=generator)[:n_shared]
    idx = torch.cat([shared, private])
    if idx.numel() != r * c:  # unreachable once MoSConfig.validate/validate_for_layers passed
        raise ValueError(f"index list of layer {layer} has {idx.numel()} entries, expected r·c = {r * c}")
    return idx


def build_index_lists(num_layers: int, r: int, e: int, p: int, c: int, generator: torch.Generator,
                      subset_selection: bool = True, pair_dissociation: bool = True):
    """Index lists for all layers of one module type: a list of ``(idx_A, idx_B)`` pairs, layer by layer.

    The full method: for each layer A's list is drawn first, then B's, from the same generator (independent
    draws). The two ablation switches (``docs/ABLATIONS.md``) change only what they name:

    * ``subset_selection=False``: the shared shards are drawn once for the module type (A's, then B's) and
      every layer uses that same draw, so layers differ only in their private shards;
    * ``pair_dissociation=False``: B's list is A's list (no second draw), so a rank vector's A- and B-shards
      sit at the same pool positions.
    """
    if not subset_selection:
        first_a = layer_index_list(0, num_layers, r, e, p, c, generator)
        first_b = layer_index_list(0, num_layers, r, e, p, c, generator) if pair_dissociation else first_a
        n_shared = (r - p) * c
        out = []
        for layer in range(num_layers):
            private = private_shards(layer, num_layers, e, p, c)
            out.append((torch.cat([first_a[:n_shared], private]), torch.cat([first_b[:n_shared], private])))
        return out
    out = []
    for layer in range(num_layers):
        idx_a = layer_index_list(layer, num_layers, r, e, p, c, generator)
        idx_b = layer_index_list(layer, num_layers, r, e, p, c, generator) if pair_dissociation else idx_a.clone()
        out.append((idx_a, idx_b))
    return out


def compact_index_dtype(num_shards: int) -> torch.dtype:
    """Smallest signed integer dtype able to hold shard indices below ``num_shards`` (for checkpoints)."""
    if num_shards <= 2**7:
        return torch.int8
    if num_shards <= 2**15:
        return torch.int16
    if num_shards <= 2**31:
        return torch.int32
    return torch.int64
