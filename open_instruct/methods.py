"""The one registry of methods: each method registered once, and everything else derived from it.

An entry (:class:`Method`) holds the method's name (``--ft_mode`` / the launcher's ``finetune_mode``), its PEFT
config class, how the launcher's positional arguments map onto that config (``build``), its label, how its
settings read (``describe``), its trainable-parameter count, and the prefix of its tensors in a saved adapter.
Derived from the registry: the trainer's ``--ft_mode`` check and help, the launchers' usage text and mode check
(``python -m open_instruct.methods`` lists the mapping), the adapter loader's tuner prefixes
(``open_instruct.adapters``), the run directory's adapter folders (``open_instruct.run_dir``) and
``open_instruct.param_table``. Importing this module is light (no torch, no PEFT): the config classes are imported
when a config is built.

=========  =====================================================================================================
lora       r = lora_r                                                   (α = lora_alpha, dropout = lora_dropout)
vera       r = lora_r (VeRA's rank, e.g. 256); projection_prng_key = seed; no α (VeRA has no scaling)
tied_lora  r = lora_r (rank of the tied A and B); α, dropout as LoRA
prolora    r = lora_r, u = valid_param_private_r (unshared ranks), m = n = num_chunk_per_vec (chunk copies),
           rotation: --enable_lora_rotation (default True)
mos        r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec, vec mean/std
=========  =====================================================================================================

A new method is one :func:`register_method` call in its own module::

    from open_instruct.methods import register_method

    register_method("half_lora", build=lambda a, common: peft.LoraConfig(r=max(a["r"] // 2, 1), **common),
                    config="peft:LoraConfig", mapping="r = lora_r / 2", reads="r", prefix="lora_")

The launcher runs the trainer and the evaluators in new processes: list such modules in the environment variable
``MOS_METHOD_PLUGINS`` (comma-separated module names, importable from ``PYTHONPATH``) and every process imports
them the first time it reads the registry. Every method must leave a plain LoRA adapter in the run directory
(``open_instruct.lowrank.export_lora`` exports the PEFT-LoRA-like layers exactly), so evaluation is the same.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

PLUGINS_ENV = "MOS_METHOD_PLUGINS"
SETTINGS = ("r", "p", "e", "c")  # r = lora_r, p = valid_param_private_r, e = valid_param_lora_r, c = num_chunk_per_vec


def _peft_count(model) -> int:
    return model.get_nb_trainable_parameters()[0]


def _rank_only(config) -> str:
    return f"r={config.r}"


@dataclass(frozen=True)
class Method:
    """One method of the registry.

    ``build(args, common)`` -> its PEFT config, from the launcher's arguments ``args`` (keys: r, lora_alpha,
    lora_dropout, valid_param_private_r, valid_param_lora_r, num_chunk_per_vec, seed, init_lora_A_vec_value,
    init_lora_A_vec_std, enable_lora_rotation, mos_subset_selection, mos_pair_dissociation; r, p, e and c are
    ``None`` when not given, meaning the config's own default) and the keyword arguments every config takes
    (``common``: target_modules, task_type); it raises ``ValueError`` naming the field.
    ``config``: the config class, or ``"module:Class"`` (imported on first use). ``convert``: for a method built as
    a LoRA model first and then converted (MoS's ``share_lora_chunkwisely``), the conversion. ``trainable``:
    the trainable-parameter count of an adapted model (default: PEFT's own count).
    """

    name: str
    build: Callable
    config: type | str
    mapping: str  # which launcher arguments it reads, in its own notation (usage and --help texts)
    reads: str  # the launcher settings it uses, among r, p, e, c (SETTINGS)
    prefix: str  # the attribute names of its tensors in a saved adapter start with it, e.g. "mos_"
    label: str = ""
    describe: Callable = _rank_only
    convert: Callable | None = None
    trainable: Callable = _peft_count
    note: str = ""  # a remark param_table prints under its table

    @property
    def config_class(self) -> type:
        if isinstance(self.config, str):
            module, _, attr = self.config.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.config


_REGISTRY: dict[str, Method] = {}
_plugins_loaded = False


def register_method(name: str, *, build: Callable, config: type | str, mapping: str, reads: str = "r",
                    prefix: str = "lora_", label: str = "", describe: Callable = _rank_only,
                    convert: Callable | None = None, trainable: Callable = _peft_count, note: str = "") -> Method:
    """Add a method to the registry (see the module docstring); returns its entry.

    Raises ``ValueError`` for a name that is taken or not a lower-case identifier, or ``reads`` outside r, p, e, c.
    """
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"register_method: the method name must be a lower-case identifier, got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"register_method: a method named {name!r} is already registered.")
    if set(reads) - set(SETTINGS):
        raise ValueError(f"register_method({name!r}): reads={reads!r} may only hold {', '.join(SETTINGS)}.")
    _REGISTRY[name] = entry = Method(name, build, config, mapping, reads, prefix, label or name, describe, convert,
                                     trainable, note)
    return entry


def load_plugins() -> None:
    """Import the modules named in ``MOS_METHOD_PLUGINS`` (once per process); a missing one is a ``UserError``."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            from open_instruct.errors import UserError

            raise UserError(f"{PLUGINS_ENV}: cannot import {module!r} ({err}); put its folder on PYTHONPATH or "
                            f"remove it from {PLUGINS_ENV}") from None


def registry() -> dict[str, Method]:
    """Every registered method by name, the built-in ones first (loads the plugins on first use)."""
    load_plugins()
    return dict(_REGISTRY)


def __getattr__(name: str):
    if name == "METHODS":  # the method names, in registration order (a live view: plugins included)
        return tuple(registry())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def method(name: str) -> Method:
    methods = registry()
    if name not in methods:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(methods)}.")
    return methods[name]


def mapping_help() -> str:
    """One line per method: which launcher arguments it reads (for --help texts)."""
    return "; ".join(f"{m.name}: {m.mapping}" for m in registry().values())


def tuner_prefixes() -> tuple[str, ...]:
    """The prefixes that start an adapter's own tensors in a checkpoint key, over every method."""
    return tuple(dict.fromkeys(m.prefix for m in registry().values()))


def register_peft_types() -> None:
    """Register every method's PEFT type with PEFT (MOS, TIED_LORA, PROLORA and the plugins'), so that
    ``peft.PeftModel.from_pretrained`` loads their native checkpoints."""
    import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
    import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)

    load_plugins()


def adapter_subdir(name: str) -> str:
    """Where a run keeps the method's own (compact) checkpoint: ``mos_adapter``, ``vera_adapter``, ..."""
    return f"{name}_adapter"


# ----------------------------------------------------------------------------------------------- built-in methods
def _given(**values) -> dict:
    """The settings that were given (a ``None`` setting is left to the config class's own default)."""
    return {k: v for k, v in values.items() if v is not None}


def _lora(a, common):
    import peft

    return peft.LoraConfig(**_given(r=a["r"]), lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"],
                           bias="none", **common)


def _vera(a, common):
    import peft

    return peft.VeraConfig(**_given(r=a["r"]), vera_dropout=a["lora_dropout"], projection_prng_key=a["seed"] or 0,
                           save_projection=True, **common)


def _tied_lora(a, common):
    from open_instruct.baselines import TiedLoRAConfig

    return TiedLoRAConfig(**_given(r=a["r"]), lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"],
                          seed=a["seed"], **common)


def _prolora(a, common):
    from open_instruct.baselines import ProLoRAConfig

    c = a["num_chunk_per_vec"]
    return ProLoRAConfig(**_given(r=a["r"], unshared_r=a["valid_param_private_r"], reduce_lora_A_x=c,
                                  reduce_lora_B_x=c),
                         enable_lora_rotation=a["enable_lora_rotation"], lora_alpha=a["lora_alpha"],
                         lora_dropout=a["lora_dropout"], seed=a["seed"], **common)


def _mos(a, common):
    from open_instruct.mos import MoSConfig

    return MoSConfig(**_given(r=a["r"], valid_param_lora_r=a["valid_param_lora_r"],
                              valid_param_private_r=a["valid_param_private_r"],
                              num_chunk_per_vec=a["num_chunk_per_vec"]),
                     lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"],
                     init_lora_A_vec_value=a["init_lora_A_vec_value"],
                     init_lora_A_vec_std=a["init_lora_A_vec_std"] or 0.0, seed=a["seed"],
                     subset_selection=a.get("mos_subset_selection", True),
                     pair_dissociation=a.get("mos_pair_dissociation", True), **common)


def _share_lora_chunkwisely(model, config):
    from open_instruct.mos import share_lora_chunkwisely

    return share_lora_chunkwisely(model, config)


def _describe_prolora(config) -> str:
    m, n = config.reduce_lora_A_x, config.reduce_lora_B_x
    mn = f"m=n={m}" if m == n else f"m={m} n={n}"
    return f"r={config.r} u={config.unshared_r} {mn}"


def _describe_mos(config) -> str:
    return f"r={config.r} e={config.valid_param_lora_r} p={config.valid_param_private_r} c={config.num_chunk_per_vec}"


register_method("lora", build=_lora, config="peft:LoraConfig", mapping="r = lora_r", label="LoRA")
register_method("vera", build=_vera, config="peft:VeraConfig", prefix="vera_", label="VeRA",
                mapping="r = lora_r (VeRA's rank, e.g. 256; lora_alpha unused, seed = projection PRNG key)",
                note="checkpoint includes VeRA's frozen projections (save_projection=True)")
register_method("tied_lora", build=_tied_lora, config="open_instruct.baselines:TiedLoRAConfig", prefix="tied_lora_",
                label="Tied-LoRA",
                mapping="r = lora_r (rank of the A and B tied across layers, per-layer u and v vectors)")
register_method("prolora", build=_prolora, config="open_instruct.baselines:ProLoRAConfig", prefix="prolora_",
                label="PRoLoRA", reads="rpc", describe=_describe_prolora,
                mapping="r = lora_r, u = valid_param_private_r (unshared ranks), m = n = num_chunk_per_vec (chunk "
                        "copies), rotation: --enable_lora_rotation (default True)")
register_method("mos", build=_mos, config="open_instruct.mos:MoSConfig", prefix="mos_", label="MoS", reads="rpec",
                describe=_describe_mos, convert=_share_lora_chunkwisely,
                mapping="r = lora_r, e = valid_param_lora_r, p = valid_param_private_r, c = num_chunk_per_vec")


# ----------------------------------------------------------------------------------------------- configs from arguments
def adapter_config(method_name: str, *, r: int | None = None, lora_alpha: float = 16, lora_dropout: float = 0.0,
                   target_modules="all-linear", valid_param_private_r: int | None = None,
                   valid_param_lora_r: int | None = None, num_chunk_per_vec: int | None = None,
                   seed: int | None = None, init_lora_A_vec_value: float = 1.0,
                   init_lora_A_vec_std: float = 0.0, enable_lora_rotation: bool = True,
                   task_type: str | None = "CAUSAL_LM", mos_subset_selection: bool = True,
                   mos_pair_dissociation: bool = True):
    """The PEFT config of ``method_name`` from the launcher's arguments (see the module docstring for the mapping).

    A setting left at ``None`` (r, p, e, c) takes the method's config default: ``adapter_config("mos")`` is
    ``MoSConfig()``'s r=8 e=2 p=1 c=4, ``adapter_config("lora")`` PEFT's r=8. Raises ``ValueError`` (naming the
    field) for an unknown method or invalid settings.
    """
    spec = method(method_name)
    args = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, valid_param_private_r=valid_param_private_r,
                valid_param_lora_r=valid_param_lora_r, num_chunk_per_vec=num_chunk_per_vec, seed=seed,
                init_lora_A_vec_value=init_lora_A_vec_value, init_lora_A_vec_std=init_lora_A_vec_std,
                enable_lora_rotation=enable_lora_rotation, mos_subset_selection=mos_subset_selection,
                mos_pair_dissociation=mos_pair_dissociation)
    register_peft_types()
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


def config_from_args(args, seed: int, method_name: str | None = None):
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
    """``model`` with the adapter of ``args.ft_mode``. A method with a ``convert`` step (mos) is built as LoRA
    first and converted right after, as the original does with ``share_lora_chunkwisely``. ``ValueError`` names a
    bad setting."""
    import peft

    entry = method(args.ft_mode)
    config = config_from_args(args, seed)  # validated before anything is built
    if entry.convert is None:
        return peft.get_peft_model(model, config)
    return entry.convert(peft.get_peft_model(model, config_from_args(args, seed, "lora")), config)


def main() -> int:
    """Print the methods and the launcher arguments each reads (the launchers' usage text uses this)."""
    methods = registry()
    width = max(map(len, methods))
    for m in methods.values():
        print(f"  {m.name.ljust(width)}  {m.mapping}")
    return 0


if __name__ == "__main__":  # the registry plugins register with is open_instruct.methods, not __main__
    from open_instruct.methods import main as registry_main

    sys.exit(registry_main())
