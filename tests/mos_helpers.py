"""Small helpers shared by the MoS tests."""

import peft

from open_instruct.mos import MoSConfig, MoSLayer

ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def mos_model(base, **kw):
    defaults = dict(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, lora_alpha=16,
                    target_modules=ALL_PROJ, seed=0)
    defaults.update(kw)
    return peft.get_peft_model(base, MoSConfig(**defaults))


def mos_layers(model, adapter="default"):
    return {n: m for n, m in model.named_modules() if isinstance(m, MoSLayer) and adapter in m.mos_index_A}
