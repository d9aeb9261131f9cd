"""MoS (Mixture of Shards): parameter-sharing LoRA as a PEFT tuner.

Importing this package registers the ``MOS`` PEFT type, so that ``peft.get_peft_model(model, MoSConfig(...))``
and ``peft.PeftModel.from_pretrained(base, mos_adapter_dir)`` work.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import register_peft_method

from .config import MOS_PEFT_TYPE, MoSConfig
from .export import export_lora, lora_config_for, lora_state_dict
from .layer import Linear, MoSLayer, MoSPool
from .model import MoSModel, MoSReport, mos_config_from, mos_report, share_lora_chunkwisely

if MOS_PEFT_TYPE not in PEFT_TYPE_TO_CONFIG_MAPPING:
    register_peft_method(name="mos", config_cls=MoSConfig, model_cls=MoSModel, prefix="mos_")

__all__ = [
    "Linear", "MoSConfig", "MoSLayer", "MoSModel", "MoSPool", "MoSReport", "export_lora", "lora_config_for",
    "lora_state_dict", "mos_config_from", "mos_report", "share_lora_chunkwisely",
]
