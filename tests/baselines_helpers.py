"""Helpers shared by the tests of the paper's five methods (tests/baselines/)."""

import peft
import torch

import open_instruct.baselines  # noqa: F401  (registers MOS, TIED_LORA, PROLORA)
from open_instruct.baselines import ProLoRAConfig, TiedLoRAConfig
from open_instruct.methods import METHODS
from open_instruct.mos import MoSConfig

ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def method_config(method: str, **kw):
    """A config of ``method`` whose ΔW is non-zero from the start (random B parts), targeting all projections."""
    if method == "lora":
        return peft.LoraConfig(**{"r": 3, "lora_alpha": 16, "target_modules": ALL_PROJ, "init_lora_weights": False,
                                  **kw})
    if method == "vera":
        return peft.VeraConfig(**{"r": 6, "target_modules": ALL_PROJ, "projection_prng_key": 0, **kw})
    if method == "tied_lora":
        return TiedLoRAConfig(**{"r": 3, "lora_alpha": 16, "target_modules": ALL_PROJ, "init_weights": False,
                                 "seed": 0, **kw})
    if method == "prolora":
        return ProLoRAConfig(**{"r": 5, "unshared_r": 1, "reduce_lora_A_x": 4, "reduce_lora_B_x": 2, "lora_alpha": 16,
                                "target_modules": ALL_PROJ, "init_weights": False, **kw})
    if method == "mos":
        return MoSConfig(**{"r": 3, "valid_param_lora_r": 2, "valid_param_private_r": 1, "num_chunk_per_vec": 2,
                            "lora_alpha": 16, "target_modules": ALL_PROJ, "init_weights": False, "seed": 0,
                            "init_lora_A_vec_std": 0.3, **kw})
    raise ValueError(method)


def adapted(base, method: str, **kw):
    """``base`` with ``method``'s adapter, randomised so that every ΔW is non-zero (VeRA's λ_b starts at 0)."""
    torch.manual_seed(0)
    model = peft.get_peft_model(base, method_config(method, **kw))
    if method == "vera":
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, peft.tuners.vera.VeraLayer):
                    module.vera_lambda_b["default"].uniform_(0.5, 1.5)
                    module.vera_lambda_d["default"].uniform_(0.5, 1.5)
    return model


def tuner_layers(model):
    """``{path: layer}`` of the adapted layers (paths relative to the base model)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n.removeprefix("base_model.model."): m for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


__all__ = ["ALL_PROJ", "METHODS", "adapted", "method_config", "tuner_layers"]
