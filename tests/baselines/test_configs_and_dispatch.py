"""Validation errors that name the field, PEFT type registration, and finetune_trainer's ft_mode dispatch."""

import copy

import peft
import pytest
import torch
from baselines_helpers import ALL_PROJ, METHODS
from peft.utils import PeftType

from open_instruct import finetune_trainer
from open_instruct.baselines import ProLoRAConfig, ProLoRAModel, TiedLoRAConfig, TiedLoRAModel
from open_instruct.lowrank import ensure_peft_type
from open_instruct.methods import adapter_config
from open_instruct.mos import MoSConfig
from open_instruct.tiny import build_tiny_model


@pytest.mark.parametrize(
    "cls,kw,needle",
    [
        (ProLoRAConfig, dict(unshared_r=9, r=8), "ProLoRAConfig.unshared_r (u=9) must be <= r (8)"),
        (ProLoRAConfig, dict(unshared_r=-1), "ProLoRAConfig.unshared_r must be an integer >= 0"),
        (ProLoRAConfig, dict(reduce_lora_A_x=0), "ProLoRAConfig.reduce_lora_A_x must be a positive integer"),
        (ProLoRAConfig, dict(reduce_lora_B_x=1.5), "ProLoRAConfig.reduce_lora_B_x must be a positive integer"),
        (ProLoRAConfig, dict(r=0), "ProLoRAConfig.r must be a positive integer"),
        (ProLoRAConfig, dict(lora_A_shift_size=-2), "ProLoRAConfig.lora_A_shift_size must be an integer >= 0"),
        (ProLoRAConfig, dict(bias="all"), "ProLoRAConfig.bias='all' is not supported"),
        (TiedLoRAConfig, dict(r=0), "TiedLoRAConfig.r must be a positive integer"),
        (TiedLoRAConfig, dict(zero_init="A"), "TiedLoRAConfig.zero_init must be one of"),
        (TiedLoRAConfig, dict(lora_dropout=1.0), "TiedLoRAConfig.lora_dropout must be in [0, 1)"),
    ],
)
def test_invalid_configs_raise_value_error(cls, kw, needle):
    with pytest.raises(ValueError) as err:
        cls(**kw)
    assert needle in str(err.value)


def test_model_dependent_validation(tiny_llama):
    with pytest.raises(ValueError, match=r"reduce_lora_A_x \(3\) must divide every target's input size"):
        peft.get_peft_model(copy.deepcopy(tiny_llama), ProLoRAConfig(reduce_lora_A_x=3, target_modules=ALL_PROJ))
    # k_proj's output is 32 on the tiny llama (GQA): n = 64 divides every input but not that output
    with pytest.raises(ValueError, match=r"reduce_lora_B_x \(64\) must divide every target's output size"):
        peft.get_peft_model(copy.deepcopy(tiny_llama), ProLoRAConfig(reduce_lora_B_x=64, target_modules=ALL_PROJ))
    # Tied-LoRA ties one A and B per module type: all layers of a type must share a shape.
    odd = torch.nn.Module()
    odd.layers = torch.nn.ModuleList([torch.nn.Module(), torch.nn.Module()])
    odd.layers[0].proj, odd.layers[1].proj = torch.nn.Linear(8, 8), torch.nn.Linear(8, 16)
    with pytest.raises(ValueError, match="modules of type 'proj' differ in shape"):
        peft.get_peft_model(odd, TiedLoRAConfig(target_modules=["proj"]))


def test_peft_type_registration_guard():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    for name, config_cls, model_cls in [("TIED_LORA", TiedLoRAConfig, TiedLoRAModel),
                                        ("PROLORA", ProLoRAConfig, ProLoRAModel)]:
        assert name in PeftType.__members__ and PeftType(name) is PeftType[name] and name in list(PeftType)
        assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[name]] is config_cls
        assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType[name]] is model_cls
        assert isinstance(peft.PeftConfig.from_peft_type(peft_type=name, r=4), config_cls)
    assert ensure_peft_type("MOS") is PeftType.MOS  # idempotent, the MoS name still works
    with pytest.raises(ValueError, match="upper-case identifiers"):
        ensure_peft_type("tied lora")


def test_ft_modes_are_the_five_methods():
    assert set(METHODS) == {"lora", "vera", "tied_lora", "prolora", "mos"}
    help_text = finetune_trainer.AdapterArguments.__dataclass_fields__["ft_mode"].metadata["help"]
    assert all(m in help_text for m in METHODS) and "m = n = num_chunk_per_vec" in help_text
    with pytest.raises(ValueError, match="Unknown method 'dora'"):
        adapter_config("dora", r=2)


@pytest.mark.parametrize("mode,expected", [("lora", peft.LoraConfig), ("vera", peft.VeraConfig),
                                           ("tied_lora", TiedLoRAConfig), ("prolora", ProLoRAConfig),
                                           ("mos", MoSConfig)])
def test_add_adapter_maps_the_launcher_arguments(tiny_llama, mode, expected):
    args = finetune_trainer.AdapterArguments(ft_mode=mode, lora_r=3, lora_alpha=8, lora_dropout=0.0,
                                         valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2)
    model = finetune_trainer.add_adapter(tiny_llama, args, seed=5)
    cfg = model.peft_config["default"]
    assert type(cfg) is expected and cfg.r == 3
    if mode == "prolora":
        assert (cfg.unshared_r, cfg.reduce_lora_A_x, cfg.reduce_lora_B_x, cfg.lora_alpha) == (1, 2, 2, 8)
    if mode == "vera":
        assert cfg.projection_prng_key == 5
    if mode in ("tied_lora", "prolora", "mos"):
        assert cfg.seed == 5 and cfg.lora_alpha == 8


def test_add_adapter_reports_bad_settings_as_usage_errors(tiny_llama):
    args = finetune_trainer.AdapterArguments(ft_mode="prolora", lora_r=4, valid_param_private_r=5, num_chunk_per_vec=2)
    with pytest.raises(finetune_trainer.UsageError, match="unshared_r"):
        finetune_trainer.add_adapter(tiny_llama, args, seed=0)
    args = finetune_trainer.AdapterArguments(ft_mode="prolora", lora_r=4, valid_param_private_r=1, num_chunk_per_vec=3)
    with pytest.raises(finetune_trainer.UsageError, match="reduce_lora_A_x"):
        finetune_trainer.add_adapter(tiny_llama, args, seed=0)


def _config_classes():
    """The config class of every method in the table, as the trainer builds it from its default flags."""
    return [type(finetune_trainer.method_config(finetune_trainer.AdapterArguments(ft_mode=m), seed=0)) for m in METHODS]


def test_every_method_config_is_valid_with_no_arguments(tiny_tokenizer):
    """Each config class with no arguments, and the trainer's default flags for each --ft_mode, build an adapter on
    a tiny LM of 8 layers (MoS's defaults r=8 e=2 p=1 need L >= 7) and change no output before training."""
    base = build_tiny_model("llama", tokenizer=tiny_tokenizer, num_hidden_layers=8)
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        reference = base(input_ids=ids).logits
    settings = ("r", "valid_param_lora_r", "valid_param_private_r", "num_chunk_per_vec", "unshared_r",
                "reduce_lora_A_x", "reduce_lora_B_x")
    for mode, cls in zip(METHODS, _config_classes()):
        # adapter_config with no settings takes the config class's own defaults (r, e, p, c / u, m, n)
        table = adapter_config(mode)
        assert type(table) is cls, mode
        assert all(getattr(table, k) == getattr(cls(), k) for k in settings if hasattr(cls(), k)), mode
        for model in (peft.get_peft_model(copy.deepcopy(base), cls()),
                      peft.get_peft_model(copy.deepcopy(base), table),
                      finetune_trainer.add_adapter(copy.deepcopy(base), finetune_trainer.AdapterArguments(ft_mode=mode),
                                                   seed=0)):
            assert model.get_nb_trainable_parameters()[0] > 0, mode
            with torch.no_grad():
                torch.testing.assert_close(model(input_ids=ids).logits, reference, msg=mode)
    assert (adapter_config("mos").r, adapter_config("mos").valid_param_lora_r) == (8, 2)


@pytest.mark.parametrize("build", ["config", "table"])
def test_prolora_initialisation_follows_its_seed(tiny_llama, build):
    def weights(seed):
        config = (ProLoRAConfig(r=4, unshared_r=1, init_weights=False, seed=seed) if build == "config"
                  else adapter_config("prolora", r=4, valid_param_private_r=1, num_chunk_per_vec=2, seed=seed))
        model = peft.get_peft_model(copy.deepcopy(tiny_llama), config)
        return model.peft_config["default"].seed, {n: p.detach().clone() for n, p in model.named_parameters()
                                                   if p.requires_grad}

    torch.manual_seed(0)
    _, first = weights(3)
    torch.manual_seed(1)  # the global RNG does not matter once the seed is given
    _, again = weights(3)
    _, other = weights(4)
    assert first.keys() == again.keys() == other.keys() and len(first) == 4 * 14
    assert all(torch.equal(first[n], again[n]) for n in first)
    # different seeds differ everywhere (the table's B parts start at zero for every seed)
    assert all(not torch.equal(first[n], other[n]) for n in first if "prolora_A" in n or build == "config")
    drawn, unseeded = weights(None)  # no seed: one is drawn, recorded in the config, and reproduces the weights
    assert isinstance(drawn, int)
    assert all(torch.equal(unseeded[n], weights(drawn)[1][n]) for n in unseeded)
