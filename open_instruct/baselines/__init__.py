"""The paper's comparison methods beside MoS: Tied-LoRA and PRoLoRA as PEFT tuners (LoRA and VeRA are PEFT's own).

Importing this package registers the ``TIED_LORA`` and ``PROLORA`` PEFT types (and MoS's), so that
``peft.get_peft_model(model, TiedLoRAConfig(...))`` and ``peft.PeftModel.from_pretrained(base, adapter_dir)`` work.
Every method exports to a plain LoRA adapter with ``open_instruct.mos.export_lora``.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import register_peft_method

import open_instruct.mos  # noqa: F401  (registers MOS)

from .common import FactorLinear
from .methods import ARGUMENT_MAPPING, METHODS, adapter_config, describe, mapping_help
from .prolora import PROLORA_PEFT_TYPE, ProLoRAConfig, ProLoRALinear, ProLoRAModel, replicate_rotated
from .tied_lora import TIED_LORA_PEFT_TYPE, TiedLoRAConfig, TiedLoRALinear, TiedLoRAModel, TiedPool

if TIED_LORA_PEFT_TYPE not in PEFT_TYPE_TO_CONFIG_MAPPING:
    register_peft_method(name="tied_lora", config_cls=TiedLoRAConfig, model_cls=TiedLoRAModel, prefix="tied_lora_")
if PROLORA_PEFT_TYPE not in PEFT_TYPE_TO_CONFIG_MAPPING:
    register_peft_method(name="prolora", config_cls=ProLoRAConfig, model_cls=ProLoRAModel, prefix="prolora_")

__all__ = [
    "ARGUMENT_MAPPING", "METHODS", "FactorLinear", "ProLoRAConfig", "ProLoRALinear", "ProLoRAModel", "TiedLoRAConfig",
    "TiedLoRALinear", "TiedLoRAModel", "TiedPool", "adapter_config", "describe", "mapping_help", "replicate_rotated",
]
