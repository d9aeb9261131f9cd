"""Serving many adapters on one base: MoS vs plain PEFT LoRA at the same rank r.

A benchmark, not a test: it prints numbers and ratios, it never asserts them. It uses only PEFT's public API
(``get_peft_model``, ``add_adapter``/``load_adapter``, ``set_adapter``, ``adapter_names=``), on a random-init model
of SmolLM2-135M's shape (no download).

    .venv/bin/python bench/serve_many.py --threads 1               # the README numbers (CPU, ~10 min)
    .venv/bin/python bench/serve_many.py --quick --threads 1       # smoke test: 8 layers, N = 1, 2, 4, seconds
    python bench/serve_many.py --device cuda --dtype bfloat16      # with a GPU

What it measures, MoS and LoRA side by side in one run:

1. **Resident adapter bytes** with N = 1, 8, 64 adapters of different seeds on one base: every parameter and
   buffer the adapters add (storages counted once, the base excluded) plus, when the model has one, the
   inference factor cache. "Per extra adapter" is (bytes(N_max) − bytes(1)) / (N_max − 1); MoS/LoRA is compared
   with e/r, the ratio of their trainable parameters.
2. **Greedy decode time**, one adapter active, batch 1 and batch 8: ``generate`` of ``--new-tokens`` tokens after
   a ``--prompt-len`` prompt. MoS/LoRA is the median over ``--repeats`` interleaved (ABBA) repeats.
3. **Mixed-batch generation**: a batch whose row i uses adapter i mod N (``adapter_names=[...]``) against the
   same rows served one adapter at a time (``set_adapter``, then a batch of that adapter's rows), in tokens/s;
   it also checks that both give the same tokens. MoS runs with its default factor cache (one adapter per
   layer: the compact memory above) and, as "MoS caching N", with ``set_factor_cache_size(model, N)``.

On a CPU shared with other work pass ``--threads 1`` (OpenMP threads waiting on busy cores scatter the times); times
are then CPU time of the process (``--clock cpu``, the default on the CPU), which other processes' load inflates far
less than elapsed time.
The last line is machine-readable: ``RATIO mos/lora bytes_per_adapter=... decode_b1=... decode_b8=... ...``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
VARIANTS = ("MoS", "LoRA")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # all linear but lm_head


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--r", type=int, default=8, help="rank of every adapter (MoS's materialised rank)")
    ap.add_argument("--e", type=int, default=2, help="MoS valid_param_lora_r (parameter-equivalent rank)")
    ap.add_argument("--p", type=int, default=1, help="MoS valid_param_private_r")
    ap.add_argument("--c", type=int, default=4, help="MoS num_chunk_per_vec")
    ap.add_argument("--adapters", default="1,8,64", help="numbers of adapters held at once (memory table)")
    ap.add_argument("--mixed", default="8", help="numbers of adapters mixed in one batch (throughput table); "
                                                 "the batch has max(N, --mixed-batch) rows")
    ap.add_argument("--mixed-batch", type=int, default=8, help="rows of the mixed batch (at least N)")
    ap.add_argument("--layers", type=int, default=None, help="override the 30 layers of SmolLM2-135M's shape")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=6, help="timed repeats per variant (interleaved ABBA)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repeats per variant first")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCK), default=None,
                    help="what a time is: 'cpu' = CPU time of this process (time.process_time; with --threads 1 on "
                         "a shared machine it is not inflated by other processes' load), 'wall' = elapsed time. "
                         "Default: cpu on the CPU, wall on CUDA")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 8 layers, adapters 1,2,4, mixed 4, 4 new tokens, 2 repeats")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.layers, args.adapters, args.mixed, args.mixed_batch = 8, "1,2,4", "4", 4
        args.new_tokens, args.prompt_len, args.repeats, args.warmup = 4, 8, 2, 1
    try:
        args.adapter_counts = sorted({int(n) for n in args.adapters.split(",") if n.strip()})
        args.mixed_counts = sorted({int(n) for n in args.mixed.split(",") if n.strip()})
    except ValueError:
        ap.error("--adapters and --mixed take comma-separated integers, e.g. 1,8,64")
    if not args.adapter_counts or min(args.adapter_counts) < 1 or any(n < 1 for n in args.mixed_counts):
        ap.error("--adapters and --mixed need integers >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    if args.repeats < 1 or args.new_tokens < 1 or args.prompt_len < 1:
        ap.error("--repeats, --new-tokens and --prompt-len must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------------- models
def build_base(args):
    from transformers import AutoModelForCausalLM, LlamaConfig

    kw = dict(SMOLLM2_135M)
    if args.layers:
        kw["num_hidden_layers"] = args.layers
    cfg = LlamaConfig(max_position_embeddings=2048, **kw)
    torch.manual_seed(args.seed)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, args.dtype))
    model.eval()
    return model


def shared_copy(model):
    """A deep copy of the module tree whose parameters and buffers are the original's tensors (held once)."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def adapter_config(variant: str, args, seed: int):
    import peft

    from open_instruct.mos import MoSConfig

    if variant == "MoS":  # init_weights=False: B random too, so every adapter changes the outputs differently
        return MoSConfig(r=args.r, valid_param_lora_r=args.e, valid_param_private_r=args.p, num_chunk_per_vec=args.c,
                         lora_alpha=2 * args.r, target_modules=TARGETS, seed=seed, init_weights=False)
    return peft.LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules=TARGETS, init_lora_weights=False)


def adapter_name(i: int) -> str:
    return "default" if i == 0 else f"a{i}"


def add_adapters(model, variant: str, args, start: int, stop: int):
    """Adapters ``start..stop-1`` (``get_peft_model`` for the first, ``add_adapter`` for the rest)."""
    import peft

    for i in range(start, stop):
        torch.manual_seed(args.seed + 1000 + i)  # LoRA draws its init from the global RNG
        cfg = adapter_config(variant, args, seed=args.seed + i)
        if i == 0:
            model = peft.get_peft_model(model, cfg)
        else:
            model.add_adapter(adapter_name(i), cfg)
    model.eval()
    return model


def _storages(tensors) -> dict[int, int]:
    out = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            out[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return out


def adapter_bytes(model, base_ptrs: set[int]) -> tuple[int, int]:
    """(bytes of the adapters' own parameters and buffers, bytes of the inference factor cache if any)."""
    own = _storages(list(model.parameters()) + list(model.buffers()))
    held = sum(n for ptr, n in own.items() if ptr not in base_ptrs)
    cache = 0
    for module in model.modules():  # optional: models with a factor cache report it through factor_cache_tensors()
        fn = getattr(module, "factor_cache_tensors", None)
        if callable(fn):
            cache += sum(_storages(fn()).values())
    return held, cache


# ---------------------------------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def generate(model, ids, new_tokens: int, adapter_names=None):
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                  attention_mask=torch.ones_like(ids))
    if adapter_names is not None:
        kwargs["adapter_names"] = adapter_names
    return model.generate(input_ids=ids, **kwargs)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def timed(fn, device: str) -> tuple[float, object]:
    sync(device)
    t0 = clock()
    out = fn()
    sync(device)
    return clock() - t0, out


def interleaved(fns: dict[str, callable], repeats: int, warmup: int, device: str) -> dict[str, list[float]]:
    """Run each function ``warmup`` times, then ``repeats`` timed times in ABBA order; seconds per run."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], device)[0])
    return times


def prompt(vocab: int, rows: int, length: int, seed: int, device: str):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (rows, length), generator=g).to(device)


# ---------------------------------------------------------------------------------------------------- main
def run(args) -> dict:
    global clock
    if args.device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    clock = CLOCK[args.clock]
    import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)

    base = build_base(args)
    vocab = base.get_input_embeddings().weight.shape[0]
    base_ptrs = set(_storages(list(base.parameters()) + list(base.buffers())))
    layers = base.config.num_hidden_layers
    print(f"model: random-init Llama of SmolLM2-135M's shape, {layers} layers, "
          f"{sum(p.numel() for p in base.parameters()) / 1e6:.1f}M params; device {args.device}, dtype {args.dtype}, "
          f"threads {torch.get_num_threads()}, clock {args.clock}")
    print(f"adapters on q/k/v/o/gate/up/down: MoS r={args.r} e={args.e} p={args.p} c={args.c} vs LoRA r={args.r} "
          f"(e/r = {args.e / args.r:.3f})")
    models = {"MoS": shared_copy(base), "LoRA": base}
    res: dict = {"config": {k: v for k, v in vars(args).items()}, "bytes": {}, "decode_s": {}, "mixed": {}}
    held = {v: 0 for v in VARIANTS}
    timings_done = False

    for n in args.adapter_counts:
        for v in VARIANTS:
            models[v] = add_adapters(models[v], v, args, held[v], n)
            held[v] = n
        if not timings_done:  # decode timing with the first (smallest) count, one adapter active
            res["decode_s"] = decode_times(models, args, vocab)
            timings_done = True
        for k in [k for k in args.mixed_counts if k <= n and k not in res["mixed"]]:
            res["mixed"][k] = mixed_batch(models, args, vocab, k)
        res["bytes"][n] = {v: adapter_bytes(models[v], base_ptrs) for v in VARIANTS}
        row = res["bytes"][n]
        print(f"N={n:>3}: adapter bytes MoS {row['MoS'][0] / 2**20:8.2f} MiB (+ cache {row['MoS'][1] / 2**20:.2f}), "
              f"LoRA {row['LoRA'][0] / 2**20:8.2f} MiB")
    for k in [k for k in args.mixed_counts if k not in res["mixed"]]:  # mixed counts above the largest N
        for v in VARIANTS:
            models[v] = add_adapters(models[v], v, args, held[v], k)
            held[v] = k
        res["mixed"][k] = mixed_batch(models, args, vocab, k)
    return summarize(res, args)


def decode_times(models, args, vocab) -> dict:
    out = {}
    for batch in (1, 8):
        ids = prompt(vocab, batch, args.prompt_len, args.seed, args.device)
        for m in models.values():
            m.set_adapter("default")
        fns = {v: (lambda m=models[v], ids=ids: generate(m, ids, args.new_tokens)) for v in VARIANTS}
        times = interleaved(fns, args.repeats, args.warmup, args.device)
        out[batch] = {v: statistics.median(t) for v, t in times.items()}
        print(f"decode batch {batch}: median s/generate MoS {out[batch]['MoS']:.3f}, LoRA {out[batch]['LoRA']:.3f}, "
              f"MoS/LoRA {out[batch]['MoS'] / out[batch]['LoRA']:.3f}")
    return out


def mixed_batch(models, args, vocab, n: int) -> dict:
    """Tokens/s of one mixed batch (row i -> adapter i mod n) vs the same rows one adapter at a time."""
    rows = max(n, args.mixed_batch)
    ids = prompt(vocab, rows, args.prompt_len, args.seed + 1, args.device)
    names = [adapter_name(i % n) for i in range(rows)]
    groups = {name: [i for i, a in enumerate(names) if a == name] for name in dict.fromkeys(names)}

    def one_at_a_time(model):
        out = torch.empty(rows, args.prompt_len + args.new_tokens, dtype=ids.dtype, device=ids.device)
        for name, index in groups.items():
            model.set_adapter(name)
            out[index] = generate(model, ids[index], args.new_tokens)
        model.set_adapter("default")
        return out

    from open_instruct.lowrank import set_factor_cache_size

    wide = shared_copy(models["MoS"])  # the same adapters (tensors shared), caching the factors of all n
    set_factor_cache_size(wide, n)
    fns = {}
    for v in VARIANTS:
        fns[f"{v} mixed"] = lambda m=models[v]: generate(m, ids, args.new_tokens, adapter_names=names)
        fns[f"{v} one-by-one"] = lambda m=models[v]: one_at_a_time(m)
    fns["MoS mixed, cache n"] = lambda: generate(wide, ids, args.new_tokens, adapter_names=names)
    same = {v: bool(torch.equal(fns[f"{v} mixed"](), fns[f"{v} one-by-one"]())) for v in VARIANTS}
    same["MoS"] = same["MoS"] and bool(torch.equal(fns["MoS mixed, cache n"](), fns["MoS one-by-one"]()))
    times = interleaved(fns, args.repeats, 0, args.device)
    tokens = rows * args.new_tokens
    tps = {k: tokens / statistics.median(t) for k, t in times.items()}
    print(f"mixed batch of {rows} rows over {n} adapters, tokens/s: " + ", ".join(f"{k} {t:.1f}" for k, t in tps.items())
          + "; mixed == one-by-one tokens: " + ", ".join(f"{v} {same[v]}" for v in VARIANTS))
    return {"rows": rows, "tokens_per_s": tps, "same_tokens": same}


def summarize(res: dict, args) -> dict:
    counts = sorted(res["bytes"])
    ratios = {}
    print()
    print(f"{'':<44}{'MoS':>12}{'LoRA':>12}{'MoS/LoRA':>10}")
    for n in counts:
        b = res["bytes"][n]
        label = f"resident adapter MiB, N={n}"
        print(f"{label:<44}{b['MoS'][0] / 2**20:>12.2f}{b['LoRA'][0] / 2**20:>12.2f}"
              f"{b['MoS'][0] / b['LoRA'][0]:>10.3f}")
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        per = {v: (res["bytes"][hi][v][0] - res["bytes"][lo][v][0]) / (hi - lo) for v in VARIANTS}
        ratios["bytes_per_adapter"] = per["MoS"] / per["LoRA"]
        print(f"{'per extra adapter (KiB)':<44}{per['MoS'] / 2**10:>12.1f}{per['LoRA'] / 2**10:>12.1f}"
              f"{ratios['bytes_per_adapter']:>10.3f}   (e/r = {args.e / args.r:.3f}; "
              f"{ratios['bytes_per_adapter'] / (args.e / args.r):.3f} x e/r)")
        cache = res["bytes"][hi]["MoS"][1]
        print(f"{'MoS inference factor cache (MiB, bounded)':<44}{cache / 2**20:>12.2f}")
    for batch, d in res["decode_s"].items():
        ratios[f"decode_b{batch}"] = d["MoS"] / d["LoRA"]
        label = f"greedy decode s, batch {batch}, 1 adapter"
        print(f"{label:<44}{d['MoS']:>12.3f}{d['LoRA']:>12.3f}"
              f"{ratios[f'decode_b{batch}']:>10.3f}")
    for n, d in sorted(res["mixed"].items()):
        t = d["tokens_per_s"]
        for mode in ("mixed", "one-by-one"):
            label = f"tokens/s, {d['rows']} rows over {n} adapters, {mode}"
            mos, lora = t[f"MoS {mode}"], t[f"LoRA {mode}"]
            print(f"{label:<44}{mos:>12.1f}{lora:>12.1f}{mos / lora:>10.3f}")
        for v in VARIANTS:
            ratios[f"{v.lower()}_mixed_vs_sequential_n{n}"] = t[f"{v} mixed"] / t[f"{v} one-by-one"]
        ratios[f"mixed_tps_n{n}"] = t["MoS mixed"] / t["LoRA mixed"]
        ratios[f"mixed_tps_cache_n{n}"] = t["MoS mixed, cache n"] / t["LoRA mixed"]
        label = f"tokens/s, {d['rows']} rows, mixed, MoS caching {n}"
        print(f"{label:<44}{t['MoS mixed, cache n']:>12.1f}{t['LoRA mixed']:>12.1f}{ratios[f'mixed_tps_cache_n{n}']:>10.3f}")
        label = f"  mixed / one-by-one speed-up, N={n}"
        print(f"{label:<44}{ratios[f'mos_mixed_vs_sequential_n{n}']:>12.2f}"
              f"{ratios[f'lora_mixed_vs_sequential_n{n}']:>12.2f}   same tokens: "
              + ", ".join(f"{v} {d['same_tokens'][v]}" for v in VARIANTS))
    res["ratios"] = ratios
    print("RATIO mos/lora " + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return res


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
