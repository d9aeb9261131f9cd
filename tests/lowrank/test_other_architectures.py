"""The sharing methods on architectures other than the Llama family the rest of the suite uses.

Fused attention projections (GPT-NeoX ``query_key_value``, Falcon multi-query, Phi-3 ``qkv_proj`` and
``gate_up_proj``), biases and ``fc1``/``fc2`` names (OPT), ALiBi (BLOOM), and Gemma-2's soft-capped logits.
Each adapter is built the way a user would (``target_modules="all-linear"``, or LoRA then
``share_lora_chunkwisely``), randomised so that every ΔW is non-zero, and checked against an independent
reference: the exported adapter loaded by stock PEFT onto a fresh copy of the base model must give the same
logits, and the adapted model must differ from the base.
"""

import peft
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from open_instruct.lowrank.export import export_lora
from open_instruct.methods import adapter_config
from open_instruct.mos.convert import share_lora_chunkwisely
from open_instruct.mos.layer import MoSLinear

WIDTH, LAYERS, VOCAB = 48, 3, 96
ARCHS = {
    "gpt_neox": dict(hidden_size=WIDTH, intermediate_size=80, num_hidden_layers=LAYERS, num_attention_heads=4),
    "falcon": dict(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=4),
    "opt": dict(hidden_size=WIDTH, ffn_dim=80, num_hidden_layers=LAYERS, num_attention_heads=4,
                word_embed_proj_dim=WIDTH),
    "phi3": dict(hidden_size=WIDTH, intermediate_size=80, num_hidden_layers=LAYERS, num_attention_heads=4,
                 num_key_value_heads=2, pad_token_id=0),
    "bloom": dict(hidden_size=WIDTH, n_layer=LAYERS, n_head=4),
    "gemma2": dict(hidden_size=WIDTH, intermediate_size=80, num_hidden_layers=LAYERS, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=12),
}
# r=4 from a pool of e=3 vectors per layer (p=1 private), 2 shards per vector: fits 3 layers of any width above
SETTINGS = {
    "mos": dict(r=4, valid_param_lora_r=3, valid_param_private_r=1, num_chunk_per_vec=2),
    "tied_lora": dict(r=4),
    "prolora": dict(r=4, valid_param_private_r=1, num_chunk_per_vec=2),
}


def base_model(arch: str):
    torch.manual_seed(0)
    config = AutoConfig.for_model(arch, vocab_size=VOCAB, **ARCHS[arch])
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def randomise(model, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def assert_exports_exactly(model, arch: str, tmp_path):
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    adapted = model(input_ids=ids).logits
    export_lora(model, tmp_path / "lora")
    fresh = base_model(arch)
    base = fresh(input_ids=ids).logits
    served = peft.PeftModel.from_pretrained(fresh, tmp_path / "lora").eval()
    assert type(served.peft_config["default"]) is peft.LoraConfig
    torch.testing.assert_close(served(input_ids=ids).logits, adapted, rtol=0, atol=1e-5)
    assert (adapted - base).abs().max() > 1e-2  # the adapter does something, so the comparison above can fail


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("method", list(SETTINGS))
def test_native_config_exports_to_plain_lora(arch, method, tmp_path):
    model = peft.get_peft_model(base_model(arch), adapter_config(method, seed=0, **SETTINGS[method]))
    randomise(model)
    assert_exports_exactly(model, arch, tmp_path)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_share_lora_chunkwisely_after_lora(arch, tmp_path):
    lora = peft.get_peft_model(base_model(arch), peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    lora_targets = {n for n, m in lora.named_modules() if hasattr(m, "lora_A")}
    model = share_lora_chunkwisely(lora, dict(lora_r=4, valid_param_lora_r=3, valid_param_private_r=1,
                                              num_chunk_per_vec=2))
    mos_targets = {n for n, m in model.named_modules() if isinstance(m, MoSLinear)}
    assert lora_targets and mos_targets == lora_targets  # every layer LoRA adapted is now MoS, and no other
    randomise(model)
    assert_exports_exactly(model, arch, tmp_path)
