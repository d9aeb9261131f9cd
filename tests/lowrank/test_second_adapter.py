"""A second adapter of a shared-pool method (MoS, Tied-LoRA) beside the first: add, set, save both, delete."""

import peft
import pytest
import torch

import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)
from open_instruct.baselines import TiedLoRAConfig
from open_instruct.mos import MoSConfig
from open_instruct.tiny import build_tiny_model

TARGETS = ["q_proj", "v_proj", "down_proj"]
CONFIGS = {  # two adapters of different rank and seed per method, ΔW ≠ 0 from the start
    "mos": (dict(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, seed=0),
            dict(r=2, valid_param_lora_r=2, valid_param_private_r=0, num_chunk_per_vec=1, seed=1,
                 init_lora_A_vec_std=0.2)),
    "tied_lora": (dict(r=2, seed=0), dict(r=3, seed=1, lora_alpha=4)),
}
IDS = torch.arange(3, 15)[None]


def config(method, which):
    cls = MoSConfig if method == "mos" else TiedLoRAConfig
    return cls(target_modules=TARGETS, init_weights=False, **CONFIGS[method][which])


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def alone(method, which):
    """The reference: the same adapter as the only one on a fresh copy of the base."""
    return logits(peft.get_peft_model(build_tiny_model("llama", vocab_size=384), config(method, which)))


def two_adapters(method):
    model = peft.get_peft_model(build_tiny_model("llama", vocab_size=384), config(method, 0))
    model.add_adapter("second", config(method, 1))
    return model


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_add_and_set_adapter_switch_pools_and_outputs(method):
    model = two_adapters(method)
    pools = model.base_model.shared_pools
    assert all(set(pool.A) == {"default", "second"} for pool in pools.values())
    torch.testing.assert_close(logits(model), alone(method, 0), rtol=0, atol=1e-6)  # the first is still active
    assert trainable_names(model) and all(n.endswith(".default") for n in trainable_names(model))
    model.set_adapter("second")
    torch.testing.assert_close(logits(model), alone(method, 1), rtol=0, atol=1e-6)
    assert trainable_names(model) and all(n.endswith(".second") for n in trainable_names(model))
    model.set_adapter("default")
    torch.testing.assert_close(logits(model), alone(method, 0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_save_both_and_load_both(method, tmp_path):
    model = two_adapters(method)
    with torch.no_grad():  # as training would: move both adapters off what their seeds re-create
        gen = torch.Generator().manual_seed(7)
        for pool in model.base_model.shared_pools.values():
            for params in (pool.A, pool.B):
                for p in params.values():
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
    expected = {}
    for name in ("default", "second"):
        model.set_adapter(name)
        expected[name] = logits(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "second" / "adapter_config.json").is_file()
    loaded = peft.PeftModel.from_pretrained(build_tiny_model("llama", vocab_size=384), tmp_path)
    loaded.load_adapter(tmp_path / "second", adapter_name="second")
    for name in ("default", "second"):
        loaded.set_adapter(name)
        torch.testing.assert_close(logits(loaded), expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_delete_second_adapter_keeps_the_first(method):
    model = two_adapters(method)
    model.delete_adapter("second")
    assert all(set(pool.A) == {"default"} for pool in model.base_model.shared_pools.values())
    torch.testing.assert_close(logits(model), alone(method, 0), rtol=0, atol=1e-6)
