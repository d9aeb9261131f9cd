"""Exact export of any low-rank adapter here to a plain PEFT LoRA adapter.

MoS, Tied-LoRA, PRoLoRA and VeRA layers are all rank-r LoRA layers once their factors are materialised
(ΔW = scaling · B · A), so writing each layer's A (r, in) and B (out, r) gives a LoRA adapter that stock PEFT, vLLM
and lm-eval load without this project's code:

* layers with a ``lora_factors(adapter) -> (A, B)`` method and ``r`` / ``scaling`` dicts (the per-method hook,
  see ``open_instruct.lowrank.layer.FactorLinear``): MoS (the frozen vec folded into A), Tied-LoRA
  (A = Λu·A_t, B = Λv·B_t), PRoLoRA (replicated, rolled chunks + unshared ranks);
* PEFT's VeRA layers: A = Λd·A_frozen, B = Λb·B_frozen, scaling 1 (so lora_alpha = r);
* PEFT's plain LoRA layers (no DoRA or other variant), unchanged.

``lora_alpha`` is scaling·r when every layer has the same r and scaling (always the case for these methods), so
the exported factors are the method's own. Otherwise each layer's scaling is folded into its B, lora_alpha = r
(scaling 1), and layers of another rank go to ``rank_pattern`` / ``alpha_pattern``.

The command line (loading base model + adapter from disk) is ``python -m open_instruct.export``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

LORA_WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"


def _tuner(model):
    """The PEFT tuner (``BaseTuner``) behind a PeftModel, or the tuner itself."""
    from peft.tuners.tuners_utils import BaseTuner

    if isinstance(model, BaseTuner):
        return model
    base = getattr(model, "base_model", None)
    if isinstance(base, BaseTuner):
        return base
    raise TypeError(f"Expected a PEFT model (PeftModel or tuner) with a MoS/LoRA-family adapter, got "
                    f"{type(model).__name__}.")


def layer_factors(layer, adapter_name: str):
    """``(A (r, in), B (out, r), scaling)`` of one adapted layer, or ``None`` if it holds no such adapter."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.vera import VeraLayer

    if callable(getattr(layer, "lora_factors", None)) and adapter_name in getattr(layer, "scaling", {}):
        a, b = layer.lora_factors(adapter_name)
        return a, b, float(layer.scaling[adapter_name])
    if isinstance(layer, VeraLayer) and adapter_name in layer.vera_lambda_d:
        lambda_d, lambda_b = layer.vera_lambda_d[adapter_name], layer.vera_lambda_b[adapter_name]
        a = layer.vera_A[adapter_name][:, : layer.in_features].to(lambda_d.device, lambda_d.dtype)
        b = layer.vera_B[adapter_name][: layer.out_features, :].to(lambda_b.device, lambda_b.dtype)
        return lambda_d[:, None] * a, lambda_b[:, None] * b, 1.0
    if isinstance(layer, LoraLayer) and adapter_name in layer.lora_A:
        if getattr(layer, "lora_variant", {}).get(adapter_name) is not None or getattr(layer, "lora_bias", {}).get(adapter_name):
            raise ValueError(f"LoRA adapter {adapter_name!r} uses a variant (DoRA, ...) or lora_bias; it is already "
                             "a PEFT adapter, save it with save_pretrained instead of exporting it.")
        if not isinstance(layer.lora_A[adapter_name], torch.nn.Linear):
            raise ValueError(f"Only linear LoRA layers can be exported, got {type(layer).__name__}.")
        return layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight, float(layer.scaling[adapter_name])
    return None


def _adapted_layers(tuner, adapter_name: str) -> list[tuple[str, object]]:
    """``(path, layer)`` of every tuner layer holding ``adapter_name`` (paths relative to the base model)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    for path, module in tuner.model.named_modules():
        if isinstance(module, BaseTunerLayer) and _holds(module, adapter_name):
            out.append((path, module))
    if not out:
        raise ValueError(f"The model holds no exportable adapter layer for adapter {adapter_name!r}.")
    return out


def _holds(layer, adapter_name: str) -> bool:
    from peft.tuners.lora import LoraLayer
    from peft.tuners.vera import VeraLayer

    if callable(getattr(layer, "lora_factors", None)):
        return adapter_name in getattr(layer, "scaling", {})
    if isinstance(layer, VeraLayer):
        return adapter_name in layer.vera_lambda_d
    if isinstance(layer, LoraLayer):
        return adapter_name in layer.lora_A
    return False


def _clean_alpha(alpha: float):
    """16.000000000000004 -> 16 (what the config said), anything else unchanged."""
    nearest = round(alpha)
    return int(nearest) if abs(alpha - nearest) <= 1e-9 * max(1.0, abs(alpha)) else alpha


@dataclass
class ExportPlan:
    """How the materialised factors map onto one LoRA config."""

    layers: list[tuple[str, object]]
    r: int
    lora_alpha: float
    fold_scaling: bool
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)


def export_plan(model, adapter_name: str = "default") -> ExportPlan:
    """Ranks and scalings of the adapted layers -> one r and lora_alpha (or folded scalings + patterns)."""
    tuner = _tuner(model)
    layers = _adapted_layers(tuner, adapter_name)
    ranks = {path: int(layer.r[adapter_name]) for path, layer in layers}
    scalings = {path: float(_scaling(layer, adapter_name)) for path, layer in layers}
    r = Counter(ranks.values()).most_common(1)[0][0]
    if len(set(ranks.values())) == 1 and len(set(scalings.values())) == 1:
        return ExportPlan(layers, r, _clean_alpha(next(iter(scalings.values())) * r), fold_scaling=False)
    # Mixed: fold each layer's scaling into its B; scaling 1 everywhere (lora_alpha = r per layer).
    odd = {re.escape(path): rank for path, rank in ranks.items() if rank != r}
    return ExportPlan(layers, r, r, fold_scaling=True, rank_pattern=odd, alpha_pattern=dict(odd))


def _scaling(layer, adapter_name: str) -> float:
    from peft.tuners.vera import VeraLayer

    return 1.0 if isinstance(layer, VeraLayer) else layer.scaling[adapter_name]


def lora_state_dict(model, adapter_name: str = "default", dtype: torch.dtype = torch.float32, plan=None):
    """``{'base_model.model.<path>.lora_A.weight': A (r, in), '...lora_B.weight': B (out, r)}`` for every layer."""
    plan = plan or export_plan(model, adapter_name)
    out = {}
    with torch.no_grad():
        for path, module in plan.layers:
            a, b, scaling = layer_factors(module, adapter_name)
            if plan.fold_scaling:
                b = b * scaling
            out[f"base_model.model.{path}.lora_A.weight"] = a.detach().to("cpu", dtype).contiguous()
            out[f"base_model.model.{path}.lora_B.weight"] = b.detach().to("cpu", dtype).contiguous()
        out.update(modules_to_save_state_dict(model, adapter_name, dtype))
    return out


def modules_to_save_state_dict(model, adapter_name: str = "default", dtype: torch.dtype = torch.float32):
    """The fully trained copies of ``modules_to_save`` (e.g. a head), under the keys PEFT's LoRA loads them from."""
    from peft.utils.other import ModulesToSaveWrapper

    out = {}
    for path, module in _tuner(model).model.named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            for name, tensor in module.modules_to_save[adapter_name].state_dict().items():
                out[f"base_model.model.{path}.{name}"] = tensor.detach().to("cpu", dtype).contiguous()
    return out


def lora_config_for(model, adapter_name: str = "default", plan=None):
    """The ``peft.LoraConfig`` that reproduces the adapter's layers, scaling and targets."""
    from peft import LoraConfig

    tuner = _tuner(model)
    plan = plan or export_plan(model, adapter_name)
    cfg = tuner.peft_config[adapter_name]
    adapted = [p for p, _ in plan.layers]
    adapted_set = set(adapted)
    leaves = sorted({p.split(".")[-1] for p in adapted})
    # Short leaf names (q_proj, ...) are what vLLM and most tools expect; use them when they select exactly the
    # adapted modules, else list full paths.
    linear_like = [p for p, m in tuner.model.named_modules() if p.split(".")[-1] in leaves
                   and p not in adapted_set and hasattr(m, "weight")
                   and not any(p.startswith(a + ".") for a in adapted)]
    targets = leaves if not linear_like else sorted(adapted)
    dropout = getattr(cfg, "lora_dropout", getattr(cfg, "vera_dropout", 0.0))
    return LoraConfig(
        r=plan.r, lora_alpha=plan.lora_alpha, lora_dropout=dropout, target_modules=targets,
        rank_pattern=plan.rank_pattern, alpha_pattern=plan.alpha_pattern,
        bias="none", fan_in_fan_out=getattr(cfg, "fan_in_fan_out", False), task_type=cfg.task_type,
        base_model_name_or_path=cfg.base_model_name_or_path, modules_to_save=cfg.modules_to_save,
        init_lora_weights=True,
    )


def export_lora(model, output_dir: str | Path, adapter_name: str = "default", dtype: torch.dtype = torch.float32) -> Path:
    """Write a plain PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``) to ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = export_plan(model, adapter_name)
    state = lora_state_dict(model, adapter_name, dtype, plan=plan)
    config = lora_config_for(model, adapter_name, plan=plan)
    tmp = out / (LORA_WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / LORA_WEIGHTS_NAME)
    write_config(config, out)
    return out


def write_config(config, out: Path) -> None:
    """``adapter_config.json`` with its module lists sorted, so that two exports of one adapter are byte-identical
    (PEFT writes the ``target_modules`` set in hash order, which differs between processes)."""
    data = config.to_dict()
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(data.get(key), (set, list, tuple)):
            data[key] = sorted(data[key])
    data = {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / CONFIG_NAME)
