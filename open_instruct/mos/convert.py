"""The paper's one-line conversion: a PEFT LoRA model -> a MoS model with LoRA's targets, alpha and dropout."""

from __future__ import annotations

import dataclasses
import warnings

from open_instruct.lowrank.layer import check_linear_like

from .config import MoSConfig
from .model import plan_pools

_CHUNK_FIELDS = ("valid_param_lora_r", "valid_param_private_r", "num_chunk_per_vec")


def _lora_fields(lora_config) -> dict:
    """What MoS takes over from the LoRA it replaces: targets, scaling, dropout, task and base model."""
    target = lora_config.target_modules
    return dict(
        lora_alpha=lora_config.lora_alpha, lora_dropout=lora_config.lora_dropout,
        target_modules=sorted(target) if isinstance(target, (set, list)) else target,
        exclude_modules=lora_config.exclude_modules, layers_to_transform=lora_config.layers_to_transform,
        layers_pattern=lora_config.layers_pattern, fan_in_fan_out=lora_config.fan_in_fan_out,
        modules_to_save=lora_config.modules_to_save, task_type=lora_config.task_type,
        base_model_name_or_path=lora_config.base_model_name_or_path,
    )


# LoRA initialisations that rewrite the base weights (W <- W - scaling·B·A, or a quantised approximation): unloading
# such a LoRA does not give back the pretrained model.
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


def _check_lora_carries_over(lora_config, adapter_name: str) -> None:
    """Refuse the LoRA features MoS cannot take over without changing the model; warn about those it drops.

    MoS discards LoRA's weights and keeps its targets, alpha and dropout; what else a LoraConfig says either has
    no MoS counterpart (an error naming the setting and the fix) or changes training in a way the user should
    hear about (a warning)."""
    where = f"LoRA adapter {adapter_name!r}"
    init = lora_config.init_lora_weights
    if isinstance(init, str) and init.startswith(_BASE_REWRITING_INITS):
        raise ValueError(f"{where} was initialised with init_lora_weights={init!r}, which rewrites the base weights, "
                         "so the model under it is no longer the pretrained one. Load LoRA with "
                         "init_lora_weights=True before share_lora_chunkwisely (MoS initialises its own pools).")
    if getattr(lora_config, "use_dora", False):
        raise ValueError(f"{where} uses DoRA (use_dora=True); MoS has no magnitude vector to carry it. Load LoRA "
                         "with use_dora=False before share_lora_chunkwisely.")
    if getattr(lora_config, "lora_bias", False):
        raise ValueError(f"{where} has lora_bias=True; MoS adapters have no bias. Load LoRA with lora_bias=False "
                         "before share_lora_chunkwisely.")
    dropped = []
    if getattr(lora_config, "use_rslora", False):
        dropped.append("use_rslora=True (MoS scales by lora_alpha/r, the paper's, not rsLoRA's lora_alpha/sqrt(r))")
    if lora_config.rank_pattern or lora_config.alpha_pattern:
        dropped.append("rank_pattern/alpha_pattern (MoS uses one r and one lora_alpha for every layer)")
    if lora_config.bias != "none":
        dropped.append(f"bias={lora_config.bias!r} (MoS trains no biases; they stay frozen)")
    if dropped:
        warnings.warn(f"share_lora_chunkwisely: {where}'s " + "; ".join(dropped) + " does not carry over to MoS.",
                      stacklevel=3)


def _comparable(value):
    return sorted(value) if isinstance(value, (set, list, tuple)) else value


def mos_config_from(chunk_config, lora_config=None) -> MoSConfig:
    """A ``MoSConfig`` from a chunk config (a MoSConfig, or any object/dict with the MoS fields) and a LoraConfig.

    A ``MoSConfig`` keeps its own MoS fields (r, e, p, c, vec, seed) and takes LoRA's targets, alpha, dropout
    (and the other targeting fields), with a warning naming each field whose value it replaces."""
    if isinstance(chunk_config, MoSConfig):
        if lora_config is None:
            return chunk_config
        lora = _lora_fields(lora_config)
        # (PEFT expands LoRA's 'all-linear' into module names: a MoSConfig left at 'all-linear' agrees with them.
        # fan_in_fan_out is not a choice to warn about: PEFT sets it for GPT-2's Conv1D, and so does each MoS layer)
        changed = [f"{k} ({getattr(chunk_config, k)!r} -> {v!r})" for k, v in lora.items()
                   if k in ("lora_alpha", "lora_dropout", "target_modules", "exclude_modules")
                   and _comparable(getattr(chunk_config, k)) != _comparable(v)
                   and not (k == "target_modules" and getattr(chunk_config, k) in (None, "all-linear"))]
        if changed:
            warnings.warn("share_lora_chunkwisely keeps the LoRA model's " + ", ".join(changed) + " over the "
                          "MoSConfig's.", stacklevel=3)
        return dataclasses.replace(chunk_config, **lora)
    get = chunk_config.get if isinstance(chunk_config, dict) else lambda k, d=None: getattr(chunk_config, k, d)
    missing = [f for f in _CHUNK_FIELDS if get(f) is None]
    if missing:
        raise ValueError(f"chunk_config is missing {', '.join(missing)} (needed: lora_r or r, {', '.join(_CHUNK_FIELDS)}).")
    r = get("lora_r") or get("r") or (lora_config.r if lora_config is not None else None)
    if r is None:
        raise ValueError("chunk_config needs lora_r (or r), or pass a LoRA model whose config has r.")
    kw = {f: int(get(f)) for f in _CHUNK_FIELDS}
    if lora_config is not None:
        kw.update(_lora_fields(lora_config))
    for opt in ("lora_alpha", "lora_dropout", "target_modules", "seed", "init_lora_A_vec_value", "init_lora_A_vec_std",
                "subset_selection", "pair_dissociation"):
        if get(opt) is not None:
            kw[opt] = get(opt)
    return MoSConfig(r=int(r), **kw)


def share_lora_chunkwisely(model, chunk_config, adapter_name: str | None = None):
    """Turn a PEFT LoRA model into a MoS model (the paper's one-liner, right after LoRA is loaded).

    ``chunk_config`` is a ``MoSConfig`` or any object with ``lora_r`` (or ``r``), ``valid_param_lora_r``,
    ``valid_param_private_r`` and ``num_chunk_per_vec``; LoRA's targets, alpha and dropout are kept. The LoRA
    weights are discarded (MoS initialises its own pools, as the original does). Returns the MoS ``PeftModel``;
    use the return value, the LoRA wrapper is unloaded. ``adapter_name`` (default: the active adapter) picks the
    LoRA adapter to convert; the MoS adapter takes its name. A LoRA that rewrote the base weights (PiSSA, OLoRA, CorDA,
    LoftQ), DoRA and ``lora_bias`` are refused with a ``ValueError``; rsLoRA scaling, rank/alpha patterns and
    trainable biases are dropped with a warning.
    """
    import peft

    if not isinstance(model, peft.PeftModel):
        raise TypeError(f"share_lora_chunkwisely expects a peft.PeftModel with LoRA loaded, got {type(model).__name__}.")
    if adapter_name is None:  # the adapter LoRA was loaded as (PEFT's "default" unless named otherwise)
        adapter_name = model.active_adapter
    if adapter_name not in model.peft_config:
        raise ValueError(f"share_lora_chunkwisely: the model has no adapter {adapter_name!r}; it has "
                         f"{sorted(model.peft_config)}. Pass adapter_name= one of them.")
    lora_config = model.peft_config[adapter_name]
    if not isinstance(lora_config, peft.LoraConfig):
        raise TypeError(f"Adapter {adapter_name!r} is a {type(lora_config).__name__}, not a LoraConfig.")
    _check_lora_carries_over(lora_config, adapter_name)
    cfg = mos_config_from(chunk_config, lora_config)
    lora_layers = {name: m for name, m in model.base_model.model.named_modules()
                   if isinstance(m, peft.tuners.lora.LoraLayer) and adapter_name in m.r}
    for name, m in lora_layers.items():  # LoRA also adapts embeddings and convolutions; MoS does not
        check_linear_like(m.get_base_layer(), name, "MoS")
    plan_pools(cfg, {name: (m.in_features, m.out_features) for name, m in lora_layers.items()})  # before unloading
    base = model.base_model.unload()
    mos_model = peft.get_peft_model(base, cfg, adapter_name=adapter_name)
    mos_model.chunk_config = cfg
    return mos_model
