"""MoS (Mixture of Shards): parameter-sharing LoRA as a PEFT tuner, on the shared core ``open_instruct.lowrank``.

Importing this package registers the ``MOS`` PEFT type, so that ``peft.get_peft_model(model, MoSConfig(...))``
and ``peft.PeftModel.from_pretrained(base, mos_adapter_dir)`` work. ``export_lora`` (exact export to a plain
LoRA adapter) is the core's, re-exported here for the README's one-import example.
"""

from open_instruct.lowrank.export import export_lora, lora_config_for, lora_state_dict
from open_instruct.lowrank.peft_type import register_method

from .config import MOS_PEFT_TYPE, MoSConfig
from .convert import mos_config_from, share_lora_chunkwisely
from .layer import Linear, MoSLayer, MoSPool
from .model import MoSModel
from .report import MoSReport, mos_report

register_method(MOS_PEFT_TYPE, MoSConfig, MoSModel, prefix="mos_")

__all__ = [
    "Linear", "MoSConfig", "MoSLayer", "MoSModel", "MoSPool", "MoSReport", "export_lora", "lora_config_for",
    "lora_state_dict", "mos_config_from", "mos_report", "share_lora_chunkwisely",
]
