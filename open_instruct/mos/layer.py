"""The MoS linear layer and the shard pool it draws from.

``MoSPool`` owns the trainable A and B pools of one module type (one tensor each, shared by all layers) and
builds a layer's A and B with one gather and a view. Because the gather happens inside the pool module's own
``forward``, engines that shard parameters per module (DeepSpeed ZeRO-3, FSDP) gather the pool exactly when
it is used.

``MoSLinear`` (aliases ``MoSLayer``, ``Linear``) wraps any base layer with known in/out features (``nn.Linear``, GPT-2's
``Conv1D``, bitsandbytes 4/8-bit layers): ``y = base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ vec) B``. Forward, merge and
unmerge come from ``FactorLinear`` (the shared core, ``open_instruct.lowrank``); MoS only says how A and B are gathered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from torch import nn

from open_instruct.lowrank.layer import FactorLinear
from open_instruct.lowrank.pool import FactorPool
from open_instruct.lowrank.serving import cacheable

# In memory, shard indices are int32 (index_select takes int32 and int64; a pool never holds 2**31 shards): half
# the bytes of int64 per extra adapter. Checkpoints store them in the smallest type that fits (compact_index_dtype).
INDEX_DTYPE = torch.int32


def _as_is(t):
    return t


class _Batch:
    """The factors of every layer of one type, from one gather (see ``MoSPool.layer_factors``)."""

    def __init__(self, refs, stamp, indices, a, b_t):
        self.refs, self.stamp, self.a, self.b_t, self.consumed = refs, stamp, a, b_t, False
        self.indices = [(ia, ib, ia._version, ib._version) for ia, ib in indices]  # each layer's lists, as gathered

    def serves(self, position: int, index_a, index_b) -> bool:
        ia, ib, va, vb = self.indices[position]
        return ia is index_a and ib is index_b and ia._version == va and ib._version == vb

    def consume(self, grad):  # a tensor hook: backward has gone through the gather, its graph is freed
        self.consumed = True


class MoSPool(FactorPool):
    """A- and B-shard pools of one module type: ``A[adapter]`` is (n_shards, in/c), ``B[adapter]`` (n_shards, out/c).

    With gradients, ``layer_factors`` serves every layer of the type from **one** gather per forward (one
    ``index_select`` for A and one for B, and in backward one ``stack`` and one ``index_add``), instead of one
    per layer. The gathered factors are reused until the pools change (an optimizer step bumps their version
    counters), a layer's index lists change, or a backward pass has gone through them; engines that re-materialise parameters in place
    (ZeRO-3, FSDP) always gather per layer. ``batched_gather = False`` turns it off.
    """

    batched_gather: bool = True

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self._members: dict[str, list] = {}  # adapter -> its layers of this type, in layer order
        self._batches: dict[str, _Batch] = {}

    def __getstate__(self):  # deepcopy/pickle: gathered factors hold an autograd graph; gather again after
        state = dict(super().__getstate__())
        state["_batches"] = {}
        return state

    def set_members(self, adapter_name: str, layers: list) -> None:
        """The layers (in order) that read ``adapter_name`` from this pool; layer i gets position i."""
        self._members[adapter_name] = list(layers)
        self._batches.pop(adapter_name, None)
        for position, layer in enumerate(layers):
            layer.mos_position[adapter_name] = position

    def remove_adapter(self, adapter_name: str) -> None:
        super().remove_adapter(adapter_name)
        self._members.pop(adapter_name, None)
        self._batches.pop(adapter_name, None)

    def layer_factors(self, adapter_name: str, position: int, index_a: torch.Tensor, index_b: torch.Tensor):
        """``A`` (r, in) and ``Bᵀ`` (r, out) of the layer at ``position`` (whose index lists are ``index_a``,
        ``index_b``), from one gather for all the type's layers; ``None`` when batching does not apply (turned
        off, or parameters managed by ZeRO-3/FSDP)."""
        pool_a, pool_b = self.A[adapter_name], self.B[adapter_name]
        if not self.batched_gather or not (cacheable(pool_a) and cacheable(pool_b)):
            return None
        stamp = (pool_a._version, pool_b._version, pool_a.data_ptr(), pool_b.data_ptr())
        batch = self._batches.get(adapter_name)
        if (batch is None or batch.consumed or batch.stamp != stamp or batch.refs[0] is not pool_a
                or batch.refs[1] is not pool_b or not batch.serves(position, index_a, index_b)):
            batch = self._gather_all(adapter_name, pool_a, pool_b, stamp)
        return batch.a[position], batch.b_t[position]

    def _gather_all(self, adapter_name, pool_a, pool_b, stamp) -> _Batch:
        indices = [(m.mos_index_A[adapter_name], m.mos_index_B[adapter_name]) for m in self._members[adapter_name]]
        index_a = torch.cat([ia.to(pool_a.device) for ia, _ in indices])
        index_b = torch.cat([ib.to(pool_b.device) for _, ib in indices])
        # Saved as they are, outside any activation checkpointing around the layer that happens to gather first:
        # its recomputation finds the factors gathered and must not be expected to save the gather's tensors again.
        with torch.autograd.graph.saved_tensors_hooks(_as_is, _as_is):
            a, b_t = self(adapter_name, index_a, index_b)  # a module call, as in the per-layer path
        n = len(indices)
        a_all, b_all = a.view(n, -1, self.in_features), b_t.view(n, -1, self.out_features)
        batch = _Batch((pool_a, pool_b), stamp, indices, a_all.unbind(0), b_all.unbind(0))
        for t in (a_all, b_all):
            if t.requires_grad:
                t.register_hook(batch.consume)
        self._batches[adapter_name] = batch
        return batch

    def forward(self, adapter_name: str, index_a: torch.Tensor, index_b: torch.Tensor):
        """Materialise a layer's ``A`` (r, in) and ``Bᵀ`` (r, out) as a module call, so that ZeRO-3/FSDP hooks
        gather the pool first (the training path)."""
        return self.gather(adapter_name, index_a, index_b)

    def gather(self, adapter_name: str, index_a: torch.Tensor, index_b: torch.Tensor):
        """``A`` (r, in) and ``Bᵀ`` (r, out): one gather and a view each, without module hooks (export, merge)."""
        pool_a, pool_b = self.A[adapter_name], self.B[adapter_name]
        r = index_a.numel() * pool_a.shape[1] // self.in_features
        # index_select, not pool[idx]: its backward is one index_add_ instead of a sort-based index_put_.
        # The pool lives on its first layer's device; a layer elsewhere (device_map) sends its indices over.
        a = torch.index_select(pool_a, 0, index_a.to(pool_a.device)).view(r, self.in_features)
        b_t = torch.index_select(pool_b, 0, index_b.to(pool_b.device)).view(r, self.out_features)
        return a, b_t


class MoSLinear(FactorLinear):
    """MoS adapter around a linear-like base layer; its A and B are gathered from the type's shared pools."""

    # The trainable pools live once on the tuner (MoSModel.shared_pools), not on each layer. PEFT discovers which
    # adapters a layer holds through the containers named here, so the per-adapter dropout stands in for them.
    adapter_layer_names = ("mos_dropout",)
    other_param_names = ("r", "scaling", "mos_index_A", "mos_index_B", "mos_vec", "mos_type_key", "mos_position")
    dropout_attr = "mos_dropout"
    method_name = "mos"

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, pools: nn.ModuleDict,
                 fan_in_fan_out: bool = False, is_target_conv_1d_layer: bool = False, **kwargs) -> None:
        super().__init__(base_layer, fan_in_fan_out=fan_in_fan_out, is_target_conv_1d_layer=is_target_conv_1d_layer,
                         **kwargs)
        self.mos_type_key: dict[str, str] = {}
        self.mos_position: dict[str, int] = {}  # index among the layers of its type (MoSPool.set_members)
        self.mos_index_A = BufferDict({}, persistent=True)
        self.mos_index_B = BufferDict({}, persistent=True)
        self.mos_vec = BufferDict({}, persistent=True)
        object.__setattr__(self, "_shared_pools", None)  # a reference, deliberately not a registered submodule
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, pools)

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.mos_index_A

    def update_layer(self, adapter_name: str, config, pools: nn.ModuleDict) -> None:
        """Register an adapter; its index lists and vec are assigned by ``MoSModel`` once all layers exist."""
        self.r[adapter_name] = config.r
        self.scaling[adapter_name] = config.scaling
        self.set_dropout(adapter_name, config.lora_dropout)
        n = config.r * config.num_chunk_per_vec
        device = self.base_device()
        self.clear_factor_cache(adapter_name)
        self.mos_index_A[adapter_name] = torch.zeros(n, dtype=INDEX_DTYPE, device=device)
        self.mos_index_B[adapter_name] = torch.zeros(n, dtype=INDEX_DTYPE, device=device)
        self.mos_vec[adapter_name] = torch.ones(config.r, dtype=torch.float32, device=device)
        object.__setattr__(self, "_shared_pools", pools)
        self.set_adapter(self.active_adapters)

    def assign_routing(self, adapter_name: str, type_key: str, index_a, index_b, vec) -> None:
        device = self.mos_index_A[adapter_name].device
        self.clear_factor_cache(adapter_name)
        self.mos_type_key[adapter_name] = type_key
        self.mos_index_A[adapter_name] = index_a.to(device, INDEX_DTYPE)
        self.mos_index_B[adapter_name] = index_b.to(device, INDEX_DTYPE)
        self.mos_vec[adapter_name] = vec.to(device)

    def pool(self, adapter_name: str) -> MoSPool:
        return self._shared_pools[self.mos_type_key[adapter_name]]

    def factor_sources(self, adapter_name: str):
        pool = self.pool(adapter_name)
        return (pool.A[adapter_name], pool.B[adapter_name], self.mos_index_A[adapter_name],
                self.mos_index_B[adapter_name], self.mos_vec[adapter_name])

    def lora_factors(self, adapter_name: str):
        """The materialised LoRA factors ``(A, B)`` with vec folded into A: A (r, in), B (out, r), pool dtype, on
        this layer's device.

        Reads the pools directly (no module hooks): under ZeRO-3 call it inside ``GatheredParameters``."""
        a, b_t = self.pool(adapter_name).gather(adapter_name, self.mos_index_A[adapter_name],
                                                self.mos_index_B[adapter_name])
        vec = self.mos_vec[adapter_name]
        a, b_t = a.to(vec.device), b_t.to(vec.device)
        return a * vec.to(a.dtype)[:, None], b_t.t()

    def adapter_output(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``(α/r) · ((dropout(x) Aᵀ) ⊙ vec) B``: vec scales the rank-r activations, not the r×in matrix."""
        pool, position = self.pool(adapter_name), self.mos_position.get(adapter_name)
        index_a, index_b = self.mos_index_A[adapter_name], self.mos_index_B[adapter_name]
        factors = pool.layer_factors(adapter_name, position, index_a, index_b) if position is not None else None
        if factors is None:
            factors = pool(adapter_name, index_a, index_b)
        a, b_t = factors
        if a.device != x.device:  # a layer on another device than its pool (device_map)
            a, b_t = a.to(x.device), b_t.to(x.device)
        h = F.linear(self.dropout(adapter_name)(self._cast_input_dtype(x, a.dtype)), a)
        h = h * (self.mos_vec[adapter_name].to(h.dtype) * self.scaling[adapter_name])
        return h @ b_t


# "Linear" in the class name is how PEFT's target_modules="all-linear" recognises an adapter layer that a further
# adapter may target; MoSLayer is the name used across the project, Linear the one PEFT tuners use.
MoSLayer = MoSLinear
Linear = MoSLinear
