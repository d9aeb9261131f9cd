"""Training touches only the pools; save/load is bit-exact and compact; export is a stock PEFT LoRA adapter."""

import json
import subprocess
import sys
import textwrap

import peft
import torch
from mos_helpers import mos_layers, mos_model
from safetensors.torch import load_file

from open_instruct.mos import export_lora, mos_report
from open_instruct.tiny import build_tiny_model


def _train(model, tok, steps=3, lr=1e-2):
    batch = tok(["The quick brown fox jumps", "Answer: Paris is the capital"], return_tensors="pt", padding=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return batch


def test_only_pools_train_and_layers_follow_pools(tiny_model, tiny_tokenizer):
    model = mos_model(tiny_model, r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2,
                      init_lora_A_vec_std=0.3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".shared_pools." in n for n in trainable)
    _train(model, tiny_tokenizer)
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in trainable), n
    for layer in mos_layers(model).values():
        a, b = layer.lora_factors("default")
        expect_a, expect_b = _factors_shard_by_shard(layer)
        torch.testing.assert_close(a, expect_a, rtol=0, atol=0)
        torch.testing.assert_close(b, expect_b, rtol=0, atol=0)
        assert torch.count_nonzero(b) > 0


def _factors_shard_by_shard(layer, adapter="default", c=2):
    """A and B built the paper's way, one rank vector at a time: vector j is the concatenation of the c shards
    idx[j·c], ..., idx[j·c + c − 1] of the pool; A's rows are scaled by vec (no gather, no view)."""
    pool, r = layer.pool(adapter), layer.r[adapter]
    ia, ib, vec = layer.mos_index_A[adapter].tolist(), layer.mos_index_B[adapter].tolist(), layer.mos_vec[adapter]
    rows_a = [torch.cat([pool.A[adapter][ia[j * c + k]] for k in range(c)]) * vec[j] for j in range(r)]
    cols_b = [torch.cat([pool.B[adapter][ib[j * c + k]] for k in range(c)]) for j in range(r)]
    return torch.stack(rows_a), torch.stack(cols_b, dim=1)


def test_save_load_bit_exact_and_pools_once(tiny_model, tiny_tokenizer, tmp_path):
    arch = tiny_model.config.model_type
    model = mos_model(tiny_model, r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2)
    batch = _train(model, tiny_tokenizer)
    with torch.no_grad():
        ref = model(**batch).logits
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "adapter_model.safetensors")
    pool_keys = sorted(k for k in state if ".shared_pools." in k)
    types = {k.split(".shared_pools.")[1].split(".")[0] for k in pool_keys}
    assert len(pool_keys) == 2 * len(types) == 2 * 7  # each pool exactly once
    report = mos_report(model)
    assert sum(state[k].numel() for k in pool_keys) == report.trainable_params
    assert all(state[k].dtype == torch.int8 for k in state if ".mos_index_" in k)  # compact indices
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "MOS" and cfg["seed"] == 0 and cfg["valid_param_lora_r"] == 2

    fresh = build_tiny_model(arch, tokenizer=tiny_tokenizer, seed=0)
    loaded = peft.PeftModel.from_pretrained(fresh, tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        out = loaded(**batch).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    a, b = mos_layers(model), mos_layers(loaded)
    for n in a:
        assert torch.equal(a[n].mos_index_A["default"], b[n].mos_index_A["default"])
        assert torch.equal(a[n].mos_index_B["default"], b[n].mos_index_B["default"])
    trainable_again = peft.PeftModel.from_pretrained(build_tiny_model(arch, tokenizer=tiny_tokenizer), tmp_path,
                                                     is_trainable=True)
    assert {n for n, p in trainable_again.named_parameters() if p.requires_grad}


def test_export_loads_in_stock_peft_without_project_code(tiny_model, tiny_tokenizer, tmp_path):
    base_dir, lora_dir = tmp_path / "base", tmp_path / "lora"
    tiny_model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    model = mos_model(tiny_model, r=4, valid_param_lora_r=3, valid_param_private_r=1, num_chunk_per_vec=2,
                      init_lora_A_vec_std=0.5)
    batch = _train(model, tiny_tokenizer)
    with torch.no_grad():
        ref = model(**batch).logits
    export_lora(model, lora_dir)
    torch.save(dict(batch), tmp_path / "batch.pt")
    script = textwrap.dedent(f"""
        import sys, torch, peft
        from transformers import AutoModelForCausalLM
        base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r})
        model = peft.PeftModel.from_pretrained(base, {str(lora_dir)!r})
        assert type(model.peft_config["default"]).__name__ == "LoraConfig"
        assert not any(m.startswith("open_instruct") for m in sys.modules), "project code was imported"
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        with torch.no_grad():
            torch.save(model(**batch).logits, {str(tmp_path / "out.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    out = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    cfg = json.loads((lora_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 16
    assert sorted(cfg["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                    "up_proj", "down_proj"])


def test_merge_unmerge_disable(tiny_llama, tiny_tokenizer):
    batch = tiny_tokenizer(["hello world"], return_tensors="pt")
    with torch.no_grad():
        base_out = tiny_llama(**batch).logits.clone()
    model = mos_model(tiny_llama, init_weights=False)
    with torch.no_grad():
        out = model(**batch).logits
        assert (out - base_out).abs().max() > 1e-4
        with model.disable_adapter():
            torch.testing.assert_close(model(**batch).logits, base_out, rtol=0, atol=0)
        model.merge_adapter()
        torch.testing.assert_close(model(**batch).logits, out, rtol=0, atol=1e-5)
        model.unmerge_adapter()
        torch.testing.assert_close(model(**batch).logits, out, rtol=0, atol=1e-5)
        merged = model.merge_and_unload()
        assert not mos_layers(merged)
        torch.testing.assert_close(merged(**batch).logits, out, rtol=0, atol=1e-5)
