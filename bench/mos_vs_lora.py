"""Training-step time and peak memory of MoS vs plain PEFT LoRA at the same rank r, on one model.

A benchmark, not a test: it prints numbers and ratios, it never asserts them.

    .venv/bin/python bench/mos_vs_lora.py                                  # SmolLM2-135M if converted, else tiny
    .venv/bin/python bench/mos_vs_lora.py --batch-size 2 --seq-len 128 --steps 16 --threads 1
    python bench/mos_vs_lora.py --device cuda --dtype bfloat16 --synthetic-llama 1b --batch-size 8 --seq-len 1024
    .venv/bin/python bench/mos_vs_lora.py --profile 3                       # + torch.profiler op tables, MoS vs LoRA

How it measures
* Both adapters sit on the *same* base weights (the second model is a deep copy whose parameters and buffers
  are the first one's tensors), so the base is held once and both variants see identical inputs.
* A step = forward + backward + AdamW step + ``zero_grad(set_to_none=True)``, on one fixed random batch
  (labels = inputs). ``--warmup`` steps of each variant run first and are not timed.
* Timed steps alternate between the variants in an ABBA pattern (MoS, LoRA, LoRA, MoS, ...) so slow drift
  (clock boost, thermal, other load) hits both equally; the table reports median and interquartile range.
* Peak memory is what training that variant *alone* would allocate: shared base tensors + the variant's own
  persistent tensors (adapter parameters, index buffers, optimizer state) + the transient peak of one step
  (activations, gradients, temporaries: peak during the step minus what was allocated before it).
  The transient peak is read from ``torch.cuda.max_memory_allocated`` on CUDA, and on CPU from the
  allocation events of ``torch.profiler(profile_memory=True)`` (allocator-level bytes, the CPU analogue of
  max_memory_allocated; not RSS, which glibc's caching makes meaningless per step). Allocator caching,
  fragmentation and the CUDA context are excluded on both.
* On a CPU shared with other work, pass ``--threads 1``: with more threads than idle cores, OpenMP threads
  wait on each other and step times scatter over an order of magnitude.

The last line is machine-readable:  ``RATIO mos/lora step_time=1.023 peak_mem=1.001 step_transient=0.998``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

DEFAULT_MODEL = REPO / "models" / "smollm2-135m-instruct"

# Random-init Llama shapes for loading a GPU without downloading anything (public architecture configs).
SYNTHETIC_LLAMA: dict[str, dict] = {
    # SmolLM2-135M's shape (30 layers, GQA 9/3).
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    # Llama-3.2-1B's shape (1.24B parameters).
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    # Llama-3.2-3B's shape.
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    # Llama-2-7B's shape (the paper's main model).
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False),
}

VARIANTS = ("MoS", "LoRA")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = ap.add_argument_group("model (first that applies: --synthetic-llama, --model, SmolLM2 if converted, tiny)")
    src.add_argument("--model", default=None,
                     help=f"checkpoint directory or hub id, or 'tiny' for the tiny random Llama of open_instruct.tiny; "
                          f"default {DEFAULT_MODEL.relative_to(REPO)} when present, else 'tiny'")
    src.add_argument("--synthetic-llama", default=None, choices=sorted(SYNTHETIC_LLAMA),
                     help="build a random-init Llama of this size instead of loading a checkpoint")
    src.add_argument("--synthetic-layers", type=int, default=None,
                     help="override the number of layers of --synthetic-llama")
    ap.add_argument("--r", type=int, default=8, help="rank of both adapters (MoS's materialised rank)")
    ap.add_argument("--e", type=int, default=2, help="MoS valid_param_lora_r (parameter-equivalent rank)")
    ap.add_argument("--p", type=int, default=1, help="MoS valid_param_private_r (private ranks per layer)")
    ap.add_argument("--c", type=int, default=4, help="MoS num_chunk_per_vec (shards per rank vector)")
    ap.add_argument("--lora-alpha", type=int, default=16)
    ap.add_argument("--dropout", type=float, default=0.0, help="adapter dropout (same for both)")
    ap.add_argument("--target-modules", default="all-linear",
                    help="'all-linear' or a comma-separated list of module names (same for both)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before timing")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="base model dtype")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--grad-checkpointing", action="store_true", help="non-reentrant activation checkpointing")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU (default: torch's)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile N steps of each variant and print where the time goes")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    return args


# ---------------------------------------------------------------------------------------------------- model
def load_base(args) -> tuple[torch.nn.Module, str]:
    """The base causal LM on ``args.device`` in ``args.dtype`` and a one-line description of it."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    dtype = getattr(torch, args.dtype)
    if args.synthetic_llama:
        kw = dict(SYNTHETIC_LLAMA[args.synthetic_llama])
        if args.synthetic_layers:
            kw["num_hidden_layers"] = args.synthetic_layers
        cfg = LlamaConfig(max_position_embeddings=max(4096, args.seq_len), **kw)
        torch.manual_seed(args.seed)
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        desc = f"synthetic Llama {args.synthetic_llama} (random init, {kw['num_hidden_layers']} layers)"
    elif args.model != "tiny" and (args.model or DEFAULT_MODEL.is_dir()):
        path = args.model or str(DEFAULT_MODEL)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(args.device)
        desc = path
    else:
        from open_instruct.tiny import build_tiny_model

        # 8 layers (not the fixture's 2) so that the default r/e/p/c fit: (r-p)·c <= (e-p)·L·c.
        model = build_tiny_model("llama", seed=args.seed, num_hidden_layers=8).to(device=args.device, dtype=dtype)
        desc = "tiny random Llama (open_instruct.tiny, 8 layers)"
    model.config.use_cache = False
    n = sum(p.numel() for p in model.parameters())
    return model, f"{desc}, {n / 1e6:.1f}M params"


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of the module tree whose parameters and buffers are the original's tensors (held once)."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def target_modules(args):
    if args.target_modules == "all-linear":
        return "all-linear"
    return [t.strip() for t in args.target_modules.split(",") if t.strip()]


def build_variants(base, args) -> dict[str, torch.nn.Module]:
    import peft

    from open_instruct.mos import MoSConfig

    other = shared_copy(base)
    targets = target_modules(args)
    mos = peft.get_peft_model(base, MoSConfig(
        r=args.r, valid_param_lora_r=args.e, valid_param_private_r=args.p, num_chunk_per_vec=args.c,
        lora_alpha=args.lora_alpha, lora_dropout=args.dropout, target_modules=targets, seed=args.seed))
    lora = peft.get_peft_model(other, peft.LoraConfig(
        r=args.r, lora_alpha=args.lora_alpha, lora_dropout=args.dropout, target_modules=targets, bias="none"))
    out = {"MoS": mos, "LoRA": lora}
    for model in out.values():
        model.train()
        if args.grad_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return out


# ---------------------------------------------------------------------------------------------------- steps
class Trainer:
    """One variant: model, AdamW over its trainable parameters, a fixed batch, and ``step()``."""

    def __init__(self, name: str, model, batch: dict, lr: float, device: str):
        self.name, self.model, self.batch, self.device = name, model, batch, device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr)
        self.losses: list[float] = []

    def step(self) -> torch.Tensor:
        loss = self.model(**self.batch).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def timed_step(self) -> float:
        self.sync()
        t0 = time.perf_counter()
        loss = self.step()
        self.sync()
        dt = time.perf_counter() - t0
        self.losses.append(float(loss))
        return dt

    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def make_batch(vocab_size: int, batch_size: int, seq_len: int, device: str, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=g).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def abba_order(i: int) -> tuple[str, str]:
    """Timed-step order: MoS,LoRA then LoRA,MoS, repeating (ABBA cancels linear drift)."""
    return VARIANTS if i % 2 == 0 else VARIANTS[::-1]


# ---------------------------------------------------------------------------------------------------- memory
def _storage_bytes(tensors, exclude: set[int]) -> tuple[int, set[int]]:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.device.type == "meta":
            continue
        key = t.untyped_storage().data_ptr()
        if key in exclude or key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total, seen


def persistent_bytes(trainer: Trainer, shared: set[int]) -> int:
    """Bytes of the variant's own tensors that live across steps: adapter params/buffers, optimizer state."""
    tensors = list(trainer.model.parameters()) + list(trainer.model.buffers())
    for state in trainer.opt.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return _storage_bytes(tensors, shared)[0]


def cuda_step_transient(trainer: Trainer) -> int:
    trainer.sync()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    trainer.step()
    trainer.sync()
    return torch.cuda.max_memory_allocated() - before


def cpu_step_transient(trainer: Trainer) -> int | None:
    """Peak of the running sum of CPU allocator events over one step (torch.profiler, profile_memory=True)."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.step()
    try:
        stack = list(prof.profiler.kineto_results.experimental_event_tree())
    except AttributeError:
        return None
    events = []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.typed[0] == _EventType.Allocation and str(node.typed[1].device).startswith("cpu"):
            events.append((node.start_time_ns, node.typed[1].alloc_size))
    if not events:
        return None
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak


# ---------------------------------------------------------------------------------------------------- profile
def profile_variants(trainers: dict[str, Trainer], steps: int, device: str, top: int = 18) -> dict:
    """Profile ``steps`` steps of each variant (ABBA-interleaved, one profiler session per step, so drift and
    other load hit both alike); print each variant's top ops and the per-op MoS − LoRA differences.

    On CUDA the per-op numbers are the self *device* (kernel) time of each operator (kernel rows themselves are
    left out, they would count the same time twice), and the summary adds the host side: self CPU time,
    operator calls and kernel launches per step. A step is bound by the larger of device and host time; with
    small batches the host (one launch per small kernel) usually is.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    attr = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    what = "device" if device == "cuda" else "CPU"
    acc: dict[str, dict[str, list[float]]] = {n: {} for n in VARIANTS}  # op -> [self ms, calls, host self ms]
    kernels, launches, op_calls = ({n: 0 for n in VARIANTS} for _ in range(3))
    for i in range(steps):
        for name in abba_order(i):
            tr = trainers[name]
            tr.sync()
            with profile(activities=activities) as prof:
                tr.step()
                tr.sync()
            for e in prof.key_averages():
                if getattr(e, "device_type", DeviceType.CPU) != DeviceType.CPU:  # a kernel: counted, not listed
                    kernels[name] += e.count
                    continue
                if e.key.startswith("aten::"):
                    op_calls[name] += e.count
                if e.key.startswith("cudaLaunchKernel"):
                    launches[name] += e.count
                row = acc[name].setdefault(e.key, [0.0, 0, 0.0])
                row[0] += getattr(e, attr, 0.0) / 1e3
                row[1] += e.count
                row[2] += e.self_cpu_time_total / 1e3
    per_variant = {n: {k: (v[0] / steps, v[1] // steps) for k, v in d.items()} for n, d in acc.items()}
    host_total = {n: sum(v[2] for v in d.values()) / steps for n, d in acc.items()}
    total = {n: sum(v[0] for v in d.values()) for n, d in per_variant.items()}
    for name in VARIANTS:
        rows = sorted(per_variant[name].items(), key=lambda kv: -kv[1][0])[:top]
        print(f"\n--- torch.profiler, {name}: top ops by self {what} time, ms/step ({steps} steps; "
              f"total {total[name]:.1f}) ---")
        for key, (ms, n) in rows:
            print(f"{key[:56]:<58}{ms:>10.2f}{n:>8}")
    mos, lora = per_variant["MoS"], per_variant["LoRA"]
    diff = sorted(((mos.get(k, (0, 0))[0] - lora.get(k, (0, 0))[0], k) for k in set(mos) | set(lora)), reverse=True)
    host = "" if device != "cuda" else (
        f"; host self CPU MoS {host_total['MoS']:.1f}, LoRA {host_total['LoRA']:.1f}; kernel launches MoS "
        f"{launches['MoS'] // steps}, LoRA {launches['LoRA'] // steps}; kernels MoS {kernels['MoS'] // steps}, "
        f"LoRA {kernels['LoRA'] // steps}")
    print(f"\naten operator calls per step: MoS {op_calls['MoS'] // steps}, LoRA {op_calls['LoRA'] // steps}")
    print(f"\n--- self {what} time per step, MoS − LoRA, by op (ms/step; totals MoS {total['MoS']:.1f}, "
          f"LoRA {total['LoRA']:.1f}{host}) ---")
    print(f"{'op':<48}{'MoS ms':>9}{'LoRA ms':>9}{'diff':>9}{'MoS n':>7}{'LoRA n':>7}")
    shown = [d for d in diff if abs(d[0]) >= 0.005]
    for delta, key in shown[:top] + [d for d in shown[top:] if d[0] < 0][-8:]:
        m, lo = mos.get(key, (0.0, 0)), lora.get(key, (0.0, 0))
        print(f"{key[:47]:<48}{m[0]:>9.2f}{lo[0]:>9.2f}{delta:>+9.2f}{m[1]:>7}{lo[1]:>7}")
    return {"ms_per_step_by_op": per_variant, "total_ms": total, "host_total_ms": host_total,
            "op_calls_per_step": {n: v // steps for n, v in op_calls.items()},
            "kernel_launches_per_step": {n: v // steps for n, v in launches.items()},
            "kernels_per_step": {n: v // steps for n, v in kernels.items()}}


# ---------------------------------------------------------------------------------------------------- main
@dataclass
class Result:
    model: str
    device: str
    dtype: str
    config: dict
    trainable: dict = field(default_factory=dict)
    step_ms: dict = field(default_factory=dict)  # name -> list of timed step times (ms)
    median_ms: dict = field(default_factory=dict)
    iqr_ms: dict = field(default_factory=dict)
    peak_mib: dict = field(default_factory=dict)
    transient_mib: dict = field(default_factory=dict)
    base_mib: float | None = None
    memory_method: str = ""
    losses: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)
    profile: dict | None = None


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def run(args) -> Result:
    torch.manual_seed(args.seed)
    if args.device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    base, desc = load_base(args)
    vocab = base.get_input_embeddings().weight.shape[0]
    base_tensors = list(base.parameters()) + list(base.buffers())
    base_bytes, shared = _storage_bytes(base_tensors, set())
    models = build_variants(base, args)
    batch = make_batch(vocab, args.batch_size, args.seq_len, args.device, args.seed)
    trainers = {n: Trainer(n, m, batch, args.lr, args.device) for n, m in models.items()}
    config = {k: getattr(args, k) for k in ("r", "e", "p", "c", "lora_alpha", "dropout", "target_modules",
                                             "batch_size", "seq_len", "steps", "warmup", "grad_checkpointing")}
    res = Result(model=desc, device=args.device, dtype=args.dtype, config=config,
                 trainable={n: t.trainable() for n, t in trainers.items()})
    print(f"model: {desc}\ndevice {args.device}, dtype {args.dtype}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size} x seq {args.seq_len}, grad checkpointing {args.grad_checkpointing}")
    print(f"MoS r={args.r} e={args.e} p={args.p} c={args.c} vs LoRA r={args.r}; alpha {args.lora_alpha}, "
          f"dropout {args.dropout}, targets {args.target_modules}")
    print("trainable params: " + ", ".join(f"{n} {v:,}" for n, v in res.trainable.items()))

    for _ in range(args.warmup):
        for name in VARIANTS:
            trainers[name].timed_step()
    for tr in trainers.values():
        tr.losses.clear()
    times: dict[str, list[float]] = {n: [] for n in VARIANTS}
    t_start = time.perf_counter()
    for i in range(args.steps):
        for name in abba_order(i):
            times[name].append(trainers[name].timed_step() * 1e3)
    print(f"timed {args.steps} steps per variant (ABBA interleaved) in {time.perf_counter() - t_start:.1f} s")
    res.step_ms = times
    res.losses = {n: t.losses for n, t in trainers.items()}
    for n in VARIANTS:
        res.median_ms[n] = statistics.median(times[n])
        res.iqr_ms[n] = _quartiles(times[n])

    if not args.no_memory:
        if args.device == "cuda":
            res.memory_method = "torch.cuda.max_memory_allocated (transient) + tensor bytes (persistent)"
            measure = cuda_step_transient
        else:
            res.memory_method = "torch.profiler allocator events (transient) + tensor bytes (persistent)"
            measure = cpu_step_transient
        res.base_mib = base_bytes / 2**20
        for n in VARIANTS:
            transient = measure(trainers[n])
            if transient is None:
                res.memory_method = "n/a (torch.profiler memory events unavailable)"
                res.peak_mib, res.transient_mib = {}, {}
                break
            res.transient_mib[n] = transient / 2**20
            res.peak_mib[n] = (base_bytes + persistent_bytes(trainers[n], shared) + transient) / 2**20
    else:
        res.memory_method = "n/a (--no-memory)"

    res.ratios["step_time"] = res.median_ms["MoS"] / res.median_ms["LoRA"]
    if res.peak_mib:
        res.ratios["peak_mem"] = res.peak_mib["MoS"] / res.peak_mib["LoRA"]
        res.ratios["step_transient"] = res.transient_mib["MoS"] / res.transient_mib["LoRA"]
    if args.profile:
        res.profile = profile_variants(trainers, args.profile, args.device)
    return res


def print_table(res: Result) -> None:
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    rows = [
        ("trainable params", {n: f"{res.trainable[n]:,}" for n in VARIANTS}, f"{res.trainable['MoS'] / res.trainable['LoRA']:.3f}"),
        ("step time median (ms)", {n: f"{res.median_ms[n]:.1f}" for n in VARIANTS}, f"{res.ratios['step_time']:.3f}"),
        ("step time IQR (ms)", {n: "{:.1f}-{:.1f}".format(*res.iqr_ms[n]) for n in VARIANTS}, ""),
        ("peak memory (MiB)", {n: fmt(res.peak_mib.get(n), ".1f") for n in VARIANTS},
         fmt(res.ratios.get("peak_mem"), ".3f")),
        ("  of which step transient", {n: fmt(res.transient_mib.get(n), ".1f") for n in VARIANTS},
         fmt(res.ratios.get("step_transient"), ".3f")),
        ("loss first/last timed", {n: f"{res.losses[n][0]:.3f}/{res.losses[n][-1]:.3f}" for n in VARIANTS}, ""),
    ]
    print()
    print(f"{'':<28}{'MoS':>16}{'LoRA':>16}{'MoS/LoRA':>11}")
    for label, vals, ratio in rows:
        print(f"{label:<28}{vals['MoS']:>16}{vals['LoRA']:>16}{ratio:>11}")
    base = "" if res.base_mib is None else f"; shared base tensors {res.base_mib:.1f} MiB counted in both"
    print(f"memory: {res.memory_method}{base}")
    verdict = []
    for key in ("step_time", "peak_mem"):
        if key in res.ratios:
            verdict.append(f"{key} {res.ratios[key]:.3f} {'<=' if res.ratios[key] <= 1.05 else '>'} 1.05")
    print("target (issue): MoS/LoRA <= 1.05: " + ", ".join(verdict))
    parts = [f"{k}={v:.3f}" for k, v in res.ratios.items()]
    print("RATIO mos/lora " + " ".join(parts))


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    res = run(args)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(res), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
