"""A tuner layer that *is* a rank-r LoRA layer once its factors are materialised.

Every low-rank method here (MoS, Tied-LoRA, PRoLoRA) computes ``ΔW = scaling · B · A`` with ``A`` (r, in) and
``B`` (out, r) assembled from its own, smaller set of trainable tensors. ``FactorLinear`` holds everything that
follows from that: the forward ``y = base(x) + scaling · (dropout(x) Aᵀ) Bᵀ``, the delta weight, merge/unmerge,
and the ``lora_factors(adapter) -> (A, B)`` / ``r`` / ``scaling`` interface that ``open_instruct.lowrank.export``
turns into a plain LoRA adapter. A method only says how it builds ``A`` and ``B`` (``lora_factors``) and, if it
can do better than materialising them, how it computes its output (``adapter_output``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer, _get_in_out_features, check_adapters_to_merge
from peft.utils.other import transpose
from torch import nn
from transformers.pytorch_utils import Conv1D

from .serving import FactorServing


def weight_device(layer: nn.Module):
    w = getattr(layer, "weight", None)
    return w.device if isinstance(w, torch.Tensor) else None


def weight_dtype(layer: nn.Module):
    w = getattr(layer, "weight", None)
    if isinstance(w, torch.Tensor) and w.dtype.is_floating_point:
        return w.dtype
    return None


# Modules PEFT reports in/out sizes for but that are not y = x Wᵀ: an adapter of ours around them would be wrong.
_NOT_LINEAR = (nn.Embedding, nn.modules.conv._ConvNd, nn.MultiheadAttention)


def check_linear_like(base: nn.Module, key: str, method: str) -> None:
    """``ValueError`` naming the module unless ``base`` is linear-like (nn.Linear, Conv1D, a quantised linear)."""
    if isinstance(base, _NOT_LINEAR) or None in _get_in_out_features(base):
        raise ValueError(f"{method} adapts linear layers only (nn.Linear, Conv1D, bitsandbytes 4/8-bit); {key!r} "
                         f"({type(base).__name__}) is not one. Remove it from target_modules (or list it in exclude_modules).")


class FactorLinear(FactorServing, nn.Module, BaseTunerLayer):
    """Base of the adapter layers of every method here, around a linear-like base layer (nn.Linear, Conv1D,
    bitsandbytes 4/8-bit).

    Subclasses set ``adapter_layer_names`` (their trainable per-adapter containers), ``other_param_names`` (which
    must include ``r``, ``scaling`` and the dropout container named by ``dropout_attr``) and implement
    ``lora_factors`` (and ``factor_sources``, for the inference factor cache of ``FactorServing``).
    """

    adapter_layer_names: tuple[str, ...] = ()
    other_param_names: tuple[str, ...] = ("r", "scaling")
    dropout_attr: str = ""
    method_name: str = "adapter"

    def __init__(self, base_layer: nn.Module, fan_in_fan_out: bool = False, is_target_conv_1d_layer: bool = False,
                 **kwargs) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        setattr(self, self.dropout_attr, nn.ModuleDict({}))
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.fan_in_fan_out = fan_in_fan_out
        self.is_target_conv_1d_layer = is_target_conv_1d_layer
        check_linear_like(self.get_base_layer(), type(self.get_base_layer()).__name__, self.method_name)
        in_features, out_features = _get_in_out_features(self.get_base_layer())
        self.in_features, self.out_features = in_features, out_features
        self.kwargs = kwargs

    # ------------------------------------------------------------------ what a method provides
    def lora_factors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The materialised factors ``(A (r, in), B (out, r))``: ΔW = scaling · B · A."""
        raise NotImplementedError

    def adapter_output(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """``scaling · (dropout(x) Aᵀ) Bᵀ``; override when the factors need not be materialised."""
        a, b = self.lora_factors(adapter_name)
        h = F.linear(self.dropout(adapter_name)(self._cast_input_dtype(x, a.dtype)), a)
        return F.linear(h, b) * self.scaling[adapter_name]

    # ------------------------------------------------------------------ shared behaviour
    def dropout(self, adapter_name: str) -> nn.Module:
        return getattr(self, self.dropout_attr)[adapter_name]

    def set_dropout(self, adapter_name: str, p: float) -> None:
        getattr(self, self.dropout_attr)[adapter_name] = nn.Dropout(p=p) if p > 0 else nn.Identity()

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.r

    def base_device(self):
        return weight_device(self.get_base_layer())

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        return True

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        a, b = self.lora_factors(adapter_name)
        base_dtype = weight_dtype(self.get_base_layer()) or a.dtype
        if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
            a, b = a.float(), b.float()
        delta = transpose(b @ a, self.fan_in_fan_out) * self.scaling[adapter_name]
        return delta.to(base_dtype)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        adapter_names = check_adapters_to_merge(self, adapter_names)
        if not adapter_names:
            return
        base_layer = self.get_base_layer()
        weight = getattr(base_layer, "weight", None)
        if not isinstance(weight, torch.Tensor) or type(weight) not in (torch.Tensor, nn.Parameter):
            raise ValueError(
                f"Cannot merge {self.method_name} into a quantized {type(base_layer).__name__}. Export the adapter to "
                "plain LoRA (open_instruct.lowrank.export_lora) and merge it into a full-precision copy of the base model."
            )
        for name in adapter_names:
            if not self.has_adapter(name):
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
            if self.has_adapter(name):
                self.get_base_layer().weight.data -= self.get_delta_weight(name)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        adapter_names = kwargs.pop("adapter_names", None)  # one adapter per row (mixed batches)
        if adapter_names is not None:
            self.check_adapter_names(x, adapter_names)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self.mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if self.has_adapter(name):
                result = result + self.delta_output(x, name).to(result.dtype)
        return result

    def delete_adapter(self, adapter_name: str) -> None:
        self.clear_factor_cache(adapter_name)
        super().delete_adapter(adapter_name)

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), .cuda(): drop factors of the old dtype/device
        self.clear_factor_cache()
        return super()._apply(fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.method_name}." + super().__repr__()


def layer_kwargs(target: nn.Module, config) -> dict:
    """``fan_in_fan_out`` / ``is_target_conv_1d_layer`` for a new layer around ``target`` (GPT-2's Conv1D is (in, out))."""
    base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    if isinstance(base, Conv1D):
        return {"fan_in_fan_out": True, "is_target_conv_1d_layer": True}
    if config.fan_in_fan_out and isinstance(base, nn.Linear):
        warnings.warn("fan_in_fan_out=True but the target is nn.Linear; using False.", stacklevel=3)
        return {"fan_in_fan_out": False}
    return {"fan_in_fan_out": config.fan_in_fan_out}
