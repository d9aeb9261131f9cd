"""The factor layer every method shares, on cases the method tests do not reach: GPT-2's Conv1D
(``fan_in_fan_out``), dropout > 0 in training, and ``safe_merge``."""

import copy

import peft
import pytest
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)
from open_instruct.baselines import ProLoRAConfig, TiedLoRAConfig
from open_instruct.lowrank import FactorLinear, export_lora
from open_instruct.mos import MoSConfig
from open_instruct.tiny import build_tiny_gpt2, build_tiny_model


def method_config(method, **kw):
    if method == "mos":
        return MoSConfig(**{"r": 3, "valid_param_lora_r": 2, "valid_param_private_r": 1, "num_chunk_per_vec": 2,
                            "init_weights": False, "seed": 0, "init_lora_A_vec_std": 0.3, **kw})
    if method == "tied_lora":
        return TiedLoRAConfig(**{"r": 3, "init_weights": False, "seed": 0, **kw})
    return ProLoRAConfig(**{"r": 4, "unshared_r": 1, "reduce_lora_A_x": 2, "reduce_lora_B_x": 2, "init_weights": False,
                            **kw})


METHODS = ["mos", "tied_lora", "prolora"]


@pytest.mark.parametrize("method", METHODS)
def test_gpt2_conv1d_targets_match_their_stock_lora_export(method, tmp_path):
    """Conv1D stores its weight as (in, out): each method's forward, merge and export must agree with stock PEFT's
    LoRA (which handles Conv1D with fan_in_fan_out) on the same factors."""
    base = build_tiny_gpt2()
    ids = torch.arange(5, 21)[None]
    with torch.no_grad():
        base_out = base(input_ids=ids).logits
    model = peft.get_peft_model(copy.deepcopy(base), method_config(
        method, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True))
    layers = [m for m in model.modules() if isinstance(m, FactorLinear)]
    assert len(layers) == 2 * 4 and all(isinstance(m.get_base_layer(), Conv1D) and m.fan_in_fan_out for m in layers)
    with torch.no_grad():
        out = model(input_ids=ids).logits
    assert (out - base_out).abs().max() > 1e-3
    export_lora(model, tmp_path)
    lora = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert lora.peft_config["default"].fan_in_fan_out is True
    with torch.no_grad():
        torch.testing.assert_close(lora(input_ids=ids).logits, out, rtol=0, atol=1e-5)
        merged = model.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_dropout_applies_to_the_adapter_input_in_training_only(method):
    model = peft.get_peft_model(build_tiny_model("llama", vocab_size=384),
                                method_config(method, target_modules=["q_proj"], lora_dropout=0.5))
    layer = next(m for m in model.modules() if isinstance(m, FactorLinear))
    x = torch.randn(2, 5, layer.in_features, generator=torch.Generator().manual_seed(0))
    a, b = (t.detach() for t in layer.lora_factors("default"))
    scaling = layer.scaling["default"]
    with torch.no_grad():
        base = layer.get_base_layer()(x)
        layer.eval()
        torch.testing.assert_close(layer(x), base + scaling * F.linear(F.linear(x, a), b), rtol=0, atol=1e-6)
        layer.train()
        torch.manual_seed(3)
        out = layer(x)
        torch.manual_seed(3)  # the same mask, drawn by hand
        dropped = F.dropout(x, p=0.5, training=True)
    assert (dropped == 0).float().mean() > 0.3
    torch.testing.assert_close(out, base + scaling * F.linear(F.linear(dropped, a), b), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_safe_merge_equals_merge_and_refuses_non_finite_weights(method):
    ids = torch.arange(3, 15)[None]
    cfg = method_config(method, target_modules=["q_proj", "v_proj"])
    model = peft.get_peft_model(build_tiny_model("llama", vocab_size=384), cfg)
    with torch.no_grad():
        out = model(input_ids=ids).logits
        safe = copy.deepcopy(model).merge_and_unload(safe_merge=True)
        torch.testing.assert_close(safe(input_ids=ids).logits, out, rtol=0, atol=1e-5)

    broken = peft.get_peft_model(build_tiny_model("llama", vocab_size=384), cfg)
    layer = next(m for m in broken.modules() if isinstance(m, FactorLinear))
    weight_before = layer.get_base_layer().weight.detach().clone()
    with torch.no_grad():
        next(p for p in broken.parameters() if p.requires_grad).fill_(float("nan"))
    with pytest.raises(ValueError, match="NaNs detected in the merged weights"):
        broken.merge_adapter(safe_merge=True)
    assert torch.equal(layer.get_base_layer().weight, weight_before)  # nothing written
    assert not layer.merged
