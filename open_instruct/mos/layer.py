"""The MoS linear layer and the shard pool it draws from.

``MoSPool`` owns the trainable A and B pools of one module type (one tensor each, shared by all layers) and
builds a layer's A and B with one gather and a view. Because the gather happens inside the pool module's own
``forward``, engines that shard parameters per module (DeepSpeed ZeRO-3, FSDP) gather the pool exactly when
it is used.

``Linear`` wraps any base layer with known in/out features (``nn.Linear``, GPT-2's ``Conv1D``, bitsandbytes
4/8-bit layers): ``y = base(x) + (α/r) · ((dropout(x) Aᵀ) ⊙ vec) B``.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, _get_in_out_features, check_adapters_to_merge
from peft.utils.other import transpose
from torch import nn


class MoSPool(nn.Module):
    """A- and B-shard pools of one module type: ``A[adapter]`` is (n_shards, in/c), ``B[adapter]`` (n_shards, out/c)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.A = nn.ParameterDict({})
        self.B = nn.ParameterDict({})

    def add_adapter(self, adapter_name: str, num_shards: int, c: int, init_weights: bool,
                    generator: torch.Generator, device=None) -> None:
        pool_a = torch.empty(num_shards, self.in_features // c)
        pool_b = torch.empty(num_shards, self.out_features // c)
        # Same as LoRA's A (kaiming_uniform with a=sqrt(5)): fan-in is the full input size, (in/c)·c = in.
        bound = 1.0 / math.sqrt(self.in_features)
        pool_a.uniform_(-bound, bound, generator=generator)
        if init_weights:
            pool_b.zero_()
        else:
            pool_b.uniform_(-bound, bound, generator=generator)
        self.A[adapter_name] = nn.Parameter(pool_a.to(device) if device is not None else pool_a)
        self.B[adapter_name] = nn.Parameter(pool_b.to(device) if device is not None else pool_b)

    def forward(self, adapter_name: str, index_a: torch.Tensor, index_b: torch.Tensor):
        """Materialise a layer's ``A`` (r, in) and ``Bᵀ`` (r, out): one gather and a view each."""
        pool_a, pool_b = self.A[adapter_name], self.B[adapter_name]
        r = index_a.numel() * pool_a.shape[1] // self.in_features
        # index_select, not pool[idx]: its backward is one index_add_ instead of a sort-based index_put_.
        a = torch.index_select(pool_a, 0, index_a).view(r, self.in_features)
        b_t = torch.index_select(pool_b, 0, index_b).view(r, self.out_features)
        return a, b_t


class MoSLayer(BaseTunerLayer):
    # The trainable pools live once on the tuner (MoSModel.mos_pools), not on each layer. PEFT discovers which
    # adapters a layer holds through the containers named here, so the per-adapter dropout stands in for them.
    adapter_layer_names = ("mos_dropout",)
    other_param_names = ("r", "scaling", "mos_index_A", "mos_index_B", "mos_vec", "mos_type_key")

    def __init__(self, base_layer: nn.Module, **kwargs):
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.mos_type_key: dict[str, str] = {}
        self.mos_dropout = nn.ModuleDict({})
        self.mos_index_A = BufferDict({}, persistent=True)
        self.mos_index_B = BufferDict({}, persistent=True)
        self.mos_vec = BufferDict({}, persistent=True)
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        in_features, out_features = _get_in_out_features(self.get_base_layer())
        if in_features is None or out_features is None:
            raise ValueError(
                f"MoS cannot adapt {type(self.get_base_layer()).__name__}: its input/output sizes are unknown. "
                "Target linear-like modules (nn.Linear, Conv1D, bitsandbytes Linear4bit/Linear8bitLt)."
            )
        self.in_features, self.out_features = in_features, out_features
        self.kwargs = kwargs
        object.__setattr__(self, "_mos_pools", None)  # a reference, deliberately not a registered submodule

    def update_layer(self, adapter_name: str, config, pools: nn.ModuleDict) -> None:
        """Register an adapter; its index lists and vec are assigned by ``MoSModel`` once all layers exist."""
        self.r[adapter_name] = config.r
        self.scaling[adapter_name] = config.lora_alpha / config.r
        drop = nn.Dropout(p=config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        self.mos_dropout[adapter_name] = drop
        n = config.r * config.num_chunk_per_vec
        device = _weight_device(self.get_base_layer())
        self.mos_index_A[adapter_name] = torch.zeros(n, dtype=torch.long, device=device)
        self.mos_index_B[adapter_name] = torch.zeros(n, dtype=torch.long, device=device)
        self.mos_vec[adapter_name] = torch.ones(config.r, dtype=torch.float32, device=device)
        object.__setattr__(self, "_mos_pools", pools)
        self.set_adapter(self.active_adapters)

    def assign_routing(self, adapter_name: str, type_key: str, index_a, index_b, vec) -> None:
        device = self.mos_index_A[adapter_name].device
        self.mos_type_key[adapter_name] = type_key
        self.mos_index_A[adapter_name] = index_a.to(device)
        self.mos_index_B[adapter_name] = index_b.to(device)
        self.mos_vec[adapter_name] = vec.to(device)

    def pool(self, adapter_name: str) -> MoSPool:
        return self._mos_pools[self.mos_type_key[adapter_name]]

    def lora_factors(self, adapter_name: str):
        """The materialised LoRA factors ``(A, B)`` with vec folded into A: A (r, in), B (out, r), pool dtype."""
        a, b_t = self.pool(adapter_name)(adapter_name, self.mos_index_A[adapter_name], self.mos_index_B[adapter_name])
        vec = self.mos_vec[adapter_name].to(a.dtype)
        return a * vec[:, None], b_t.t()

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        a, b = self.lora_factors(adapter_name)
        base_dtype = _weight_dtype(self.get_base_layer()) or a.dtype
        if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
            a, b = a.float(), b.float()
        delta = transpose(b @ a, self.fan_in_fan_out) * self.scaling[adapter_name]
        return delta.to(base_dtype)


class Linear(nn.Module, MoSLayer):
    """MoS adapter around a linear-like base layer."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, pools: nn.ModuleDict,
                 fan_in_fan_out: bool = False, is_target_conv_1d_layer: bool = False, **kwargs) -> None:
        super().__init__()
        MoSLayer.__init__(self, base_layer, **kwargs)
        self.fan_in_fan_out = fan_in_fan_out
        self.is_target_conv_1d_layer = is_target_conv_1d_layer
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, pools)

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        return True

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        adapter_names = check_adapters_to_merge(self, adapter_names)
        if not adapter_names:
            return
        base_layer = self.get_base_layer()
        if not isinstance(getattr(base_layer, "weight", None), torch.Tensor) or type(base_layer.weight) not in (
            torch.Tensor, nn.Parameter
        ):
            raise ValueError(
                f"Cannot merge MoS into a quantized {type(base_layer).__name__}. Export the adapter to plain LoRA "
                "(open_instruct.mos.export_lora) and merge it into a full-precision copy of the base model."
            )
        for name in adapter_names:
            if name not in self.mos_index_A:
                continue
            delta = self.get_delta_weight(name)
            if safe_merge:
                merged = base_layer.weight.data + delta
                if not torch.isfinite(merged).all():
                    raise ValueError(f"NaNs detected in the merged weights; adapter {name!r} seems broken.")
                base_layer.weight.data = merged
            else:
                base_layer.weight.data += delta
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name in self.mos_index_A:
                self.get_base_layer().weight.data -= self.get_delta_weight(name)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if name not in self.mos_index_A:
                continue
            a, b_t = self.pool(name)(name, self.mos_index_A[name], self.mos_index_B[name])
            h = F.linear(self.mos_dropout[name](self._cast_input_dtype(x, a.dtype)), a)
            h = h * (self.mos_vec[name].to(h.dtype) * self.scaling[name])
            result = result + (h @ b_t).to(result.dtype)
        return result

    def __repr__(self) -> str:
        return "mos." + super().__repr__()


def _weight_device(layer: nn.Module):
    w = getattr(layer, "weight", None)
    return w.device if isinstance(w, torch.Tensor) else None


def _weight_dtype(layer: nn.Module):
    w = getattr(layer, "weight", None)
    if isinstance(w, torch.Tensor) and w.dtype.is_floating_point:
        return w.dtype
    return None
