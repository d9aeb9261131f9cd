"""Every method exports to a plain LoRA adapter that stock PEFT runs with the same logits; native checkpoints
round-trip; the tied pools are saved once."""

import copy
import json

import peft
import pytest
import torch
from baselines_helpers import ALL_PROJ, METHODS, adapted, tuner_layers
from safetensors.torch import load_file

from open_instruct.export import main as export_main
from open_instruct.lowrank import export_lora


def _batch(tokenizer):
    return tokenizer(["The quick brown fox", "Answer: B is right"], return_tensors="pt", padding=True)


def _one_step(model, batch):
    """One SGD step, checking that every trainable tensor (and nothing else) receives a gradient."""
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.grad is not None for p in trainable.values())
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    with torch.no_grad():
        for p in trainable.values():
            p -= 0.05 * p.grad
            p.grad = None


def _trained(tiny_llama, tiny_tokenizer, method):
    """(an untouched copy of the base, the adapted model after one step, a batch, its logits)."""
    base_copy = copy.deepcopy(tiny_llama)  # (test_delta_weights covers the three architectures)
    model = adapted(tiny_llama, method)
    batch = _batch(tiny_tokenizer)
    _one_step(model, batch)
    model.eval()
    with torch.no_grad():
        ref = model(**batch).logits
    return base_copy, model, batch, ref


@pytest.mark.parametrize("method", METHODS)
def test_export_gives_same_logits_in_stock_peft(tiny_llama, tiny_tokenizer, tmp_path, method):
    base_copy, model, batch, ref = _trained(tiny_llama, tiny_tokenizer, method)
    export_lora(model, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    r = model.peft_config["default"].r
    assert cfg["peft_type"] == "LORA" and cfg["r"] == r and sorted(cfg["target_modules"]) == sorted(ALL_PROJ)
    # VeRA has no α/r scaling: scaling 1 is lora_alpha = r. The others keep their own lora_alpha.
    assert cfg["lora_alpha"] == (r if method == "vera" else 16) and not cfg["rank_pattern"]
    lora = peft.PeftModel.from_pretrained(base_copy, tmp_path)
    assert type(lora.peft_config["default"]) is peft.LoraConfig
    with torch.no_grad():
        out = lora(**batch).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["tied_lora", "prolora"])
def test_native_checkpoint_round_trip(tiny_llama, tiny_tokenizer, tmp_path, method):
    base_copy, model, batch, ref = _trained(tiny_llama, tiny_tokenizer, method)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(v.numel() for v in state.values()) == model.get_nb_trainable_parameters()[0]
    if method == "tied_lora":  # one A and one B per module type, stored once; u and v per layer
        pools = sorted(k for k in state if ".shared_pools." in k)
        assert pools == sorted(f"base_model.shared_pools.{t}.{ab}" for t in ALL_PROJ for ab in "AB")
    loaded = peft.PeftModel.from_pretrained(base_copy, tmp_path, is_trainable=True)
    assert type(loaded.peft_config["default"]).__name__ == {"tied_lora": "TiedLoRAConfig",
                                                           "prolora": "ProLoRAConfig"}[method]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, ref, rtol=0, atol=0)
    assert loaded.get_nb_trainable_parameters() == model.get_nb_trainable_parameters()


def test_export_cli_on_a_saved_prolora_adapter(tiny_checkpoint, tiny_tokenizer, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    model = adapted(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), "prolora")
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        ref = model(**batch).logits
    model.save_pretrained(tmp_path / "native")
    assert export_main(["--base_model", str(tiny_checkpoint), "--adapter", str(tmp_path / "native"),
                        "--output_dir", str(tmp_path / "lora")]) == 0
    assert "plain LoRA adapter written" in capsys.readouterr().out
    lora = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_checkpoint), tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(lora(**batch).logits, ref, rtol=0, atol=1e-5)


def test_mixed_ranks_fold_scaling_into_b(tiny_llama, tiny_tokenizer, tmp_path):
    """Layers of different rank/scaling: scaling folded into B, lora_alpha = r, rank_pattern for the odd ones."""
    base_copy = copy.deepcopy(tiny_llama)
    model = peft.get_peft_model(tiny_llama, peft.LoraConfig(r=4, lora_alpha=16, target_modules=ALL_PROJ,
                                                            init_lora_weights=False, rank_pattern={"q_proj": 2},
                                                            alpha_pattern={"q_proj": 3}))
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        ref = model(**batch).logits
    export_lora(model, tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 4 and set(cfg["rank_pattern"].values()) == {2}
    assert len(cfg["rank_pattern"]) == tiny_llama.config.num_hidden_layers and cfg["alpha_pattern"] == cfg["rank_pattern"]
    lora = peft.PeftModel.from_pretrained(base_copy, tmp_path)
    assert {m.r["default"] for n, m in tuner_layers(lora).items() if n.endswith("q_proj")} == {2}
    with torch.no_grad():
        torch.testing.assert_close(lora(**batch).logits, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["tied_lora", "prolora"])
def test_merge_unmerge_disable(tiny_llama, tiny_tokenizer, method):
    batch = _batch(tiny_tokenizer)
    with torch.no_grad():
        plain = tiny_llama(**batch).logits
        model = adapted(tiny_llama, method)
        adapter_out = model(**batch).logits
        assert (adapter_out - plain).abs().max() > 1e-3
        with model.disable_adapter():
            torch.testing.assert_close(model(**batch).logits, plain, rtol=0, atol=1e-6)
        model.merge_adapter()
        torch.testing.assert_close(model(**batch).logits, adapter_out, rtol=0, atol=1e-5)
        model.unmerge_adapter()
        torch.testing.assert_close(model(**batch).logits, adapter_out, rtol=0, atol=1e-5)
        merged = model.merge_and_unload()
        assert not any("tied_lora" in n or "prolora" in n or "shared_pools" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**batch).logits, adapter_out, rtol=0, atol=1e-5)
