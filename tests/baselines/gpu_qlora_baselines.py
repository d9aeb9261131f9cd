"""Device check (not collected by pytest): VeRA, Tied-LoRA and PRoLoRA on a 4-bit (QLoRA, NF4) base.

For each method: a small random Llama reloaded in bitsandbytes NF4, ``prepare_model_for_kbit_training``, the
method's adapter from the launcher's arguments (``open_instruct.baselines.adapter_config``), training steps on one
fixed batch (loss finite and falling), ``export_lora``, and the export loaded as a stock PEFT LoRA on a fresh 4-bit
copy of the base: its logits must match the method's. Reuses the base-model helpers of bench/gpu_qlora_check.py
(the same check for MoS).

    python tests/baselines/gpu_qlora_baselines.py                 # CUDA + bitsandbytes
    .venv/bin/python tests/baselines/gpu_qlora_baselines.py --cpu-dry-run
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SETTINGS = {  # launcher arguments: r, p (PRoLoRA u), c (PRoLoRA m = n); learning rate
    "vera": (dict(r=64), 2e-2),
    "tied_lora": (dict(r=8), 3e-3),
    "prolora": (dict(r=8, valid_param_private_r=1, num_chunk_per_vec=4), 3e-3),
}


def _bench_helpers():
    spec = importlib.util.spec_from_file_location("gpu_qlora_check", REPO / "bench" / "gpu_qlora_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_method(method: str, base_dir: Path, tmp: Path, args, helpers) -> list[str]:
    import peft

    from open_instruct.methods import adapter_config
    from open_instruct.mos import export_lora

    quantize = not args.cpu_dry_run
    device = "cuda" if quantize else "cpu"
    settings, lr = SETTINGS[method]
    model = peft.prepare_model_for_kbit_training(helpers.load_base(base_dir, quantize), use_gradient_checkpointing=True)
    model = peft.get_peft_model(model, adapter_config(method, lora_dropout=0.0, seed=args.seed, **settings))
    trainable = model.get_nb_trainable_parameters()[0]
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(3, args.vocab, (args.batch_size, args.seq_len), generator=g).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses, t0 = [], time.perf_counter()
    for _ in range(args.steps):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    failures = []
    if not all(math.isfinite(x) for x in losses):
        failures.append("non-finite loss")
    elif not losses[-1] < losses[0] - 0.05:
        failures.append(f"loss did not fall: first {losses[0]:.4f}, last {losses[-1]:.4f}")
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits.float()
    export_dir = tmp / f"{method}_lora"
    export_lora(model, export_dir)
    fresh = peft.prepare_model_for_kbit_training(helpers.load_base(base_dir, quantize), use_gradient_checkpointing=False)
    lora = peft.PeftModel.from_pretrained(fresh, str(export_dir)).eval()
    with torch.no_grad():
        got = lora(input_ids=ids).logits.float()
    diff, scale = (got - ref).abs().max().item(), ref.abs().max().item()
    tol = (5e-2 if quantize else 1e-4) * max(scale, 1.0)
    if not diff <= tol:
        failures.append(f"exported LoRA logits differ by {diff:.3e} > {tol:.1e}")
    wrapped = sorted({type(m.get_base_layer()).__name__ for m in model.modules()
                      if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)})
    print(f"  {method:<9} wraps {wrapped}; trainable {trainable:,}; losses {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"({args.steps} steps, {time.perf_counter() - t0:.1f} s); export vs native max |diff| {diff:.2e} "
          f"(tol {tol:.1e})" + (f"; peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if quantize else ""))
    return [f"{method}: {f}" for f in failures]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true", help="unquantized fp32 base on the CPU (tests the script)")
    ap.add_argument("--methods", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("SKIP: no CUDA device (use --cpu-dry-run to exercise the script on the CPU)")
        return 0
    import open_instruct.baselines  # noqa: F401  (registers the PEFT types)

    helpers = _bench_helpers()
    failures = []
    with tempfile.TemporaryDirectory(prefix="baselines_qlora_") as tmp:
        base_dir = Path(tmp) / "base"
        helpers.build_and_save_base(base_dir, args)
        for method in args.methods:
            failures += check_method(method, base_dir, Path(tmp), args, helpers)
    for f in failures:
        print(f"  FAIL: {f}")
    print("BASELINES_QLORA_CHECK " + ("PASS" if not failures else "FAIL"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
