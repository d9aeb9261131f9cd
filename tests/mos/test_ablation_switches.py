"""The ablation switches (docs/ABLATIONS.md) change the index lists in the intended way, and only that way."""

import copy
import json

import peft
import pytest
import torch
from mos_helpers import mos_layers, mos_model

from open_instruct.mos import export_lora
from open_instruct.mos.routing import build_index_lists


def _private(layer, L, e, p, c):
    p0 = (e - p) * L * c
    return list(range(p0 + layer * p * c, p0 + (layer + 1) * p * c))


def _draw(g, L, e, p, c, n):
    return torch.randperm((e - p) * L * c, generator=g)[:n].tolist()


CASES = [(3, 2, 1, 2, 4), (8, 4, 2, 4, 6), (5, 3, 0, 1, 5)]


@pytest.mark.parametrize("r,e,p,c,L", CASES)
def test_full_method_is_the_reference_construction(r, e, p, c, L):
    """Default switches: per layer, A = randperm draw + private, then B = next draw + private."""
    lists = build_index_lists(L, r, e, p, c, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    for layer, (ia, ib) in enumerate(lists):
        assert ia.tolist() == _draw(g, L, e, p, c, (r - p) * c) + _private(layer, L, e, p, c)
        assert ib.tolist() == _draw(g, L, e, p, c, (r - p) * c) + _private(layer, L, e, p, c)


@pytest.mark.parametrize("r,e,p,c,L", CASES)
def test_without_subset_selection_every_layer_shares_one_draw(r, e, p, c, L):
    full = build_index_lists(L, r, e, p, c, torch.Generator().manual_seed(5))
    lists = build_index_lists(L, r, e, p, c, torch.Generator().manual_seed(5), subset_selection=False)
    n = (r - p) * c
    # layer 0 is drawn exactly as in the full method (A's draw, then B's) ...
    assert torch.equal(lists[0][0], full[0][0]) and torch.equal(lists[0][1], full[0][1])
    for layer, (ia, ib) in enumerate(lists):
        # ... and every layer reuses it for its shared part, keeping its own private shards
        assert ia[:n].tolist() == full[0][0][:n].tolist() and ib[:n].tolist() == full[0][1][:n].tolist()
        assert ia[n:].tolist() == ib[n:].tolist() == _private(layer, L, e, p, c)
    assert not torch.equal(lists[0][0][:n], lists[0][1][:n])  # pairs still dissociated
    assert any(not torch.equal(full[k][0][:n], full[0][0][:n]) for k in range(1, L))  # the full method differs


@pytest.mark.parametrize("r,e,p,c,L", CASES)
def test_without_pair_dissociation_b_is_a(r, e, p, c, L):
    lists = build_index_lists(L, r, e, p, c, torch.Generator().manual_seed(5), pair_dissociation=False)
    g = torch.Generator().manual_seed(5)
    for layer, (ia, ib) in enumerate(lists):
        assert torch.equal(ia, ib)
        assert ia.tolist() == _draw(g, L, e, p, c, (r - p) * c) + _private(layer, L, e, p, c)  # no B draws
    n = (r - p) * c
    assert any(not torch.equal(lists[k][0][:n], lists[0][0][:n]) for k in range(1, L))  # subset selection kept


def test_switches_reach_the_model_are_saved_and_export_exactly(tiny_llama, tmp_path):
    full = mos_layers(mos_model(copy.deepcopy(tiny_llama), seed=3))
    model = mos_model(copy.deepcopy(tiny_llama), seed=3, subset_selection=False, pair_dissociation=False)
    layers = mos_layers(model)
    n = (3 - 1) * 2
    for name, layer in layers.items():
        ia, ib = layer.mos_index_A["default"], layer.mos_index_B["default"]
        assert torch.equal(ia, ib)
        twin = next(m for k, m in layers.items() if k.split(".")[-1] == name.split(".")[-1])
        assert torch.equal(ia[:n], twin.mos_index_A["default"][:n])
    assert any(not torch.equal(full[k].mos_index_B["default"], full[k].mos_index_A["default"]) for k in full)
    for pool in model.base_model.shared_pools.values():  # make ΔW non-zero so the export check means something
        for param in pool.parameters():
            torch.nn.init.normal_(param, std=0.1)
    model.save_pretrained(tmp_path / "mos")
    saved = json.loads((tmp_path / "mos" / "adapter_config.json").read_text())
    assert saved["subset_selection"] is False and saved["pair_dissociation"] is False
    batch = {"input_ids": torch.tensor([[1, 5, 9, 4, 7]])}
    with torch.no_grad():
        ref = model(**batch).logits
        reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(tiny_llama), tmp_path / "mos")
        torch.testing.assert_close(reloaded(**batch).logits, ref, rtol=0, atol=0)
        export_lora(model, tmp_path / "lora")
        lora = peft.PeftModel.from_pretrained(copy.deepcopy(tiny_llama), tmp_path / "lora")
        torch.testing.assert_close(lora(**batch).logits, ref, rtol=0, atol=1e-5)


def test_trainer_flags_reach_the_config(tmp_path):
    from open_instruct.finetune_trainer import UsageError, method_config, parse_args, validate_args

    train = tmp_path / "t.jsonl"
    train.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    base = ["--model_name_or_path", "x", "--train_file", str(train), "--output_dir", str(tmp_path / "o"),
            "--lora_r", "8", "--valid_param_lora_r", "2", "--valid_param_private_r", "1", "--num_chunk_per_vec", "4"]
    model_args, data_args, ad, tr = parse_args([*base, "--mos_pair_dissociation", "False"])
    cfg = method_config(ad, seed=0)
    assert cfg.pair_dissociation is False and cfg.subset_selection is True
    validate_args(model_args, data_args, ad, tr)
    model_args, data_args, ad, tr = parse_args([*base, "--ft_mode", "lora", "--mos_subset_selection", "False"])
    with pytest.raises(UsageError, match="MoS ablation switches"):
        validate_args(model_args, data_args, ad, tr)
