"""Trainable parameters and checkpoint size of each method at given settings, without loading any weight.

The model is built on the meta device from its config (``accelerate.init_empty_weights``), each method is applied
through the same ``open_instruct.methods.adapter_config`` the trainer uses, and the counts come from the
adapted model itself (PEFT's own trainable-parameter count; checkpoint = the tensors ``save_pretrained`` writes
for the method's native adapter, float32; LoRA export = the dense rank-r LoRA adapter every method exports to).

    python -m open_instruct.param_table --model llama2-7b                        # the paper's budgets
    python -m open_instruct.param_table --model path/to/model_dir --rows "prolora r=8 p=1 c=4" "vera r=256"
    python -m open_instruct.param_table --model llama3.2-3b --r 4 8 --p 1 --e 2 --c 4   # every method at r = 4, 8

Settings use the launcher's names (r = lora_r, p = valid_param_private_r, e = valid_param_lora_r,
c = num_chunk_per_vec; u and m are accepted for PRoLoRA's p and c); each method reads the ones it uses.
``--model`` is one of the built-in presets or its hub id (no model hub needed), a directory holding
``config.json``, or, online, any other hub id (only its ``config.json`` is fetched).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from open_instruct.errors import UserError, one_line_usage, report

PRESETS: dict[str, dict] = {
    "llama2-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
    "llama2-13b": dict(model_type="llama", hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                       num_attention_heads=40, num_key_value_heads=40, vocab_size=32000),
    "llama3.2-3b": dict(model_type="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                        num_attention_heads=24, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                        tie_word_embeddings=True),
}

# The hub ids users type for the presets (same config.json): they work offline.
HUB_IDS = {
    "meta-llama/Llama-2-7b-hf": "llama2-7b", "meta-llama/Llama-2-7b-chat-hf": "llama2-7b",
    "meta-llama/Llama-2-13b-hf": "llama2-13b", "meta-llama/Llama-2-13b-chat-hf": "llama2-13b",
    "meta-llama/Llama-3.2-3B": "llama3.2-3b", "meta-llama/Llama-3.2-3B-Instruct": "llama3.2-3b",
}

SETTING_KEYS = {"r": "r", "p": "p", "e": "e", "c": "c", "u": "p", "m": "c"}


@dataclass
class Row:
    """One method at one setting, in the launcher's terms (r, p, e, c)."""

    method: str
    r: int
    p: int = 1
    e: int = 1
    c: int = 1

    @classmethod
    def parse(cls, spec: str) -> Row:
        """``"prolora r=8 p=1 c=4"`` (or ``prolora:r=8,u=1,m=4``) -> Row."""
        from open_instruct.methods import METHODS

        parts = spec.replace(":", " ").replace(",", " ").split()
        if not parts or parts[0] not in METHODS:
            raise ValueError(f"row {spec!r}: start with a method ({', '.join(METHODS)}), e.g. 'prolora r=8 p=1 c=4'.")
        values: dict[str, int] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep or key not in SETTING_KEYS or not value.isdigit():
                raise ValueError(f"row {spec!r}: expected key=integer with key in {sorted(SETTING_KEYS)}, got {item!r}.")
            values[SETTING_KEYS[key]] = int(value)
        if "r" not in values:
            raise ValueError(f"row {spec!r}: r=... is required.")
        return cls(parts[0], **values)


# The paper's budgets on LLaMA-2-7B: LoRA r = 2 / 8 / 64 (5.0M / 20.0M / 159.9M), VeRA r = 256 (1.42M),
# MoS e = 2 with r = 4 or 8 and e = 8 with r = 16 or 32; Tied-LoRA and PRoLoRA near the 5M budget.
DEFAULT_ROWS = [
    Row("lora", 2), Row("lora", 8), Row("lora", 64),
    Row("vera", 256),
    Row("tied_lora", 8), Row("tied_lora", 46),
    Row("prolora", 8, p=0, c=4), Row("prolora", 9, p=1, c=8),
    Row("mos", 4, p=1, e=2, c=4), Row("mos", 8, p=1, e=2, c=4),
    Row("mos", 16, p=2, e=8, c=4), Row("mos", 32, p=2, e=8, c=4),
]


@dataclass
class Entry:
    """A measured row (``error`` set instead of the counts when the setting is invalid for this model)."""

    method: str
    settings: str
    launcher: str
    trainable: int = 0
    lora_per_rank: int = 0
    checkpoint_bytes: int = 0
    export_bytes: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def equivalent_rank(self) -> float:
        return self.trainable / self.lora_per_rank if self.lora_per_rank else 0.0


def load_model_config(spec: str):
    """A transformers config from a preset name, a preset's hub id, a directory (or file) with ``config.json``, or
    (online) any other hub id, of which only ``config.json`` is fetched."""
    from transformers import AutoConfig

    spec = HUB_IDS.get(spec, spec)
    if spec in PRESETS:
        kw = dict(PRESETS[spec])
        return AutoConfig.for_model(kw.pop("model_type"), **kw)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        path = path.parent
    if (path / "config.json").is_file():
        return AutoConfig.from_pretrained(str(path))
    known = f"a preset ({', '.join(PRESETS)}), a preset's hub id ({', '.join(HUB_IDS)}) or a directory with config.json"
    if path.exists() or spec.count("/") != 1:
        raise ValueError(f"--model {spec!r} is neither {known}.")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no"):
        raise ValueError(f"--model {spec!r}: the model hub is off (HF_HUB_OFFLINE); pass {known}, or unset "
                         "HF_HUB_OFFLINE to fetch its config.json.")
    from huggingface_hub import hf_hub_download

    from open_instruct.run_dir import hub_problem

    problem = hub_problem(spec, "--model")  # offline: one line now rather than after the hub client's retries
    if problem:
        raise ValueError(problem)
    try:
        config_file = hf_hub_download(spec, "config.json")  # the config only, never weights
    except Exception as err:  # noqa: BLE001 - network, gated repo, missing repo: all one line
        raise ValueError(f"--model {spec!r}: could not fetch its config.json from the hub ({type(err).__name__}); "
                         f"check the id and your access, or pass {known}.") from None
    return AutoConfig.from_pretrained(str(Path(config_file).parent))


def check_target_names(config, target_modules) -> None:
    """Every name in a ``--lora_modules`` list must name modules of the model (PEFT ignores the unmatched ones when
    another name matches)."""
    if not isinstance(target_modules, list):
        return
    names = {name.rsplit(".", 1)[-1] for name, module in meta_model(config).named_modules()
             if hasattr(module, "in_features") or type(module).__name__ == "Conv1D"}
    unknown = [t for t in target_modules if t not in names]
    if unknown:
        raise ValueError(f"--lora_modules: {', '.join(unknown)} names no linear module of this model; its linear "
                         f"modules are {', '.join(sorted(names))}.")


def meta_model(config):
    """The causal LM of ``config`` on the meta device: shapes only, no memory for weights."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_config(config)


def measure(config, row: Row, target_modules="all-linear") -> Entry:
    """Apply ``row``'s method to a meta model of ``config`` and count."""
    import peft
    from peft.tuners.tuners_utils import BaseTunerLayer

    from open_instruct.methods import adapter_config, method

    entry = method(row.method)
    used = entry.reads
    launcher = " ".join(str(getattr(row, k)) if k in used else "-" for k in ("r", "p", "e", "c"))
    try:
        cfg = adapter_config(row.method, r=row.r, valid_param_private_r=row.p, valid_param_lora_r=row.e,
                             num_chunk_per_vec=row.c, seed=0, target_modules=target_modules, task_type=None)
        settings = entry.describe(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = peft.get_peft_model(meta_model(config), cfg)
    except ValueError as err:
        return Entry(row.method, " ".join(f"{k}={getattr(row, k)}" for k in used), launcher, error=str(err))
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    per_rank = sum(m.in_features + m.out_features for m in layers)
    trainable = entry.trainable(model)
    state = peft.get_peft_model_state_dict(model)
    ckpt = sum(t.numel() * t.element_size() for t in state.values())
    export = sum(m.r["default"] * (m.in_features + m.out_features) for m in layers) * 4
    measured = Entry(row.method, settings, launcher, trainable, per_rank, ckpt, export)
    if entry.note:
        measured.notes.append(entry.note)
    return measured


def build_table(model_spec: str, rows: list[Row], target_modules="all-linear") -> tuple[object, list[Entry]]:
    config = load_model_config(model_spec)
    check_target_names(config, target_modules)
    return config, [measure(config, row, target_modules) for row in rows]


def lora_per_rank(config, target_modules="all-linear") -> int:
    """LoRA parameters per unit rank on the targets (PEFT's own LoRA at r = 1), whatever the rows did."""
    return measure(config, Row("lora", 1), target_modules).trainable


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def format_table(entries: list[Entry], markdown: bool = False) -> str:
    head = ["method", "settings", "launcher (r p e c)", "trainable params", "≈ LoRA rank", "checkpoint (fp32)",
            "LoRA export (fp32)"]
    body = []
    for e in entries:
        if e.error:
            body.append([e.method, e.settings, e.launcher, "n/a", "", e.error, ""])
        else:
            body.append([e.method, e.settings, e.launcher, f"{e.trainable:,}", f"{e.equivalent_rank:.3g}",
                         _mib(e.checkpoint_bytes), _mib(e.export_bytes)])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head] + [b for b in body if b[3] != "n/a" or i < 4]) for i in range(len(head))]
    right = {3, 4, 5, 6}

    def fmt(row):
        if row[3] == "n/a":  # error text spans the remaining columns
            return "  ".join(c.ljust(w) for c, w in zip(row[:3], widths[:3])) + "  n/a: " + row[5]
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(head), *(fmt(r) for r in body)])


def describe_model(spec: str, config, per_rank: int) -> str:
    heads = f"{config.num_attention_heads}/{getattr(config, 'num_key_value_heads', config.num_attention_heads)} heads"
    return (f"model: {spec} ({config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"intermediate {getattr(config, 'intermediate_size', '?')}, {heads}); built on the meta device\n"
            f"LoRA parameters per unit rank on the targets: {per_rank:,}")


def main(argv=None) -> int:
    from open_instruct.methods import METHODS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True,
                    help=f"preset ({', '.join(PRESETS)}) or its hub id (e.g. meta-llama/Llama-2-7b-hf), a directory "
                         "with config.json, or (online) another hub id, of which only config.json is fetched")
    ap.add_argument("--rows", nargs="+", metavar="SPEC",
                    help="rows like 'lora r=2' 'prolora r=8 p=1 c=4' 'mos r=4 e=2 p=1 c=4' (default: the paper's "
                         "budgets)")
    ap.add_argument("--r", nargs="+", type=int, metavar="R",
                    help="instead of --rows: every method of --methods at each of these ranks, with --p/--e/--c")
    ap.add_argument("--p", type=int, default=1, help="valid_param_private_r for --r (MoS p, PRoLoRA u); default 1")
    ap.add_argument("--e", type=int, default=2, help="valid_param_lora_r for --r (MoS e); default 2")
    ap.add_argument("--c", type=int, default=4, help="num_chunk_per_vec for --r (MoS c, PRoLoRA m = n); default 4")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods for --r")
    ap.add_argument("--lora_modules", default="all",
                    help="'all' (every linear layer but the head, as the launcher) or a comma list, e.g. q_proj,v_proj")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = one_line_usage(ap).parse_args(argv)
    try:
        if args.rows and args.r:
            raise ValueError("pass either --rows or --r, not both")
        if args.r:
            rows = [Row(m, r, p=args.p, e=args.e, c=args.c) for r in args.r for m in args.methods]
        else:
            rows = [Row.parse(s) for s in args.rows] if args.rows else list(DEFAULT_ROWS)
        targets = "all-linear" if args.lora_modules in ("all", "all-linear") else [
            s.strip() for s in args.lora_modules.split(",") if s.strip()]
        config, entries = build_table(args.model, rows, targets)
        per_rank = lora_per_rank(config, targets)
    except (UserError, ValueError, OSError) as err:  # OSError: a config.json that cannot be read
        report("param_table", err)
        return 2
    print(describe_model(args.model, config, per_rank))
    print(format_table(entries, markdown=args.markdown))
    notes = sorted({n for e in entries for n in e.notes})
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps([{**e.__dict__, "equivalent_rank": e.equivalent_rank} for e in entries],
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
