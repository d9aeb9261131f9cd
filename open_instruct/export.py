"""Export a saved adapter of any method here to a plain PEFT LoRA adapter (exact), or merge it into the base model.

    python -m open_instruct.export --base_model PATH --adapter DIR --output_dir DIR [--merge] [--overwrite]

Nothing is overwritten unless asked: a non-empty ``--output_dir`` needs ``--overwrite`` (its contents are then
replaced once the new files are complete), and the output may never be the adapter or the base model itself.
The exact conversion is ``open_instruct.lowrank.export_lora`` (for a model in memory).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from open_instruct.adapters import adapter_peft_type, load_model_with_adapter, read_adapter_config
from open_instruct.errors import UserError, disk_full, no_space_error, one_line_usage, report
from open_instruct.lowrank.export import export_lora


class ExportError(UserError, ValueError):
    """A bad argument: one line naming it and the fix."""


def check_output(args) -> None:
    out = Path(args.output_dir).expanduser().resolve()
    inputs = {"--adapter": Path(args.adapter).expanduser().resolve()}
    if Path(args.base_model).expanduser().exists():
        inputs["--base_model"] = Path(args.base_model).expanduser().resolve()
    for flag, path in inputs.items():
        if out == path or path.is_relative_to(out):  # replacing out would replace the input too
            raise ExportError(f"--output_dir {args.output_dir} is (or contains) {flag} {path}; "
                              "write the export to a new directory, never over its inputs.")
    if out.is_file():
        raise ExportError(f"--output_dir {args.output_dir} is a file; pass a directory.")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ExportError(f"--output_dir {args.output_dir} is not empty; choose a new directory, or pass --overwrite "
                          "to replace its contents.")


def write_replacing(output_dir: str, write) -> None:
    """``write(tmp_dir)`` into a fresh sibling directory, then put it in place of ``output_dir`` (whose old
    contents are removed only once the new ones are complete)."""
    out = Path(output_dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        write(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, Exception) and disk_full(err, out.parent):
            kept = f"{output_dir} is unchanged" if out.exists() else f"nothing was left in {out.parent}"
            raise no_space_error(out.parent, f"the export to {output_dir}", f"its partial files were removed and "
                                 f"{kept}") from None
        raise
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a MoS / Tied-LoRA / PRoLoRA / VeRA adapter to a plain PEFT LoRA adapter, or (--merge) "
                    "merge it into the base model.")
    ap.add_argument("--base_model", required=True, help="base model path or hub id the adapter was trained on")
    ap.add_argument("--adapter", required=True,
                    help="adapter directory (MoS, Tied-LoRA, PRoLoRA, VeRA; a plain LoRA adapter also works)")
    ap.add_argument("--output_dir", required=True,
                    help="a new (or empty) directory for the LoRA adapter (or the merged model)")
    ap.add_argument("--merge", action="store_true", help="write a full merged model (+ tokenizer) instead")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the contents of a non-empty --output_dir (never the adapter or base model)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="dtype of the merged model / exported factors (default float32)")
    args = one_line_usage(ap).parse_args(argv)
    try:
        check_output(args)
        read_adapter_config(args.adapter)
        model = load_model_with_adapter(args.base_model, args.adapter, dtype=torch.float32)
    except UserError as err:
        report("export", err)
        return 2
    try:
        dtype = getattr(torch, args.dtype)
        if args.merge:
            from transformers import AutoTokenizer

            tok_src = args.adapter if (Path(args.adapter) / "tokenizer_config.json").is_file() else args.base_model
            merged = model.merge_and_unload().to(dtype)
            write_replacing(args.output_dir, lambda tmp: (merged.save_pretrained(tmp),
                                                          AutoTokenizer.from_pretrained(tok_src).save_pretrained(tmp)))
            print(f"merged model written to {args.output_dir}")
        elif adapter_peft_type(args.adapter) != "LORA":
            write_replacing(args.output_dir, lambda tmp: export_lora(model, tmp, dtype=dtype))
            print(f"plain LoRA adapter written to {args.output_dir}")
        else:
            write_replacing(args.output_dir, lambda tmp: model.save_pretrained(tmp))
            print(f"{args.adapter} is already a LoRA adapter; re-saved it unchanged to {args.output_dir}")
    except UserError as err:  # a full disk while writing
        report("export", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
