"""Parameter accounting on the meta device: the paper's LLaMA-2-7B budgets, PRoLoRA's and Tied-LoRA's formulas."""

import copy
import json

import peft
import pytest
from baselines_helpers import ALL_PROJ, tuner_layers

from open_instruct import param_table
from open_instruct.baselines import ProLoRAConfig, TiedLoRAConfig
from open_instruct.param_table import Row, measure

LLAMA2_7B_LORA_PER_RANK = 2_498_560
# (in, out) of the seven projections of LLaMA-2-7B, and its 32 layers.
LLAMA2_7B_SHAPES = {"q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
                    "gate_proj": (4096, 11008), "up_proj": (4096, 11008), "down_proj": (11008, 4096)}


@pytest.fixture(scope="module")
def llama2_7b():
    return param_table.load_model_config("llama2-7b")


def test_llama2_7b_paper_budgets_on_meta(llama2_7b):
    lora1 = measure(llama2_7b, Row("lora", 1))
    assert lora1.trainable == LLAMA2_7B_LORA_PER_RANK == lora1.lora_per_rank
    assert measure(llama2_7b, Row("lora", 2)).trainable == 4_997_120
    vera = measure(llama2_7b, Row("vera", 256))
    assert vera.trainable == 1_417_216 and not vera.error
    # VeRA's checkpoint also holds its frozen projections A (256 × 11008) and B (11008 × 256).
    assert vera.checkpoint_bytes == (1_417_216 + 2 * 256 * 11008) * 4
    mos = measure(llama2_7b, Row("mos", 8, p=1, e=2, c=4))
    assert mos.trainable == 2 * LLAMA2_7B_LORA_PER_RANK and mos.equivalent_rank == 2


def test_prolora_count_formula_on_llama2_7b(llama2_7b):
    r, u, m = 8, 1, 4
    per_module = {t: u * (i + o) + (r - u) * (i // m + o // m) for t, (i, o) in LLAMA2_7B_SHAPES.items()}
    entry = measure(llama2_7b, Row("prolora", r, p=u, c=m))
    assert entry.trainable == 32 * sum(per_module.values()) == 6_871_040  # 2.75 LoRA ranks
    cfg = ProLoRAConfig(r=r, unshared_r=u, reduce_lora_A_x=m, reduce_lora_B_x=m)
    assert all(cfg.trainable_params(i, o) == per_module[t] for t, (i, o) in LLAMA2_7B_SHAPES.items())
    # u = 0 and m = n = 4 at r = 8 is exactly the budget of LoRA r = 2.
    assert measure(llama2_7b, Row("prolora", 8, p=0, c=4)).trainable == 4_997_120


def test_tied_lora_count_formula_on_llama2_7b(llama2_7b):
    r, layers = 8, 32
    # per module type: the tied A (r × in) and B (out × r), plus per layer u (r) and v (out)
    by_hand = sum(r * (i + o) + layers * (r + o) for i, o in LLAMA2_7B_SHAPES.values())
    assert measure(llama2_7b, Row("tied_lora", r)).trainable == by_hand == 1_986_304
    assert sum(TiedLoRAConfig.trainable_params(r, i, o, layers) for i, o in LLAMA2_7B_SHAPES.values()) == by_hand


@pytest.mark.parametrize("r,u,m,n", [(5, 1, 4, 2), (4, 0, 2, 2), (3, 3, 1, 1), (6, 2, 8, 4)])
def test_prolora_count_per_module_on_a_tiny_model(tiny_model, r, u, m, n):
    if tiny_model.config.hidden_size % 8 and m == 8:
        pytest.skip("m must divide the input size")
    model = peft.get_peft_model(copy.deepcopy(tiny_model), ProLoRAConfig(r=r, unshared_r=u, reduce_lora_A_x=m,
                                                                         reduce_lora_B_x=n, target_modules=ALL_PROJ))
    for path, layer in tuner_layers(model).items():
        params = sum(p.numel() for name, p in layer.named_parameters() if "base_layer" not in name)
        i, o = layer.in_features, layer.out_features
        assert params == u * (i + o) + (r - u) * (i // m + o // n), path
    assert model.get_nb_trainable_parameters()[0] == sum(
        u * (x.in_features + x.out_features) + (r - u) * (x.in_features // m + x.out_features // n)
        for x in tuner_layers(model).values())


def test_param_table_cli(capsys, tmp_path, tiny_checkpoint):
    assert param_table.main(["--model", "llama2-7b", "--rows", "lora r=2", "vera r=256", "prolora r=8 u=1 m=3",
                             "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "LoRA parameters per unit rank on the targets: 2,498,560" in out
    assert "4,997,120" in out and "1,417,216" in out and "reduce_lora_A_x (3) must divide" in out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["trainable"] for r in rows] == [4_997_120, 1_417_216, 0] and rows[2]["error"]
    # a local checkpoint directory (config.json only is read) and the --r sweep over all methods
    assert param_table.main(["--model", str(tiny_checkpoint), "--r", "2", "--p", "1", "--e", "2", "--c", "2"]) == 0
    out = capsys.readouterr().out
    assert all(m in out for m in ("lora", "vera", "tied_lora", "prolora", "mos")) and "n/a" not in out
    assert param_table.main(["--model", "nonexistent-model"]) == 2
    assert "neither a preset" in capsys.readouterr().err


def test_nothing_is_materialised_on_meta(llama2_7b):
    """Every adapter tensor of every method stays on the meta device (counting allocates no weights)."""
    from open_instruct.methods import adapter_config

    for method, kw in [("vera", {}), ("tied_lora", {}), ("prolora", dict(num_chunk_per_vec=4)),
                       ("mos", dict(valid_param_lora_r=2, num_chunk_per_vec=4))]:
        model = peft.get_peft_model(param_table.meta_model(llama2_7b), adapter_config(method, r=8, seed=0, **kw))
        adapter_buffers = [b for n, b in model.named_buffers() if "mos_" in n or "vera_" in n]
        devices = {p.device.type for p in model.parameters()} | {b.device.type for b in adapter_buffers}
        assert devices == {"meta"}, (method, devices)


# ------------------------------------------------------------------------------------------------- bad inputs
def test_unknown_lora_module_is_named(capsys):
    assert param_table.main(["--model", "llama2-7b", "--rows", "lora r=2", "--lora_modules", "q_proj,foo_proj"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("param_table: error: --lora_modules: foo_proj names no linear module of this model")
    assert "q_proj" in err.split("its linear modules are")[1] and "\n" not in err


def test_a_row_that_cannot_fit_says_why_and_the_per_rank_count_stays(capsys):
    assert param_table.main(["--model", "llama2-7b", "--rows", "mos r=2 e=1 p=0 c=3"]) == 0
    out = capsys.readouterr().out
    assert f"LoRA parameters per unit rank on the targets: {LLAMA2_7B_LORA_PER_RANK:,}" in out
    assert "n/a: num_chunk_per_vec (c=3) must divide every target's input and output size" in out


@pytest.mark.parametrize(("hub_id", "preset"), [("meta-llama/Llama-2-7b-hf", "llama2-7b"),
                                                ("meta-llama/Llama-3.2-3B-Instruct", "llama3.2-3b")])
def test_preset_hub_ids_work_offline(monkeypatch, hub_id, preset):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert param_table.load_model_config(hub_id).to_dict() == param_table.load_model_config(preset).to_dict()


def test_other_hub_ids_fetch_only_config_json(monkeypatch, tmp_path, capsys):
    import huggingface_hub

    param_table.load_model_config("llama2-7b").save_pretrained(tmp_path)
    asked = []

    def fake_download(repo_id, filename, **kw):
        asked.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert param_table.load_model_config("someorg/some-llama").num_hidden_layers == 32
    assert asked == [("someorg/some-llama", "config.json")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert param_table.main(["--model", "someorg/some-llama"]) == 2
    assert "the model hub is off (HF_HUB_OFFLINE)" in capsys.readouterr().err
