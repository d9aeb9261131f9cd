"""Serving factor layers: mixed-adapter batches and the inference factor cache.

``FactorServing`` is mixed into the factor layer (``FactorLinear``) and gives every method built on it

* **mixed batches**: ``forward(x, adapter_names=[...])`` with one adapter name per row of ``x`` (``"__base__"``
  for none), as PEFT's LoRA layers do. The tuner's ``_enable_peft_forward_hooks`` (``mixed_batch_hooks`` below)
  hands the names from ``PeftModel.forward``/``generate`` to every layer;
* **an inference factor cache**: without gradients a layer keeps its materialised ``(scaling · A, B)`` and reuses
  them until any tensor they are built from changes. The key of an entry is, for every source tensor the
  method names (``factor_sources``), its identity, its autograd version counter (bumped by every in-place
  update: optimizer steps, ``load_state_dict``, ``copy_`` under ``no_grad``) and its storage address (changed by
  ``.to()`` dtype/device moves); ``delete_adapter`` and ``_apply`` drop entries outright. Edits through
  ``tensor.data`` bypass the version counter: call ``clear_factor_cache(model)`` after those. Sources that a
  distributed engine re-materialises in place (DeepSpeed ZeRO-3, FSDP) are never cached.

The cache holds the dense factors of at most ``factor_cache_size`` adapters per layer (least recently used
first out; default 1, the active adapter; ``set_factor_cache_size(model, k)``), so many adapters stay resident at
their compact size; a mixed batch over k adapters runs fastest with k.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

BASE = "__base__"


def cacheable(t: torch.Tensor) -> bool:
    """Whether a tensor's identity, version and storage tell when its values change (not so for parameters
    that DeepSpeed ZeRO-3 or FSDP re-materialise in place, for tensor subclasses, or for inference tensors)."""
    if type(t) not in (torch.Tensor, nn.Parameter) or hasattr(t, "ds_id") or hasattr(t, "_fsdp_flattened"):
        return False
    return not t.is_inference()


def _stamp(t: torch.Tensor) -> tuple[int, int]:
    return t._version, t.data_ptr()


class FactorServing:
    """Mixed-batch forward and the no-grad factor cache of a factor layer (see the module docstring)."""

    factor_cache_size: int = 1

    # ------------------------------------------------------------------ what a method provides
    def factor_sources(self, adapter_name: str) -> tuple[torch.Tensor, ...]:
        """Every tensor ``lora_factors(adapter_name)`` reads; ``()`` disables the cache for the method."""
        return ()

    # ------------------------------------------------------------------ the cache
    def __getstate__(self):  # deepcopy/pickle: the copy builds its own cache
        state = dict(super().__getstate__())
        state.pop("_factor_cache", None)
        return state

    def _cache(self) -> OrderedDict:
        cache = self.__dict__.get("_factor_cache")
        if cache is None:
            cache = OrderedDict()
            self.__dict__["_factor_cache"] = cache
        return cache

    def clear_factor_cache(self, adapter_name: str | None = None) -> None:
        cache = self._cache()
        if adapter_name is None:
            cache.clear()
        else:
            cache.pop(adapter_name, None)

    def factor_cache_tensors(self) -> list[torch.Tensor]:
        """The cached factor tensors (for memory accounting)."""
        return [t for entry in self._cache().values() for t in entry[2:]]

    def cached_factors(self, adapter_name: str):
        """``(scaling · A (r, in), B (out, r))`` from the cache, rebuilt when a source changed; ``None`` when the
        method or its tensors cannot be cached. Only call without gradients."""
        size = self.factor_cache_size
        if size <= 0:
            return None
        sources = self.factor_sources(adapter_name)
        if not sources:
            return None
        cache = self._cache()
        entry = cache.get(adapter_name)
        if entry is not None:
            refs, stamps = entry[0], entry[1]
            if all(s is t and _stamp(t) == st for s, t, st in zip(refs, sources, stamps)):
                cache.move_to_end(adapter_name)
                return entry[2], entry[3]
            del cache[adapter_name]
        if not all(cacheable(t) for t in sources):
            return None
        a, b = self.lora_factors(adapter_name)
        a = (a * self.scaling[adapter_name]).contiguous()
        b = b.contiguous()
        cache[adapter_name] = (sources, tuple(_stamp(t) for t in sources), a, b)
        while len(cache) > size:
            cache.popitem(last=False)
        return a, b

    def delta_output(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The adapter's contribution for ``x``: from cached factors without gradients, else ``adapter_output``."""
        if not torch.is_grad_enabled():
            factors = self.cached_factors(adapter_name)
            if factors is not None:
                a, b = factors
                dropout = self.dropout(adapter_name)
                if isinstance(dropout, nn.Dropout) and dropout.training:
                    x = dropout(x)
                x = self._cast_input_dtype(x, a.dtype)
                if a.device != x.device:  # a layer on another device than its pool (device_map)
                    a, b = a.to(x.device), b.to(x.device)
                return F.linear(F.linear(x, a), b)
        return self.adapter_output(x, adapter_name)

    # ------------------------------------------------------------------ mixed batches
    def check_adapter_names(self, x: torch.Tensor, adapter_names) -> None:
        if len(adapter_names) != len(x):
            raise ValueError(f"Length of `adapter_names` should be the same as the number of inputs, but got "
                             f"{len(adapter_names)} and {len(x)} respectively.")
        if self.merged:
            raise ValueError("Cannot pass `adapter_names` when there are merged adapters, please call "
                             "`unmerge_adapter` first.")

    def mixed_batch_forward(self, x: torch.Tensor, *args, adapter_names, **kwargs) -> torch.Tensor:
        """Row i of ``x`` gets the adapter ``adapter_names[i]`` (``"__base__"``: none)."""
        result = self.base_layer(x, *args, **kwargs)
        rows: dict[str, list[int]] = {}
        for i, name in enumerate(adapter_names):
            rows.setdefault(name, []).append(i)
        for name, index in rows.items():
            if name == BASE or not self.has_adapter(name):
                continue
            if len(index) == len(adapter_names):
                result = result + self.delta_output(x, name).to(result.dtype)
                continue
            index_t = torch.tensor(index, device=x.device)
            delta = self.delta_output(x.index_select(0, index_t), name).to(result.dtype)
            result = result.index_add(0, index_t.to(result.device), delta.to(result.device))
        return result


# ---------------------------------------------------------------------------------------------------- tuner side
def _inject_adapter_names(module, args, kwargs, adapter_names):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


@contextmanager
def mixed_batch_hooks(tuner, layer_cls, **kwargs):
    """The tuner's ``_enable_peft_forward_hooks``: pass ``adapter_names`` (popped from ``kwargs``) to every layer of
    ``layer_cls`` and to ``modules_to_save`` wrappers for the duration of one forward or ``generate``."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    adapter_names = kwargs.pop("adapter_names", None)
    if adapter_names is None:
        yield
        return
    if isinstance(adapter_names, str) or not isinstance(adapter_names, (list, tuple)):
        raise TypeError(f"adapter_names must be a list of adapter names (one per row), got {adapter_names!r}.")
    if tuner.training:
        raise ValueError("Cannot pass `adapter_names` when the model is in training mode.")
    layers = [m for m in tuner.model.modules() if isinstance(m, (layer_cls, AuxiliaryTrainingWrapper))]
    known = set(tuner.peft_config)
    unknown = sorted({n for n in adapter_names if n != BASE} - known)
    if unknown:
        raise ValueError(f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}")
    num_beams = kwargs.get("num_beams")
    if isinstance(num_beams, int) and num_beams > 1:
        if getattr(getattr(tuner.model, "config", None), "is_encoder_decoder", False):
            raise ValueError("adapter_names with beam search is supported for decoder-only models only.")
        adapter_names = [n for n in adapter_names for _ in range(num_beams)]
    hook = partial(_inject_adapter_names, adapter_names=list(adapter_names))
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------------- model-wide knobs
def set_factor_cache_size(model, adapters: int) -> None:
    """Keep the inference factors of up to ``adapters`` adapters per layer (0: no cache). The default, 1, serves
    one active adapter at LoRA's speed at the compact size; a mixed batch over k adapters runs fastest with k."""
    if not isinstance(adapters, int) or isinstance(adapters, bool) or adapters < 0:
        raise ValueError(f"adapters must be an integer >= 0, got {adapters!r}.")
    for module in model.modules():
        if isinstance(module, FactorServing):
            module.factor_cache_size = adapters
            cache = module._cache()
            while len(cache) > adapters:
                cache.popitem(last=False)


def clear_factor_cache(model) -> None:
    """Drop every cached factor (needed only after editing adapter tensors through ``.data``)."""
    for module in model.modules():
        if isinstance(module, FactorServing):
            module.clear_factor_cache()
