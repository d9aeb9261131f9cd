"""A PEFT tuner whose trainable tensors live in pools shared by all layers of a module type (``shared_pools``).

MoS (shards drawn by index lists) and Tied-LoRA (one tied A and B per type) are both this: the tuner holds one
``FactorPool`` per module type, each adapted layer keeps a reference to the pools and says how it reads them.
The tuner here creates the layers, rolls back an adapter that does not fit the model, keeps the pools'
``requires_grad`` in step with the active adapter, and saves each pool once. A method subclasses it with its
``tuner_layer_cls`` and ``_build_pools(adapter_name)``.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _ExcludedModule, _maybe_include_all_linear_layers
from torch import nn

from .config import default_all_linear
from .grouping import group_same_shape
from .layer import FactorLinear, check_linear_like, layer_kwargs
from .serving import mixed_batch_hooks

POOLS_ATTR = "shared_pools"
# Checkpoints saved before the pools had a method-neutral name (MoS and Tied-LoRA, up to commit a61e890).
LEGACY_POOLS_ATTRS = ("mos_pools",)
_POOL_KEY = re.compile(r"^.*\." + POOLS_ATTR + r"\.[^.]+\.[AB]$")


def seeded_generator(config) -> torch.Generator:
    """A generator seeded with ``config.seed``; with no seed, one is drawn from torch's global RNG (so
    ``transformers.set_seed`` decides it) and recorded in the config, which is saved with the adapter."""
    if config.seed is None:
        config.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return torch.Generator().manual_seed(config.seed)


def check_targets_linear(tuner: BaseTuner, config, model: nn.Module, method: str) -> dict[str, nn.Module]:
    """``{key: base layer}`` of every module ``config`` targets in ``model``, found as PEFT's injection will find
    them, after checking that each is linear-like (``ValueError`` naming the first that is not): a tuner calls it
    before it replaces any module, so that a bad target leaves the model as it was."""
    config = _maybe_include_all_linear_layers(tuner._prepare_adapter_config(config, tuner.get_model_config(model)),
                                              model)
    found = {}
    for key, module in model.named_modules():
        if not key or key.endswith(".base_layer"):
            continue
        match = tuner._check_target_module_exists(config, key)
        if match and not isinstance(match, _ExcludedModule):
            found[key] = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            check_linear_like(found[key], key, method)
    return found


class SharedPoolTuner(BaseTuner):
    """Base of the tuners whose parameters live in per-module-type pools on the tuner (``shared_pools``)."""

    uses_shared_state: bool = True
    target_module_mapping: dict = {}
    method_label: str = "this method"  # the method's name in messages

    # ------------------------------------------------------------------ what a method provides
    def _build_pools(self, adapter_name: str) -> None:
        """Create the adapter's pools in ``self.shared_pools`` and connect every new layer to its pool; raise
        ``ValueError`` naming the field when the configuration does not fit the model."""
        raise NotImplementedError

    # ------------------------------------------------------------------ injection
    def _pre_injection_hook(self, model: nn.Module, config, adapter_name: str) -> None:
        if not hasattr(self, POOLS_ATTR):
            self.shared_pools = nn.ModuleDict({})

    def _prepare_adapter_config(self, peft_config, model_config: dict):
        return default_all_linear(peft_config)

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key):
        layer_cls = self.tuner_layer_cls
        if isinstance(target, layer_cls):
            target.update_layer(adapter_name, config, self.shared_pools)
            return
        new_module = layer_cls(target, adapter_name, config, self.shared_pools, **layer_kwargs(target, config))
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def inject_adapter(self, model, adapter_name, autocast_adapter_dtype=True, low_cpu_mem_usage=False,
                       state_dict=None) -> None:
        self._pre_injection_hook(model, self.peft_config[adapter_name], adapter_name)
        check_targets_linear(self, self.peft_config[adapter_name], model, self.method_label)
        super().inject_adapter(model, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype,
                               low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict)
        try:
            self._build_pools(adapter_name)
        except ValueError:  # a configuration that does not fit this model: leave the model as it was
            if len(self.peft_config) == 1:
                self._unload_and_optionally_merge(merge=False)
            else:
                self.delete_adapter(adapter_name)
            raise
        self._set_pool_requires_grad(inference_mode=self.peft_config[adapter_name].inference_mode)

    def layers_holding(self, adapter_name: str) -> dict[str, BaseTunerLayer]:
        """``{path: layer}`` of this tuner's layers that hold ``adapter_name``."""
        return {name: m for name, m in self.model.named_modules()
                if isinstance(m, self.tuner_layer_cls) and m.has_adapter(adapter_name)}

    def plan_types(self, config, shapes: dict[str, tuple[int, int]]) -> dict[str, tuple[list[str], int, int]]:
        """``{type_key: (names in layer order, in, out)}`` of the new layers; a method adds its own checks."""
        return group_same_shape(shapes, self.method_label)

    def pool_plan(self, adapter_name: str):
        """What ``_build_pools`` starts from: ``(config, {path: layer}, plan_types(...), seeded generator)``."""
        config = self.peft_config[adapter_name]
        layers = self.layers_holding(adapter_name)
        plan = self.plan_types(config, {name: (m.in_features, m.out_features) for name, m in layers.items()})
        return config, layers, plan, seeded_generator(config)

    # ------------------------------------------------------------------ adapters on/off, trainability
    def _set_pool_requires_grad(self, inference_mode: bool = False) -> None:
        active = set(self.active_adapters)
        for pool in self.shared_pools.values():
            for params in (pool.A, pool.B):
                for name, param in params.items():
                    param.requires_grad_(name in active and not inference_mode and not self._adapters_disabled)

    @property
    def _adapters_disabled(self) -> bool:
        return any(m.disable_adapters for m in self.model.modules() if isinstance(m, BaseTunerLayer))

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._set_pool_requires_grad(inference_mode)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        super()._enable_adapter_layers(enabled)
        self._set_pool_requires_grad()

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        super().set_requires_grad(adapter_names, requires_grad)
        names = {adapter_names} if isinstance(adapter_names, str) else set(adapter_names)
        for pool in self.shared_pools.values():
            for params in (pool.A, pool.B):
                for name in names & set(params):
                    params[name].requires_grad_(requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        for type_key, pool in list(self.shared_pools.items()):
            pool.remove_adapter(adapter_name)
            if not len(pool.A):  # no adapter left uses this module type
                del self.shared_pools[type_key]

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        """``adapter_names=[...]`` in ``PeftModel.forward``/``generate``: one adapter per row (mixed batches)."""
        with mixed_batch_hooks(self, FactorLinear, **kwargs):
            yield

    # ------------------------------------------------------------------ checkpoints: each pool once
    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        out = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        if not any(f".{POOLS_ATTR}." in k for k in out):
            raise KeyError(f"The shared pools of adapter {adapter_name!r} are missing from the state dict.")
        return out

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        renamed = {}
        for key, value in state_dict.items():
            for legacy in LEGACY_POOLS_ATTRS:
                key = key.replace(f".{legacy}.", f".{POOLS_ATTR}.")
            renamed[key] = value
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, renamed)
        return {(f"{key}.{adapter_name}" if _POOL_KEY.match(key) else key): value for key, value in remapped.items()}
