"""The paper's comparison methods beside MoS: Tied-LoRA and PRoLoRA as PEFT tuners (LoRA and VeRA are PEFT's own),
on the shared core ``open_instruct.lowrank`` only.

Importing this package registers the ``TIED_LORA`` and ``PROLORA`` PEFT types, so that
``peft.get_peft_model(model, TiedLoRAConfig(...))`` and ``peft.PeftModel.from_pretrained(base, adapter_dir)`` work.
Every method exports to a plain LoRA adapter with ``open_instruct.lowrank.export_lora``; the table of all five
methods is ``open_instruct.methods``.
"""

from open_instruct.lowrank.peft_type import register_method

from .prolora import PROLORA_PEFT_TYPE, ProLoRAConfig, ProLoRALinear, ProLoRAModel, replicate_rotated
from .tied_lora import TIED_LORA_PEFT_TYPE, TiedLoRAConfig, TiedLoRALinear, TiedLoRAModel, TiedPool

register_method(TIED_LORA_PEFT_TYPE, TiedLoRAConfig, TiedLoRAModel, prefix="tied_lora_")
register_method(PROLORA_PEFT_TYPE, ProLoRAConfig, ProLoRAModel, prefix="prolora_")

__all__ = [
    "ProLoRAConfig", "ProLoRALinear", "ProLoRAModel", "TiedLoRAConfig", "TiedLoRALinear", "TiedLoRAModel", "TiedPool",
    "replicate_rotated",
]
