"""MoS on a 4-bit (QLoRA, bitsandbytes NF4) base: a few training steps, then export to plain LoRA and compare.

Part of ``bench/gpu_check.sh``; prints what it finds and exits non-zero on a failed check.

    python bench/gpu_qlora_check.py               # on a CUDA machine with bitsandbytes
    python bench/gpu_qlora_check.py --versions    # only print the versions of the stack
    .venv/bin/python bench/gpu_qlora_check.py --cpu-dry-run   # no GPU: same steps on an unquantized base

Steps: build a small random Llama, save it to a temporary directory, reload it with
``BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute bf16)``, ``peft.prepare_model_for_kbit_training``,
add MoS, train on one fixed batch (the loss must be finite and fall), ``export_lora`` the adapter, load the export
as a stock PEFT LoRA on a second 4-bit copy of the base, and compare its logits with the MoS model's.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "deepspeed", "safetensors"):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report anything that stops an import
            out[name] = f"not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    out["torch.version.cuda"] = str(torch.version.cuda)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}"
        out["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    else:
        out["gpu"] = "none (torch.cuda.is_available() is False)"
    return out


def print_versions() -> None:
    for k, v in versions().items():
        print(f"  {k:<20}{v}")


def build_and_save_base(path: Path, args) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.hidden * 2 + args.hidden // 2,
                      num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=4,
                      vocab_size=args.vocab, max_position_embeddings=512, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path)


def load_base(path: Path, quantize: bool):
    from transformers import AutoModelForCausalLM

    if quantize:
        from transformers import BitsAndBytesConfig

        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=qcfg, dtype=torch.bfloat16,
                                                    device_map={"": 0})
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def check(args) -> int:
    import peft

    from open_instruct.mos import MoSConfig, export_lora, mos_report
    from open_instruct.mos.layer import MoSLayer

    quantize = not args.cpu_dry_run
    device = "cuda" if quantize else "cpu"
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mos_qlora_") as tmp:
        base_dir, export_dir = Path(tmp) / "base", Path(tmp) / "lora_export"
        build_and_save_base(base_dir, args)
        model = load_base(base_dir, quantize)
        if quantize:
            kinds = sorted({type(m).__name__ for m in model.modules() if "4bit" in type(m).__name__})
            print(f"  quantized base: 4-bit modules {kinds}, "
                  f"{torch.cuda.memory_allocated() / 2**20:.1f} MiB allocated after load")
            if not kinds:
                failures.append("no Linear4bit module after loading with quantization_config")
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        model = peft.get_peft_model(model, MoSConfig(
            r=args.r, valid_param_lora_r=args.e, valid_param_private_r=args.p, num_chunk_per_vec=args.c,
            lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", seed=args.seed))
        wrapped = sorted({type(m.get_base_layer()).__name__ for m in model.modules() if isinstance(m, MoSLayer)})
        print(f"  MoS wraps: {wrapped}; {mos_report(model)}")

        g = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(3, args.vocab, (args.batch_size, args.seq_len), generator=g).to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        model.train()
        losses = []
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        dt = time.perf_counter() - t0
        shown = ", ".join(f"{x:.4f}" for x in losses[:: max(1, len(losses) // 10)])
        print(f"  losses ({args.steps} steps, {dt:.1f} s): {shown}, last {losses[-1]:.4f}")
        if not all(math.isfinite(x) for x in losses):
            failures.append("non-finite loss")
        elif not losses[-1] < losses[0] - 0.05:
            failures.append(f"loss did not fall: first {losses[0]:.4f}, last {losses[-1]:.4f}")
        if quantize:
            print(f"  peak CUDA memory during training: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")

        # Export to plain LoRA and check that stock PEFT reproduces the MoS model on a fresh 4-bit base.
        model.eval()
        with torch.no_grad():
            ref = model(input_ids=ids).logits.float()
        export_lora(model, export_dir)
        files = sorted(p.name for p in export_dir.iterdir())
        print(f"  export_lora -> {files}")
        # Same preparation as the trained model (kbit prep upcasts norms/embeddings/head to fp32), so that the
        # only difference left is MoS vs LoRA arithmetic.
        fresh = peft.prepare_model_for_kbit_training(load_base(base_dir, quantize), use_gradient_checkpointing=False)
        lora = peft.PeftModel.from_pretrained(fresh, str(export_dir)).eval()
        with torch.no_grad():
            got = lora(input_ids=ids).logits.float()
        diff = (got - ref).abs().max().item()
        scale = ref.abs().max().item()
        tol = 5e-2 * max(scale, 1.0) if quantize else 1e-4 * max(scale, 1.0)
        print(f"  exported LoRA vs MoS logits: max |diff| {diff:.3e} (max |logit| {scale:.2f}, tolerance {tol:.1e})")
        if not diff <= tol:
            failures.append(f"exported LoRA logits differ from MoS by {diff:.3e} > {tol:.1e}")
    for f in failures:
        print(f"  FAIL: {f}")
    print("QLORA_CHECK " + ("PASS" if not failures else "FAIL") + f" first_loss={losses[0]:.4f} last_loss={losses[-1]:.4f}")
    return 0 if not failures else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", action="store_true", help="only print versions")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="run the same steps on an unquantized fp32 base on the CPU (tests the script without a GPU)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--e", type=int, default=4)
    ap.add_argument("--p", type=int, default=1)
    ap.add_argument("--c", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.versions:
        print_versions()
        return 0
    if not args.cpu_dry_run:
        if not torch.cuda.is_available():
            print("SKIP 4-bit check: no CUDA device (use --cpu-dry-run to exercise the script on the CPU)")
            return 0
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            print(f"SKIP 4-bit check: bitsandbytes not importable ({type(exc).__name__}: {exc})")
            return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
