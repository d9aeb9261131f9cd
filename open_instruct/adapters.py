"""Reading a saved adapter directory: its PEFT type, and base model + adapter loaded with every method registered.

Importing ``open_instruct.methods`` registers the MOS, TIED_LORA and PROLORA PEFT types, so the native
checkpoints of every method load through ``peft.PeftModel.from_pretrained`` like PEFT's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER_CONFIG_NAME = "adapter_config.json"


def adapter_peft_type(adapter_dir: str | Path) -> str | None:
    """The ``peft_type`` in ``adapter_dir/adapter_config.json`` (``None`` without one)."""
    cfg = Path(adapter_dir) / ADAPTER_CONFIG_NAME
    return json.loads(cfg.read_text()).get("peft_type") if cfg.is_file() else None


def load_model_with_adapter(base_model: str, adapter_dir: str, dtype: torch.dtype = torch.float32):
    """Base model + adapter (MoS, Tied-LoRA, PRoLoRA, VeRA or LoRA) through ``peft.PeftModel.from_pretrained``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import open_instruct.methods  # noqa: F401  (registers the MOS, TIED_LORA and PROLORA PEFT types)

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    return PeftModel.from_pretrained(base, adapter_dir)
