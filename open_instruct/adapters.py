"""Reading a saved adapter directory: its config, its weights, and base model + adapter loaded with checks.

``open_instruct.methods.register_peft_types`` registers the PEFT types of every method, so the native
checkpoints of every method load through ``peft.PeftModel.from_pretrained`` like PEFT's own. Every way a saved
adapter can fail to fit is an ``AdapterError`` with one line naming the file and the fix: a config that is not
JSON, truncated weights, weights whose shapes no longer match the config (r, e, c edited), or an adapter trained
on a different model (its modules and the base's differ). A different recorded base model name is only a warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from open_instruct.errors import UserError
from open_instruct.methods import adapter_subdir, register_peft_types, tuner_prefixes

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


class AdapterError(UserError, ValueError):
    """A saved adapter that cannot be used as it is; the message names the file and the fix."""


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """``adapter_config.json`` of ``adapter_dir`` as a dict, or ``AdapterError`` naming the problem."""
    path = Path(adapter_dir) / ADAPTER_CONFIG_NAME
    if not path.is_file():
        raise AdapterError(f"{adapter_dir} has no {ADAPTER_CONFIG_NAME}; pass the directory of a saved adapter.")
    try:
        config = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterError(f"{path} is not valid JSON ({err}); restore it from the run directory or re-save the "
                           "adapter.") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise AdapterError(f"{path} has no peft_type; it is not a PEFT adapter config. Restore it from the run "
                           "directory or re-save the adapter.")
    return config


def adapter_peft_type(adapter_dir: str | Path) -> str | None:
    """The ``peft_type`` in ``adapter_dir/adapter_config.json`` (``None`` without one)."""
    if not (Path(adapter_dir) / ADAPTER_CONFIG_NAME).is_file():
        return None
    return read_adapter_config(adapter_dir)["peft_type"]


def adapter_weight_keys(adapter_dir: str | Path) -> list[str]:
    """The tensor names in ``adapter_model.safetensors``, or ``AdapterError`` when the file is missing or damaged."""
    from safetensors import safe_open

    path = Path(adapter_dir) / ADAPTER_WEIGHTS_NAME
    if not path.is_file():
        raise AdapterError(f"{adapter_dir} has no {ADAPTER_WEIGHTS_NAME}; copy the adapter directory again in full.")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            for key in keys:  # reads every tensor: a file cut short fails here, not halfway through an evaluation
                f.get_slice(key)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise AdapterError(f"{path} is truncated or not a safetensors file ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); copy it again from the run "
                           "directory.") from None
    return keys


def _module_paths(keys) -> set[str]:
    """``base_model.model.<path>.<tuner attr>...`` -> ``<path>`` for the keys of adapted modules."""
    paths, prefixes = set(), tuner_prefixes()  # the attribute names that start an adapter's own tensors
    for key in keys:
        if not key.startswith("base_model.model."):
            continue  # tensors on the tuner itself (shared pools)
        parts = key.removeprefix("base_model.model.").split(".")
        cut = next((i for i, part in enumerate(parts) if part.startswith(prefixes)), None)
        if cut:
            paths.add(".".join(parts[:cut]))
    return paths


def _different_model_error(adapter_dir, file_paths: set[str], adapted: set[str], base_name) -> AdapterError | None:
    extra, missing = sorted(file_paths - adapted), sorted(adapted - file_paths)
    if not extra and not missing:
        return None
    detail = []
    if extra:
        detail.append(f"it adapts {len(extra)} module(s) this base lacks or does not target, e.g. {extra[0]}")
    if missing:
        detail.append(f"it has no weights for {len(missing)} module(s) of this base, e.g. {missing[0]}")
    trained_on = f" (trained on {base_name})" if base_name else ""
    return AdapterError(f"The adapter in {adapter_dir} belongs to a different model{trained_on}: {'; '.join(detail)}. "
                        "Pass the base model it was trained on.")


def attach_adapter(model, adapter_dir: str | Path, is_trainable: bool = False, adapter_name: str | None = None):
    """``model`` wrapped with the adapter saved in ``adapter_dir`` (no merge), after checking that it fits.

    With ``adapter_name``, ``model`` is already a ``PeftModel`` and the adapter is added to it under that name
    (``load_adapter``), with the same checks; a refused adapter is removed again, leaving ``model`` as it was.
    """
    from peft import PeftModel

    register_peft_types()
    config = read_adapter_config(adapter_dir)
    file_paths = _module_paths(adapter_weight_keys(adapter_dir))
    name = adapter_name or "default"
    recorded = config.get("base_model_name_or_path")
    actual = getattr(model.get_base_model() if adapter_name else model, "name_or_path", None)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(missing|unexpected).*keys", category=UserWarning)
            if adapter_name:
                model.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
                peft_model = model
            else:
                peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError) as err:
        adapted = _adapted_by(model, name)
        if adapter_name and adapter_name in model.peft_config:
            model.delete_adapter(adapter_name)
        if not adapted:  # the tuner refused the config and left the base as it was: compare by module names
            leaves = {p.rsplit(".", 1)[-1] for p in file_paths}
            base = model.get_base_model() if adapter_name else model
            adapted = {n for n, _ in base.named_modules() if n.rsplit(".", 1)[-1] in leaves}
        mismatch = _different_model_error(adapter_dir, file_paths, adapted, recorded)
        if mismatch:
            raise mismatch from None
        size = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), "")
        raise AdapterError(f"{Path(adapter_dir) / ADAPTER_CONFIG_NAME} does not match the weights in "
                           f"{ADAPTER_WEIGHTS_NAME}{f' ({size[:200]})' if size else ''}; restore the "
                           "adapter_config.json saved with these weights (were r, valid_param_lora_r or "
                           "num_chunk_per_vec edited?).") from None
    mismatch = _different_model_error(adapter_dir, file_paths, _adapted_by(peft_model, name), recorded)
    if mismatch:
        if adapter_name:
            peft_model.delete_adapter(adapter_name)
        raise mismatch
    if recorded and actual and _norm(recorded) != _norm(actual):
        warnings.warn(f"The adapter in {adapter_dir} records base model {recorded}, but it was loaded on "
                      f"{actual}; its modules match, so it is used.", stacklevel=2)
    return peft_model


def _adapted_by(model, adapter_name: str) -> set[str]:
    """Paths (without ``base_model.model.``) of the modules that hold ``adapter_name``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n.removeprefix("base_model.model.") for n, m in model.named_modules()
            if isinstance(m, BaseTunerLayer)
            and any(adapter_name in (getattr(m, attr, None) or {}) for attr in m.adapter_layer_names)}


def _norm(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name.rstrip("/")


def load_model_with_adapter(base_model: str, adapter_dir: str, dtype: torch.dtype = torch.float32):
    """Base model + adapter (MoS, Tied-LoRA, PRoLoRA, VeRA or LoRA), checked as ``attach_adapter`` does."""
    from transformers import AutoModelForCausalLM

    read_adapter_config(adapter_dir)
    adapter_weight_keys(adapter_dir)
    from open_instruct.run_dir import load_checked

    base = load_checked("base model", base_model, AutoModelForCausalLM.from_pretrained, dtype=dtype, flag="--base_model")
    return attach_adapter(base, adapter_dir)


# ------------------------------------------------------------------------------------------------- a run's adapters
def save_run_adapters(model, output_dir: Path, ft_mode: str) -> None:
    """A plain LoRA adapter at the top of ``output_dir`` (exported exactly for every method but lora, which is one
    already) and the method's own checkpoint in ``<ft_mode>_adapter/``."""
    if ft_mode == "lora":
        model.save_pretrained(output_dir)
        return
    from open_instruct.lowrank import export_lora

    model.save_pretrained(Path(output_dir) / adapter_subdir(ft_mode))
    export_lora(model, output_dir)


def gathered_trainable_parameters(model):
    """Under DeepSpeed ZeRO-3, a context in which the (partitioned) trainable parameters are whole on every rank."""
    from contextlib import nullcontext

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([p for p in model.parameters() if p.requires_grad], modifier_rank=None)
