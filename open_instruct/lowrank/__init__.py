"""What every low-rank method of this project shares, knowing none of them (PEFT's ``tuners_utils`` plays this
part for PEFT's own tuners): the common config fields and checks, the factor layer (forward, merge/unmerge), the
PEFT-type registration, module-type discovery, a tuner whose parameters live in pools shared across layers, the
exact export to a plain LoRA adapter, and serving (mixed-adapter batches, the inference factor cache). ``open_instruct.mos`` and ``open_instruct.baselines`` build on it."""

from .config import LowRankAdapterConfig, check_positive_int, default_all_linear
from .export import export_lora, export_plan, layer_factors, lora_config_for, lora_state_dict
from .grouping import group_by_module_type, group_same_shape, split_module_name
from .layer import FactorLinear, layer_kwargs
from .peft_type import ensure_peft_type, register_method
from .pool import FactorPool, lora_a_bound
from .serving import clear_factor_cache, set_factor_cache_size
from .tuner import POOLS_ATTR, SharedPoolTuner, seeded_generator

__all__ = [
    "POOLS_ATTR", "FactorLinear", "FactorPool", "LowRankAdapterConfig", "SharedPoolTuner", "check_positive_int",
    "clear_factor_cache", "set_factor_cache_size",
    "default_all_linear", "ensure_peft_type", "export_lora", "export_plan", "group_by_module_type", "group_same_shape",
    "layer_factors", "layer_kwargs", "lora_a_bound", "lora_config_for", "lora_state_dict", "register_method",
    "seeded_generator", "split_module_name",
]
