"""Parameter accounting (meta-device LLaMA-2-7B and tiny models), validation errors, PEFT registration."""

import copy

import peft
import pytest
import torch
from accelerate import init_empty_weights
from mos_helpers import ALL_PROJ, mos_layers, mos_model
from peft.utils import PeftType
from transformers import AutoModelForCausalLM, LlamaConfig

from open_instruct.mos import MoSConfig, mos_report, share_lora_chunkwisely
from open_instruct.tiny import build_tiny_model

LLAMA2_7B = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32, vocab_size=32000)
LLAMA2_7B_LORA_PER_RANK = 2_498_560


def _meta_llama2_7b():
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(LLAMA2_7B)


def _lora_trainable(model, r):
    return peft.get_peft_model(model, peft.LoraConfig(r=r, target_modules=ALL_PROJ)).get_nb_trainable_parameters()[0]


def test_llama2_7b_counts_on_meta_device():
    assert _lora_trainable(_meta_llama2_7b(), 1) == LLAMA2_7B_LORA_PER_RANK  # PEFT's own LoRA as the reference
    assert _lora_trainable(_meta_llama2_7b(), 64) == 159_907_840
    for r, e, p, c in [(2, 1, 0, 1), (4, 2, 1, 4), (16, 8, 2, 4)]:
        model = mos_model(_meta_llama2_7b(), r=r, valid_param_lora_r=e, valid_param_private_r=p, num_chunk_per_vec=c)
        trainable, _ = model.get_nb_trainable_parameters()
        assert trainable == LLAMA2_7B_LORA_PER_RANK * e, (r, e, p, c)
        report = mos_report(model)
        assert report.lora_params_per_rank == LLAMA2_7B_LORA_PER_RANK and report.equivalent_lora_rank == e
        assert report.checkpoint_bytes < report.dense_lora_bytes or r == e


def test_default_config_has_the_papers_small_budget(tiny_tokenizer):
    """MoSConfig() is r=8 e=2 p=1 c=4: e x LoRA's parameters per rank, i.e. LoRA r=2's, the paper's ~5M budget on
    LLaMA-2-7B (counted by PEFT's own LoRA); it needs 7 layers, and on fewer the error names the fix."""
    config = MoSConfig()
    assert (config.r, config.valid_param_lora_r, config.valid_param_private_r, config.num_chunk_per_vec) == (8, 2, 1, 4)
    model = peft.get_peft_model(_meta_llama2_7b(), config)
    assert model.get_nb_trainable_parameters()[0] == _lora_trainable(_meta_llama2_7b(), 2) == 4_997_120
    assert {layer.r["default"] for layer in mos_layers(model).values()} == {8}
    with pytest.raises(ValueError, match=r"\(r-p\)·c = \(8-1\)·4 = 28 distinct shared shards but the pool has only "
                                         r"\(e-p\)·L·c = \(2-1\)·2·4 = 8. Raise valid_param_lora_r"):
        peft.get_peft_model(build_tiny_model("llama", tokenizer=tiny_tokenizer), MoSConfig())


@pytest.mark.parametrize("e", [1, 2])
def test_tiny_counts_match_lora_per_rank(tiny_model, e):
    per_rank = _lora_trainable(copy.deepcopy(tiny_model), 1)
    model = mos_model(tiny_model, r=2, valid_param_lora_r=e, valid_param_private_r=e - 1, num_chunk_per_vec=2)
    assert model.get_nb_trainable_parameters()[0] == per_rank * e
    assert mos_report(model).equivalent_lora_rank == e


@pytest.mark.parametrize(
    "kw,needle",
    [
        (dict(r=0), "r must be a positive integer"),
        (dict(valid_param_lora_r=0), "valid_param_lora_r must be a positive integer"),
        (dict(num_chunk_per_vec=-1), "num_chunk_per_vec must be a positive integer"),
        (dict(valid_param_private_r=-1), "valid_param_private_r must be an integer >= 0"),
        (dict(valid_param_lora_r=2, valid_param_private_r=3, r=4), "must be <= valid_param_lora_r"),
        (dict(r=2, valid_param_lora_r=4, valid_param_private_r=3), "must be <= r"),
        (dict(r=4, valid_param_lora_r=2, valid_param_private_r=2), "so r must equal e (plain LoRA); got r=4"),
        (dict(bias="all"), "bias='all' is not supported"),
        (dict(lora_dropout=1.5), "lora_dropout must be in [0, 1)"),
        (dict(init_lora_A_vec_std=-1.0), "init_lora_A_vec_std must be >= 0"),
    ],
)
def test_invalid_configs_raise_value_error(kw, needle):
    base = dict(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=1)
    base.update(kw)
    with pytest.raises(ValueError) as err:
        MoSConfig(**base)
    assert needle in str(err.value)


def test_model_dependent_validation(tiny_tokenizer):
    llama = build_tiny_model("llama", tokenizer=tiny_tokenizer)  # hidden 64, intermediate 128, 2 layers
    with pytest.raises(ValueError, match=r"num_chunk_per_vec \(c=3\) must divide"):
        mos_model(copy.deepcopy(llama), num_chunk_per_vec=3)
    with pytest.raises(ValueError, match=r"\(r-p\)·c = \(5-1\)·1 = 4 distinct shared shards but the pool has only"):
        mos_model(copy.deepcopy(llama), r=5, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=1)


class _Block(torch.nn.Module):
    def __init__(self, width_in, width_out):
        super().__init__()
        self.proj = torch.nn.Linear(width_in, width_out)

    def forward(self, x):
        return self.proj(x)


class _MixedWidths(torch.nn.Module):
    """A stack whose layers' ``proj`` differ in output width (8 -> 8, then 8 -> 16): one type, two shapes."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([_Block(8, 8), _Block(8, 16)])

    def forward(self, x):
        return self.layers[1](self.layers[0](x))


def test_one_module_type_of_two_shapes_is_refused():
    model = _MixedWidths()
    with pytest.raises(ValueError) as err:
        peft.get_peft_model(model, MoSConfig(r=2, valid_param_lora_r=2, valid_param_private_r=1,
                                             target_modules=["proj"], seed=0))
    assert str(err.value) == (
        "MoS shares parameters per module type, but the modules of type 'proj' differ in shape "
        "(layers.0.proj: in=8 out=8, layers.1.proj: in=8 out=16). Exclude the odd ones (exclude_modules) or "
        "target types of one shape.")
    assert all(type(block.proj) is torch.nn.Linear for block in model.layers)  # left as it was


def test_module_types_discovered_per_architecture(tiny_model):
    model = mos_model(tiny_model, target_modules="all-linear")
    layers = mos_layers(model)
    types = {layer.mos_type_key["default"] for layer in layers.values()}
    assert types == set(ALL_PROJ)
    assert len(layers) == 7 * tiny_model.config.num_hidden_layers  # lm_head is not a target of all-linear
    for key, pool in model.base_model.shared_pools.items():
        n_layers = sum(1 for m in layers.values() if m.mos_type_key["default"] == key)
        assert pool.A["default"].shape == (2 * n_layers * 2, pool.in_features // 2)  # e·L·c x in/c


def test_share_lora_chunkwisely_one_liner(tiny_model):
    lora = peft.get_peft_model(tiny_model, peft.LoraConfig(r=5, lora_alpha=32, lora_dropout=0.05,
                                                          target_modules=ALL_PROJ))

    class ChunkConfig:  # any object with the four fields, as in the original
        lora_r, valid_param_lora_r, valid_param_private_r, num_chunk_per_vec = 5, 3, 1, 2

    model = share_lora_chunkwisely(lora, ChunkConfig())
    cfg = model.peft_config["default"]
    assert cfg.peft_type == PeftType.MOS and (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (5, 32, 0.05)
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in model.modules())
    assert len(mos_layers(model)) == 7 * tiny_model.config.num_hidden_layers
    per_rank = sum(m.in_features + m.out_features for m in mos_layers(model).values())
    assert model.get_nb_trainable_parameters()[0] == 3 * per_rank
    assert model.chunk_config is cfg
    with pytest.raises(ValueError, match="missing num_chunk_per_vec"):
        share_lora_chunkwisely(peft.get_peft_model(build_tiny_model("llama"), peft.LoraConfig(target_modules=ALL_PROJ)),
                               {"lora_r": 4, "valid_param_lora_r": 2, "valid_param_private_r": 1})


def test_peft_type_registration_guard():
    import open_instruct.mos  # noqa: F401

    assert "MOS" in PeftType.__members__ and PeftType("MOS") is PeftType.MOS and PeftType["MOS"] is PeftType.MOS
    assert "MOS" in list(PeftType) and PeftType.MOS == "MOS"
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.MOS] is MoSConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.MOS].__name__ == "MoSModel"
    cfg = peft.PeftConfig.from_peft_type(peft_type="MOS", r=4, valid_param_lora_r=2, valid_param_private_r=1)
    assert isinstance(cfg, MoSConfig)


def test_vec_scaling_is_frozen_and_applied(tiny_llama):
    model = mos_model(tiny_llama, init_lora_A_vec_value=1.0, init_lora_A_vec_std=0.3, init_weights=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any("mos_vec" in n for n in trainable)  # vec is not trained ...
    saved = {n: layer.mos_vec["default"].clone() for n, layer in mos_layers(model).items()}
    loss = model(input_ids=torch.arange(8)[None]).logits.square().mean()
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    for n, layer in mos_layers(model).items():  # ... and a step leaves it as it was
        assert torch.equal(layer.mos_vec["default"], saved[n])
    for layer in mos_layers(model).values():
        vec = layer.mos_vec["default"]
        assert vec.std() > 0
        pool = layer.pool("default")
        a_raw = pool.A["default"][layer.mos_index_A["default"]].reshape(layer.r["default"], -1)
        b_raw = pool.B["default"][layer.mos_index_B["default"]].reshape(layer.r["default"], -1).t()
        expect = (b_raw.double() @ torch.diag(vec.double()) @ a_raw.double()) * (16 / 3)
        torch.testing.assert_close(layer.get_delta_weight("default").double(), expect, rtol=0, atol=1e-6)


def test_rejected_config_leaves_models_untouched(tiny_llama, tiny_tokenizer):
    batch = tiny_tokenizer(["hello world"], return_tensors="pt")
    with torch.no_grad():
        before = tiny_llama(**batch).logits
    with pytest.raises(ValueError, match="num_chunk_per_vec"):
        mos_model(tiny_llama, num_chunk_per_vec=3)  # 64 is not divisible by 3: found only after injection
    assert not mos_layers(tiny_llama) and type(tiny_llama.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    with torch.no_grad():
        torch.testing.assert_close(tiny_llama(**batch).logits, before, rtol=0, atol=0)

    lora = peft.get_peft_model(tiny_llama, peft.LoraConfig(r=4, target_modules=ALL_PROJ))
    with pytest.raises(ValueError, match="distinct shared shards"):  # (6-1)·1 > (2-1)·2·1: rejected before unloading
        share_lora_chunkwisely(lora, {"lora_r": 6, "valid_param_lora_r": 2, "valid_param_private_r": 1,
                                      "num_chunk_per_vec": 1})
    assert sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in lora.modules()) == 14  # LoRA still in place
