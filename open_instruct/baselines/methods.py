"""The five methods of the paper's comparison behind one function: the launcher's arguments -> a PEFT config.

The launcher (and ``finetune_trainer.py``) keep the original's ten positional arguments for every method; each
method reads the ones it has a use for:

=========  =====================================================================================================
lora       r = lora_r                                                   (α = lora_alpha, dropout = lora_dropout)
vera       r = lora_r (VeRA's rank, e.g. 256); projection_prng_key = seed; no α (VeRA has no scaling)
tied_lora  r = lora_r (rank of the tied A and B); α, dropout as LoRA
prolora    r = lora_r, u = valid_param_private_r (unshared ranks), m = n = num_chunk_per_vec (chunk copies)
mos        r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec, vec mean/std
=========  =====================================================================================================
"""

from __future__ import annotations

import peft

METHODS = ("lora", "vera", "tied_lora", "prolora", "mos")

ARGUMENT_MAPPING = {
    "lora": "r = lora_r",
    "vera": "r = lora_r (VeRA's rank, e.g. 256; lora_alpha unused)",
    "tied_lora": "r = lora_r",
    "prolora": "r = lora_r, u = valid_param_private_r, m = n = num_chunk_per_vec",
    "mos": "r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec",
}


def mapping_help() -> str:
    """One line per method: which launcher arguments it reads (for --help texts)."""
    return "; ".join(f"{m}: {ARGUMENT_MAPPING[m]}" for m in METHODS)


def adapter_config(method: str, *, r: int, lora_alpha: float = 16, lora_dropout: float = 0.0,
                   target_modules="all-linear", valid_param_private_r: int = 1, valid_param_lora_r: int = 1,
                   num_chunk_per_vec: int = 1, seed: int | None = None, init_lora_A_vec_value: float = 1.0,
                   init_lora_A_vec_std: float = 0.0, task_type: str | None = "CAUSAL_LM") -> peft.PeftConfig:
    """The PEFT config of ``method`` from the launcher's arguments (see the module docstring for the mapping).

    Raises ``ValueError`` (naming the field) for an unknown method or invalid settings.
    """
    common = dict(target_modules=target_modules, task_type=task_type)
    if method == "lora":
        return peft.LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none", **common)
    if method == "vera":
        return peft.VeraConfig(r=r, vera_dropout=lora_dropout, projection_prng_key=seed or 0, save_projection=True,
                               **common)
    if method == "tied_lora":
        from .tied_lora import TiedLoRAConfig

        return TiedLoRAConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, seed=seed, **common)
    if method == "prolora":
        from .prolora import ProLoRAConfig

        return ProLoRAConfig(r=r, unshared_r=valid_param_private_r, reduce_lora_A_x=num_chunk_per_vec,
                             reduce_lora_B_x=num_chunk_per_vec, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                             **common)
    if method == "mos":
        from open_instruct.mos import MoSConfig

        return MoSConfig(r=r, valid_param_lora_r=valid_param_lora_r, valid_param_private_r=valid_param_private_r,
                         num_chunk_per_vec=num_chunk_per_vec, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                         init_lora_A_vec_value=init_lora_A_vec_value, init_lora_A_vec_std=init_lora_A_vec_std or 0.0,
                         seed=seed, **common)
    raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")


def describe(method: str, config) -> str:
    """The settings of ``config`` in the method's own notation, e.g. ``r=8 u=1 m=n=4``."""
    if method == "prolora":
        m, n = config.reduce_lora_A_x, config.reduce_lora_B_x
        mn = f"m=n={m}" if m == n else f"m={m} n={n}"
        return f"r={config.r} u={config.unshared_r} {mn}"
    if method == "mos":
        return (f"r={config.r} e={config.valid_param_lora_r} p={config.valid_param_private_r} "
                f"c={config.num_chunk_per_vec}")
    return f"r={config.r}"
