"""MoSModel (the PEFT tuner), the one-line conversion of a LoRA model, and parameter accounting."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .config import MoSConfig
from .factor import layer_kwargs
from .layer import MoSLayer, MoSPool
from .routing import build_index_lists, compact_index_dtype, num_pool_shards

POOLS_ATTR = "mos_pools"
_POOL_KEY = re.compile(r"^(?P<head>.*\." + POOLS_ATTR + r"\.[^.]+\.[AB])$")


def split_module_name(name: str) -> tuple[str, int, str]:
    """``model.layers.3.self_attn.q_proj`` -> (``model.layers``, 3, ``self_attn.q_proj``).

    The layer index is the first purely numeric component (a ModuleList position); a module outside any
    layer list (e.g. ``lm_head``) is its own type with a single "layer" 0.
    """
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i]), int(part), ".".join(parts[i + 1 :])
    return "", 0, name


def group_by_module_type(names: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Group module names into types; returns ``{type_key: [(layer_index, name), ...]}`` sorted by layer.

    The key is the short leaf name (``q_proj``) when that is unambiguous, else the path after the layer index,
    else the full pattern; dots become ``__`` so the key can name a submodule.
    """
    full = defaultdict(list)
    for name in names:
        prefix, layer, suffix = split_module_name(name)
        full[(prefix, suffix)].append((layer, name))
    keys = list(full)

    def unique(fn):
        labels = [fn(k) for k in keys]
        return labels if len(set(labels)) == len(labels) else None

    labels = (
        unique(lambda k: k[1].split(".")[-1])
        or unique(lambda k: k[1])
        or [f"{p}.N.{s}" if p else s for p, s in keys]
    )
    return {label.replace(".", "__"): sorted(full[k]) for label, k in zip(labels, keys)}


def group_same_shape(shapes: dict[str, tuple[int, int]], method: str = "MoS") -> dict[str, tuple[list[str], int, int]]:
    """``{name: (in, out)}`` -> ``{type_key: (names in layer order, in, out)}``, refusing a type of mixed shapes."""
    if not shapes:
        raise ValueError(f"{method} matched no module; check target_modules (e.g. 'all-linear' or ['q_proj', 'v_proj']).")
    groups = {}
    for type_key, members in sorted(group_by_module_type(list(shapes)).items()):
        names = [name for _, name in members]
        kinds = {shapes[name] for name in names}
        if len(kinds) != 1:
            detail = ", ".join(f"{n}: in={shapes[n][0]} out={shapes[n][1]}" for n in names)
            raise ValueError(
                f"{method} shares parameters per module type, but the modules of type {type_key!r} differ in shape "
                f"({detail}). Exclude the odd ones (exclude_modules) or target types of one shape."
            )
        (in_f, out_f), = kinds
        groups[type_key] = (names, in_f, out_f)
    return groups


def plan_pools(config: MoSConfig, shapes: dict[str, tuple[int, int]]) -> dict[str, tuple[list[str], int, int]]:
    """Validate a MoS configuration against target modules ``{name: (in, out)}``, before anything is built.

    Returns ``{type_key: (module names in layer order, in, out)}``; raises ``ValueError`` naming the field and the
    constraint: no target, modules of one type with different shapes, c not dividing a size, too few shared shards.
    """
    c = config.num_chunk_per_vec
    plan = group_same_shape(shapes, "MoS")
    for type_key, (names, in_f, out_f) in plan.items():
        for size_name, size in (("input", in_f), ("output", out_f)):
            if size % c:
                raise ValueError(
                    f"num_chunk_per_vec (c={c}) must divide every target's input and output size, but "
                    f"{type_key!r} has {size_name} size {size}. Choose a c that divides {in_f} and {out_f}."
                )
        config.validate_for_layers(len(names), type_key)
    return plan


class MoSModel(BaseTuner):
    """Injects MoS layers into a model; holds the shared shard pools (``mos_pools``), one per module type."""

    prefix: str = "mos_"
    tuner_layer_cls = MoSLayer
    uses_shared_state: bool = True
    target_module_mapping: dict = {}

    def _pre_injection_hook(self, model: nn.Module, config: MoSConfig, adapter_name: str) -> None:
        if not hasattr(self, POOLS_ATTR):
            self.mos_pools = nn.ModuleDict({})

    def _prepare_adapter_config(self, peft_config: MoSConfig, model_config: dict) -> MoSConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = "all-linear"
        return peft_config

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key):
        layer_cls = self.tuner_layer_cls  # MoSLayer here; subclasses (Tied-LoRA) bring their own layer
        if isinstance(target, layer_cls):
            target.update_layer(adapter_name, config, self.mos_pools)
            return
        new_module = layer_cls(target, adapter_name, config, self.mos_pools, **layer_kwargs(target, config))
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def inject_adapter(self, model, adapter_name, autocast_adapter_dtype=True, low_cpu_mem_usage=False,
                       state_dict=None) -> None:
        self._pre_injection_hook(model, self.peft_config[adapter_name], adapter_name)
        super().inject_adapter(model, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype,
                               low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict)
        try:
            self._build_pools_and_routing(adapter_name)
        except ValueError:  # a configuration that does not fit this model: leave the model as it was
            if len(self.peft_config) == 1:
                self._unload_and_optionally_merge(merge=False)
            else:
                self.delete_adapter(adapter_name)
            raise

    def _build_pools_and_routing(self, adapter_name: str) -> None:
        """Group the new layers by module type, validate shapes, create each type's pools and index lists."""
        config: MoSConfig = self.peft_config[adapter_name]
        layers = {name: m for name, m in self.model.named_modules()
                  if isinstance(m, MoSLayer) and adapter_name in m.mos_index_A}
        plan = plan_pools(config, {name: (m.in_features, m.out_features) for name, m in layers.items()})
        if config.seed is None:
            config.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        generator = torch.Generator().manual_seed(config.seed)
        r, e, p, c = config.r, config.valid_param_lora_r, config.valid_param_private_r, config.num_chunk_per_vec
        for type_key, (members, in_f, out_f) in plan.items():
            num_layers = len(members)
            if type_key not in self.mos_pools:
                self.mos_pools[type_key] = MoSPool(in_f, out_f)
            pool = self.mos_pools[type_key]
            device = layers[members[0]].mos_index_A[adapter_name].device
            pool.add_adapter(adapter_name, num_pool_shards(e, num_layers, c), c, config.init_weights, generator,
                             device=device)  # a base on the meta device gets meta pools (accounting only)
            routing = build_index_lists(num_layers, r, e, p, c, generator)
            for position, name in enumerate(members):
                vec = torch.full((r,), float(config.init_lora_A_vec_value))
                if config.init_lora_A_vec_std:
                    vec = vec + float(config.init_lora_A_vec_std) * torch.randn(r, generator=generator)
                layers[name].assign_routing(adapter_name, type_key, *routing[position], vec)
        self._set_pool_requires_grad(inference_mode=config.inference_mode)

    # ------------------------------------------------------------------ adapters on/off, trainability
    def _set_pool_requires_grad(self, inference_mode: bool = False) -> None:
        active = set(self.active_adapters)
        for pool in self.mos_pools.values():
            for params in (pool.A, pool.B):
                for name, param in params.items():
                    param.requires_grad_(name in active and not inference_mode and not self._adapters_disabled)

    @property
    def _adapters_disabled(self) -> bool:
        return any(m.disable_adapters for m in self.model.modules() if isinstance(m, MoSLayer))

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._set_pool_requires_grad(inference_mode)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        super()._enable_adapter_layers(enabled)
        self._set_pool_requires_grad()

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        super().set_requires_grad(adapter_names, requires_grad)
        names = {adapter_names} if isinstance(adapter_names, str) else set(adapter_names)
        for pool in self.mos_pools.values():
            for params in (pool.A, pool.B):
                for name in names & set(params):
                    params[name].requires_grad_(requires_grad)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        for pool in self.mos_pools.values():
            pool.A.pop(adapter_name, None)
            pool.B.pop(adapter_name, None)

    # ------------------------------------------------------------------ checkpoints: pools once, compact indices
    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        out = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        pool_keys = [k for k in out if f".{POOLS_ATTR}." in k]
        if not pool_keys:
            raise KeyError(f"MoS pools of adapter {adapter_name!r} are missing from the state dict.")
        num_shards = max(out[k].shape[0] for k in pool_keys)
        small = compact_index_dtype(num_shards)
        for k in out:
            if ".mos_index_" in k:
                out[k] = out[k].to(small)
        return out

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        out = {}
        for key, value in remapped.items():
            if _POOL_KEY.match(key):
                key = f"{key}.{adapter_name}"
            if ".mos_index_" in key:
                value = value.to(torch.long)
            out[key] = value
        return out


# ---------------------------------------------------------------------- the paper's one-line conversion
_CHUNK_FIELDS = ("valid_param_lora_r", "valid_param_private_r", "num_chunk_per_vec")


def mos_config_from(chunk_config, lora_config=None) -> MoSConfig:
    """A ``MoSConfig`` from a chunk config (a MoSConfig, or any object/dict with the MoS fields) and a LoraConfig."""
    if isinstance(chunk_config, MoSConfig):
        return chunk_config
    get = chunk_config.get if isinstance(chunk_config, dict) else lambda k, d=None: getattr(chunk_config, k, d)
    missing = [f for f in _CHUNK_FIELDS if get(f) is None]
    if missing:
        raise ValueError(f"chunk_config is missing {', '.join(missing)} (needed: lora_r or r, {', '.join(_CHUNK_FIELDS)}).")
    r = get("lora_r") or get("r") or (lora_config.r if lora_config is not None else None)
    if r is None:
        raise ValueError("chunk_config needs lora_r (or r), or pass a LoRA model whose config has r.")
    kw = {f: int(get(f)) for f in _CHUNK_FIELDS}
    if lora_config is not None:
        target = lora_config.target_modules
        kw.update(
            lora_alpha=lora_config.lora_alpha, lora_dropout=lora_config.lora_dropout,
            target_modules=sorted(target) if isinstance(target, (set, list)) else target,
            exclude_modules=lora_config.exclude_modules, layers_to_transform=lora_config.layers_to_transform,
            layers_pattern=lora_config.layers_pattern, fan_in_fan_out=lora_config.fan_in_fan_out,
            modules_to_save=lora_config.modules_to_save, task_type=lora_config.task_type,
            base_model_name_or_path=lora_config.base_model_name_or_path,
        )
    for opt in ("lora_alpha", "lora_dropout", "target_modules", "seed", "init_lora_A_vec_value", "init_lora_A_vec_std"):
        if get(opt) is not None:
            kw[opt] = get(opt)
    return MoSConfig(r=int(r), **kw)


def share_lora_chunkwisely(model, chunk_config, adapter_name: str = "default"):
    """Turn a PEFT LoRA model into a MoS model (the paper's one-liner, right after LoRA is loaded).

    ``chunk_config`` is a ``MoSConfig`` or any object with ``lora_r`` (or ``r``), ``valid_param_lora_r``,
    ``valid_param_private_r`` and ``num_chunk_per_vec``; LoRA's targets, alpha and dropout are kept. The LoRA
    weights are discarded (MoS initialises its own pools, as the original does). Returns the MoS ``PeftModel``;
    use the return value, the LoRA wrapper is unloaded.
    """
    import peft

    if not isinstance(model, peft.PeftModel):
        raise TypeError(f"share_lora_chunkwisely expects a peft.PeftModel with LoRA loaded, got {type(model).__name__}.")
    lora_config = model.peft_config[adapter_name]
    if not isinstance(lora_config, peft.LoraConfig):
        raise TypeError(f"Adapter {adapter_name!r} is a {type(lora_config).__name__}, not a LoraConfig.")
    cfg = mos_config_from(chunk_config, lora_config)
    lora_layers = {name: m for name, m in model.base_model.model.named_modules()
                   if isinstance(m, peft.tuners.lora.LoraLayer) and adapter_name in m.lora_A}
    plan_pools(cfg, {name: (m.in_features, m.out_features) for name, m in lora_layers.items()})  # before unloading
    base = model.base_model.unload()
    mos_model = peft.get_peft_model(base, cfg, adapter_name=adapter_name)
    mos_model.chunk_config = cfg
    return mos_model


# ---------------------------------------------------------------------- accounting
@dataclass
class MoSReport:
    trainable_params: int
    lora_params_per_rank: int
    equivalent_lora_rank: float
    checkpoint_bytes: int
    dense_lora_bytes: int

    def __str__(self) -> str:
        return (f"trainable params {self.trainable_params:,} = {self.equivalent_lora_rank:g} x LoRA rank-1 "
                f"({self.lora_params_per_rank:,}); compact checkpoint {self.checkpoint_bytes / 2**20:.2f} MiB "
                f"(dense LoRA export {self.dense_lora_bytes / 2**20:.2f} MiB)")


def mos_report(model, adapter_name: str = "default") -> MoSReport:
    """Trainable parameters, their LoRA-rank equivalent, and checkpoint sizes (compact vs dense export)."""
    layers = [m for m in model.modules() if isinstance(m, MoSLayer) and adapter_name in m.mos_index_A]
    per_rank = sum(m.in_features + m.out_features for m in layers)
    pools = {id(p): p for m in layers for p in (m.pool(adapter_name).A[adapter_name], m.pool(adapter_name).B[adapter_name])}
    trainable = sum(p.numel() for p in pools.values())
    num_shards = max(p.shape[0] for p in pools.values())
    idx_bytes = torch.empty(0, dtype=compact_index_dtype(num_shards)).element_size()
    ckpt = sum(p.numel() * p.element_size() for p in pools.values())
    ckpt += sum((m.mos_index_A[adapter_name].numel() + m.mos_index_B[adapter_name].numel()) * idx_bytes
                + m.mos_vec[adapter_name].numel() * 4 for m in layers)
    dense = sum(m.r[adapter_name] * (m.in_features + m.out_features) * 4 for m in layers)
    return MoSReport(trainable, per_rank, trainable / per_rank if per_rank else 0.0, ckpt, dense)
