"""Export a saved adapter of any method here to a plain PEFT LoRA adapter (exact), or merge it into the base model.

    python -m open_instruct.export --base_model PATH --adapter DIR --output_dir DIR [--merge]

The exact conversion itself is ``open_instruct.lowrank.export_lora`` (for a model in memory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from open_instruct.adapters import ADAPTER_CONFIG_NAME, adapter_peft_type, load_model_with_adapter
from open_instruct.lowrank.export import export_lora


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a MoS / Tied-LoRA / PRoLoRA / VeRA adapter to a plain PEFT LoRA adapter, or (--merge) "
                    "merge it into the base model.")
    ap.add_argument("--base_model", required=True, help="base model path or hub id the adapter was trained on")
    ap.add_argument("--adapter", required=True,
                    help="adapter directory (MoS, Tied-LoRA, PRoLoRA, VeRA; a plain LoRA adapter also works)")
    ap.add_argument("--output_dir", required=True, help="where to write the LoRA adapter (or the merged model)")
    ap.add_argument("--merge", action="store_true", help="write a full merged model (+ tokenizer) instead")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="dtype of the merged model / exported factors (default float32)")
    args = ap.parse_args(argv)
    if not (Path(args.adapter) / ADAPTER_CONFIG_NAME).is_file():
        print(f"error: {args.adapter} has no {ADAPTER_CONFIG_NAME}; pass the directory of a saved adapter.",
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
    elif adapter_peft_type(args.adapter) != "LORA":
        export_lora(model, args.output_dir, dtype=dtype)
        print(f"plain LoRA adapter written to {args.output_dir}")
    else:
        model.save_pretrained(args.output_dir)
        print(f"{args.adapter} is already a LoRA adapter; re-saved it unchanged to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
