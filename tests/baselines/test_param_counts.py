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
    r = 8
    expected = sum(TiedLoRAConfig.trainable_params(r, i, o, 32) for i, o in LLAMA2_7B_SHAPES.values())
    assert measure(llama2_7b, Row("tied_lora", r)).trainable == expected == 1_986_304


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
