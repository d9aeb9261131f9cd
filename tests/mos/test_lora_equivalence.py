"""With p = e = r and c = 1, MoS is exactly LoRA: same outputs and gradients as PEFT's own LoRA."""

import copy

import peft
import pytest
import torch
from mos_helpers import ALL_PROJ, mos_layers, mos_model


@pytest.mark.parametrize("arch_fixture", ["tiny_model"])
def test_mos_equals_peft_lora(tiny_model, tiny_tokenizer, arch_fixture):
    r = 4
    base_lora, base_mos = tiny_model, copy.deepcopy(tiny_model)
    lora = peft.get_peft_model(base_lora, peft.LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0,
                                                          target_modules=ALL_PROJ, init_lora_weights=False))
    mos = mos_model(base_mos, r=r, valid_param_lora_r=r, valid_param_private_r=r, num_chunk_per_vec=1)
    lora_layers = {n.removeprefix("base_model.model."): m for n, m in lora.named_modules()
                   if isinstance(m, peft.tuners.lora.LoraLayer)}
    layers = {n.removeprefix("base_model.model."): m for n, m in mos_layers(mos).items()}
    assert set(layers) == set(lora_layers) and len(layers) == 7 * tiny_model.config.num_hidden_layers

    # Write LoRA's (random, non-zero) A and B into the pools through each layer's own index lists.
    with torch.no_grad():
        for name, layer in layers.items():
            pool = layer.pool("default")
            pool.A["default"][layer.mos_index_A["default"]] = lora_layers[name].lora_A["default"].weight
            pool.B["default"][layer.mos_index_B["default"]] = lora_layers[name].lora_B["default"].weight.t()

    batch = tiny_tokenizer(["The quick brown fox", "Answer: B is right"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    out_lora = lora(**batch, labels=labels)
    out_mos = mos(**batch, labels=labels)
    torch.testing.assert_close(out_mos.logits, out_lora.logits, rtol=0, atol=1e-6)
    out_lora.loss.backward()
    out_mos.loss.backward()
    for name, layer in layers.items():
        pool = layer.pool("default")
        g_a = pool.A["default"].grad[layer.mos_index_A["default"]]
        g_b = pool.B["default"].grad[layer.mos_index_B["default"]].t()
        torch.testing.assert_close(g_a, lora_layers[name].lora_A["default"].weight.grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(g_b, lora_layers[name].lora_B["default"].weight.grad, rtol=0, atol=1e-6)
