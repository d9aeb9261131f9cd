"""The one table of methods: name -> PEFT config built from the launcher's arguments, the arguments it reads, help.

The launcher (and ``finetune_trainer.py``) keep the original's positional arguments for every method; each method
reads the ones it has a use for. The trainer, the launchers' usage text (``python -m open_instruct.methods``),
``param_table`` and the adapter loaders all read this table. Importing it registers the MOS, TIED_LORA and
PROLORA PEFT types.

=========  =====================================================================================================
lora       r = lora_r                                                   (α = lora_alpha, dropout = lora_dropout)
vera       r = lora_r (VeRA's rank, e.g. 256); projection_prng_key = seed; no α (VeRA has no scaling)
tied_lora  r = lora_r (rank of the tied A and B); α, dropout as LoRA
prolora    r = lora_r, u = valid_param_private_r (unshared ranks), m = n = num_chunk_per_vec (chunk copies),
           rotation: --enable_lora_rotation (default True)
mos        r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec, vec mean/std
=========  =====================================================================================================
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import peft

from open_instruct.baselines import ProLoRAConfig, TiedLoRAConfig
from open_instruct.mos import MoSConfig, share_lora_chunkwisely


@dataclass(frozen=True)
class Method:
    """One row of the table."""

    name: str
    mapping: str  # which launcher arguments it reads, in its own notation
    reads: str  # the launcher settings it uses, among r (lora_r), p (private), e (valid_param_lora_r), c (chunks)
    build: Callable[..., peft.PeftConfig]
    describe: Callable[[peft.PeftConfig], str]


def _lora(a, common):
    return peft.LoraConfig(r=a["r"], lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"], bias="none", **common)


def _vera(a, common):
    return peft.VeraConfig(r=a["r"], vera_dropout=a["lora_dropout"], projection_prng_key=a["seed"] or 0,
                           save_projection=True, **common)


def _tied_lora(a, common):
    return TiedLoRAConfig(r=a["r"], lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"], seed=a["seed"],
                          **common)


def _prolora(a, common):
    c = a["num_chunk_per_vec"]
    return ProLoRAConfig(r=a["r"], unshared_r=a["valid_param_private_r"], reduce_lora_A_x=c, reduce_lora_B_x=c,
                         enable_lora_rotation=a["enable_lora_rotation"], lora_alpha=a["lora_alpha"],
                         lora_dropout=a["lora_dropout"], seed=a["seed"], **common)


def _mos(a, common):
    return MoSConfig(r=a["r"], valid_param_lora_r=a["valid_param_lora_r"],
                     valid_param_private_r=a["valid_param_private_r"], num_chunk_per_vec=a["num_chunk_per_vec"],
                     lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"],
                     init_lora_A_vec_value=a["init_lora_A_vec_value"],
                     init_lora_A_vec_std=a["init_lora_A_vec_std"] or 0.0, seed=a["seed"],
                     subset_selection=a.get("mos_subset_selection", True),
                     pair_dissociation=a.get("mos_pair_dissociation", True), **common)


def _rank_only(config) -> str:
    return f"r={config.r}"


def _describe_prolora(config) -> str:
    m, n = config.reduce_lora_A_x, config.reduce_lora_B_x
    mn = f"m=n={m}" if m == n else f"m={m} n={n}"
    return f"r={config.r} u={config.unshared_r} {mn}"


def _describe_mos(config) -> str:
    return f"r={config.r} e={config.valid_param_lora_r} p={config.valid_param_private_r} c={config.num_chunk_per_vec}"


TABLE: dict[str, Method] = {m.name: m for m in (
    Method("lora", "r = lora_r", "r", _lora, _rank_only),
    Method("vera", "r = lora_r (VeRA's rank, e.g. 256; lora_alpha unused, seed = projection PRNG key)", "r", _vera,
           _rank_only),
    Method("tied_lora", "r = lora_r (rank of the A and B tied across layers, per-layer u and v vectors)", "r",
           _tied_lora, _rank_only),
    Method("prolora", "r = lora_r, u = valid_param_private_r (unshared ranks), m = n = num_chunk_per_vec (chunk copies), "
           "rotation: --enable_lora_rotation (default True)",
           "rpc", _prolora, _describe_prolora),
    Method("mos", "r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec", "rpec", _mos,
           _describe_mos),
)}
METHODS = tuple(TABLE)


def method(name: str) -> Method:
    if name not in TABLE:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return TABLE[name]


def mapping_help() -> str:
    """One line per method: which launcher arguments it reads (for --help texts)."""
    return "; ".join(f"{m.name}: {m.mapping}" for m in TABLE.values())


def adapter_config(method_name: str, *, r: int, lora_alpha: float = 16, lora_dropout: float = 0.0,
                   target_modules="all-linear", valid_param_private_r: int = 1, valid_param_lora_r: int = 1,
                   num_chunk_per_vec: int = 1, seed: int | None = None, init_lora_A_vec_value: float = 1.0,
                   init_lora_A_vec_std: float = 0.0, enable_lora_rotation: bool = True,
                   task_type: str | None = "CAUSAL_LM", mos_subset_selection: bool = True,
                   mos_pair_dissociation: bool = True) -> peft.PeftConfig:
    """The PEFT config of ``method_name`` from the launcher's arguments (see the module docstring for the mapping).

    Raises ``ValueError`` (naming the field) for an unknown method or invalid settings.
    """
    spec = method(method_name)
    args = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, valid_param_private_r=valid_param_private_r,
                valid_param_lora_r=valid_param_lora_r, num_chunk_per_vec=num_chunk_per_vec, seed=seed,
                init_lora_A_vec_value=init_lora_A_vec_value, init_lora_A_vec_std=init_lora_A_vec_std,
                enable_lora_rotation=enable_lora_rotation, mos_subset_selection=mos_subset_selection,
                mos_pair_dissociation=mos_pair_dissociation)
    return spec.build(args, dict(target_modules=target_modules, task_type=task_type))


def lora_target_modules(spec: str):
    """``--lora_modules``: 'all' (every linear layer but the head) or a comma list of module names."""
    spec = spec.strip()
    if spec in ("all", "all-linear"):
        return "all-linear"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--lora_modules {spec!r} names no module; use 'all' or e.g. q_proj,v_proj.")
    return names


def config_from_args(args, seed: int, method_name: str | None = None) -> peft.PeftConfig:
    """The PEFT config of ``method_name`` (default ``args.ft_mode``) from the trainer's ``AdapterArguments``."""
    switches_off = not (getattr(args, "mos_subset_selection", True) and getattr(args, "mos_pair_dissociation", True))
    if switches_off and args.ft_mode != "mos":
        raise ValueError(f"--mos_subset_selection / --mos_pair_dissociation are MoS ablation switches; --ft_mode "
                         f"{args.ft_mode} has no index lists. Drop them or use --ft_mode mos.")
    return adapter_config(
        method_name or args.ft_mode, r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=lora_target_modules(args.lora_modules), valid_param_private_r=args.valid_param_private_r,
        valid_param_lora_r=args.valid_param_lora_r, num_chunk_per_vec=args.num_chunk_per_vec or 1, seed=seed,
        init_lora_A_vec_value=args.init_lora_A_vec_value, init_lora_A_vec_std=args.init_lora_A_vec_std,
        enable_lora_rotation=args.enable_lora_rotation,
        mos_subset_selection=getattr(args, "mos_subset_selection", True),
        mos_pair_dissociation=getattr(args, "mos_pair_dissociation", True))


def add_adapter(model, args, seed: int):
    """``model`` with the adapter of ``args.ft_mode``; for mos, LoRA first and then the paper's one-liner
    ``share_lora_chunkwisely`` right after it, as the original does. ``ValueError`` names a bad setting."""
    if args.ft_mode != "mos":
        return peft.get_peft_model(model, config_from_args(args, seed))
    chunk_config = config_from_args(args, seed)  # validated before LoRA is built
    model = peft.get_peft_model(model, config_from_args(args, seed, "lora"))
    return share_lora_chunkwisely(model, chunk_config)


def describe(method_name: str, config) -> str:
    """The settings of ``config`` in the method's own notation, e.g. ``r=8 u=1 m=n=4``."""
    return method(method_name).describe(config)


def main() -> int:
    """Print the methods and the launcher arguments each reads (the launchers' usage text uses this)."""
    width = max(map(len, METHODS))
    for m in TABLE.values():
        print(f"  {m.name.ljust(width)}  {m.mapping}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
