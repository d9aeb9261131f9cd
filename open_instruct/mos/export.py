"""Export a MoS adapter to a plain PEFT LoRA adapter (exact), or merge it into the base model.

A MoS layer *is* a rank-r LoRA layer whose factors are gathered from shared pools, so materialising each layer's
A (with the frozen vec folded in) and B gives a LoRA adapter with the same r and lora_alpha that stock PEFT,
vLLM and lm-eval load without this project's code.

    python -m open_instruct.mos.export --base_model PATH --adapter DIR --output_dir DIR [--merge]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from .layer import MoSLayer

LORA_WEIGHTS_NAME = "adapter_model.safetensors"


def _tuner(model):
    """The MoSModel behind a PeftModel (or the tuner itself)."""
    from .model import MoSModel

    if isinstance(model, MoSModel):
        return model
    base = getattr(model, "base_model", None)
    if isinstance(base, MoSModel):
        return base
    raise TypeError(f"Expected a MoS PeftModel (or MoSModel), got {type(model).__name__}.")


def lora_state_dict(model, adapter_name: str = "default", dtype: torch.dtype = torch.float32):
    """``{'base_model.model.<path>.lora_A.weight': A (r, in), '...lora_B.weight': B (out, r)}`` for every MoS layer."""
    tuner = _tuner(model)
    out = {}
    with torch.no_grad():
        for path, module in tuner.model.named_modules():
            if isinstance(module, MoSLayer) and adapter_name in module.mos_index_A:
                a, b = module.lora_factors(adapter_name)
                out[f"base_model.model.{path}.lora_A.weight"] = a.detach().to("cpu", dtype).contiguous()
                out[f"base_model.model.{path}.lora_B.weight"] = b.detach().to("cpu", dtype).contiguous()
    if not out:
        raise ValueError(f"The model holds no MoS layer for adapter {adapter_name!r}.")
    return out


def lora_config_for(model, adapter_name: str = "default"):
    """The ``peft.LoraConfig`` that reproduces the MoS adapter's layers, scaling and targets."""
    from peft import LoraConfig

    tuner = _tuner(model)
    cfg = tuner.peft_config[adapter_name]
    adapted = [p for p, m in tuner.model.named_modules() if isinstance(m, MoSLayer) and adapter_name in m.mos_index_A]
    leaves = sorted({p.split(".")[-1] for p in adapted})
    # Short leaf names (q_proj, ...) are what vLLM and most tools expect; use them when they select exactly the
    # adapted modules, else list full paths.
    linear_like = [p for p, m in tuner.model.named_modules() if p.split(".")[-1] in leaves
                   and not isinstance(m, MoSLayer) and hasattr(m, "weight")
                   and not any(p.startswith(a + ".") for a in adapted)]
    targets = leaves if not linear_like else sorted(adapted)
    return LoraConfig(
        r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
        bias="none", fan_in_fan_out=cfg.fan_in_fan_out, task_type=cfg.task_type,
        base_model_name_or_path=cfg.base_model_name_or_path, modules_to_save=cfg.modules_to_save,
        init_lora_weights=True,
    )


def export_lora(model, output_dir: str | Path, adapter_name: str = "default", dtype: torch.dtype = torch.float32) -> Path:
    """Write a plain PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``) to ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = lora_state_dict(model, adapter_name, dtype)
    config = lora_config_for(model, adapter_name)
    tmp = out / (LORA_WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / LORA_WEIGHTS_NAME)
    config.save_pretrained(str(out))
    return out


def is_mos_adapter(adapter_dir: str | Path) -> bool:
    cfg = Path(adapter_dir) / "adapter_config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("peft_type") == "MOS"


def load_model_with_adapter(base_model: str, adapter_dir: str, dtype: torch.dtype = torch.float32):
    """Base model + adapter (MoS or plain LoRA) through ``peft.PeftModel.from_pretrained``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import open_instruct.mos  # noqa: F401  (registers the MoS PEFT type)

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    return PeftModel.from_pretrained(base, adapter_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a MoS adapter to a plain PEFT LoRA adapter, or (--merge) merge it into the base model.")
    ap.add_argument("--base_model", required=True, help="base model path or hub id the adapter was trained on")
    ap.add_argument("--adapter", required=True, help="MoS adapter directory (a plain LoRA adapter also works)")
    ap.add_argument("--output_dir", required=True, help="where to write the LoRA adapter (or the merged model)")
    ap.add_argument("--merge", action="store_true", help="write a full merged model (+ tokenizer) instead")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="dtype of the merged model / exported factors (default float32)")
    args = ap.parse_args(argv)
    if not (Path(args.adapter) / "adapter_config.json").is_file():
        print(f"error: {args.adapter} has no adapter_config.json; pass the directory of a saved adapter.",
              file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    model = load_model_with_adapter(args.base_model, args.adapter, dtype=torch.float32)
    if args.merge:
        from transformers import AutoTokenizer

        merged = model.merge_and_unload().to(dtype)
        merged.save_pretrained(args.output_dir)
        tok_src = args.adapter if (Path(args.adapter) / "tokenizer_config.json").is_file() else args.base_model
        AutoTokenizer.from_pretrained(tok_src).save_pretrained(args.output_dir)
        print(f"merged model written to {args.output_dir}")
    elif is_mos_adapter(args.adapter):
        export_lora(model, args.output_dir, dtype=dtype)
        print(f"plain LoRA adapter written to {args.output_dir}")
    else:
        model.save_pretrained(args.output_dir)
        print(f"{args.adapter} is not a MoS adapter; re-saved it unchanged to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
