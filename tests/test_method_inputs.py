"""Bad or surprising method settings (issue 12, method side): rejected with the reason, or carried through."""

import copy

import peft
import pytest
import torch
from baselines_helpers import ALL_PROJ

from open_instruct import finetune_trainer
from open_instruct.baselines import ProLoRALinear
from open_instruct.methods import adapter_config
from open_instruct.mos import MoSConfig, share_lora_chunkwisely
from open_instruct.tiny import build_tiny_model


def test_e_above_r_is_rejected_with_the_reason():
    with pytest.raises(ValueError) as err:
        MoSConfig(r=2, valid_param_lora_r=4, valid_param_private_r=1)
    assert str(err.value).startswith("MoSConfig.valid_param_lora_r (e=4) must be <= r (2)")
    assert "Raise r to at least 4 or lower valid_param_lora_r" in str(err.value)
    MoSConfig(r=4, valid_param_lora_r=4, valid_param_private_r=1)  # e = r is fine


@pytest.mark.parametrize("rotation", [True, False])
def test_enable_lora_rotation_reaches_prolora(rotation):
    args = finetune_trainer.AdapterArguments(ft_mode="prolora", lora_r=4, valid_param_private_r=1, num_chunk_per_vec=2,
                                             enable_lora_rotation=rotation)
    config = finetune_trainer.method_config(args, seed=0)
    assert config.enable_lora_rotation is rotation
    assert config.shift_sizes == ((1, 1) if rotation else (0, 0))  # s = 3, m = n = 2: max(3 // 2, 1)


def test_share_lora_chunkwisely_keeps_loras_targets_alpha_and_dropout_for_a_mos_config():
    lora = peft.get_peft_model(build_tiny_model("llama"), peft.LoraConfig(
        r=4, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    chunk = MoSConfig(r=2, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, seed=3)
    with pytest.warns(UserWarning, match="keeps the LoRA model's lora_alpha"):
        model = share_lora_chunkwisely(lora, chunk)
    cfg = model.peft_config["default"]
    assert (cfg.lora_alpha, cfg.lora_dropout, set(cfg.target_modules)) == (32, 0.05, {"q_proj", "v_proj"})
    assert (cfg.r, cfg.valid_param_lora_r, cfg.num_chunk_per_vec, cfg.seed) == (2, 2, 2, 3)  # MoS's own fields kept
    adapted = {n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "mos_index_A")}
    assert adapted == {"q_proj", "v_proj"}


def test_share_lora_chunkwisely_on_gpt2_conv1d_is_silent_and_exports_exactly(tmp_path):
    """PEFT's LoRA sets fan_in_fan_out for GPT-2's Conv1D on its own; the conversion takes that over without a
    warning (a user who never set it has nothing to act on), and the MoS layers still export exactly."""
    import warnings

    from open_instruct.mos import export_lora
    from open_instruct.tiny import build_tiny_gpt2

    base = build_tiny_gpt2()
    ids = torch.arange(5, 21)[None]
    with pytest.warns(UserWarning, match="fan_in_fan_out"):  # PEFT's own notice
        lora = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=3, lora_alpha=16, target_modules="all-linear"))
    chunk = MoSConfig(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="share_lora_chunkwisely")
        model = share_lora_chunkwisely(lora, chunk)
    assert model.peft_config["default"].fan_in_fan_out is True
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
        out = model(input_ids=ids).logits
        assert (out - base(input_ids=ids).logits).abs().max() > 1e-3
    export_lora(model, tmp_path)
    exported = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, out, rtol=0, atol=1e-5)


CHUNK = dict(lora_r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2)


@pytest.mark.parametrize("setting, message", [
    (dict(init_lora_weights="pissa"), "init_lora_weights='pissa', which rewrites the base weights"),
    (dict(init_lora_weights="olora"), "init_lora_weights='olora', which rewrites the base weights"),
    (dict(use_dora=True), "uses DoRA (use_dora=True); MoS has no magnitude vector"),
    (dict(lora_bias=True), "has lora_bias=True; MoS adapters have no bias"),
])
def test_share_lora_chunkwisely_refuses_what_mos_cannot_carry(setting, message):
    """PiSSA/OLoRA rewrite the base weights (unloading them leaves a changed model under MoS); DoRA's magnitude and
    LoRA's bias have no MoS counterpart. Each is refused by name, before anything is unloaded."""
    base = build_tiny_model("qwen2")  # q/k/v carry biases
    pretrained = {k: v.clone() for k, v in base.state_dict().items()}
    lora = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=ALL_PROJ, **setting))
    if "init_lora_weights" in setting:  # the hazard is real: PEFT changed the base weights under this LoRA
        rewritten = lora.base_model.model.state_dict()
        assert any(not torch.equal(rewritten[k.replace("q_proj.weight", "q_proj.base_layer.weight")], v)
                   for k, v in pretrained.items() if k.endswith("q_proj.weight"))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        share_lora_chunkwisely(lora, CHUNK)
    assert any(isinstance(m, peft.tuners.lora.LoraLayer) for m in lora.modules())  # left as it was


@pytest.mark.parametrize("setting, message", [
    (dict(use_rslora=True), "use_rslora=True (MoS scales by lora_alpha/r"),
    (dict(rank_pattern={"q_proj": 2}), "rank_pattern/alpha_pattern (MoS uses one r"),
    (dict(bias="lora_only"), "bias='lora_only' (MoS trains no biases"),
])
def test_share_lora_chunkwisely_warns_about_what_it_drops(setting, message):
    lora = peft.get_peft_model(build_tiny_model("qwen2"), peft.LoraConfig(r=4, lora_alpha=8, target_modules=ALL_PROJ,
                                                                          **setting))
    assert any(p.requires_grad for n, p in lora.named_parameters() if n.endswith("bias")) == ("bias" in setting)
    with pytest.warns(UserWarning, match="share_lora_chunkwisely: LoRA adapter 'default'") as record:
        model = share_lora_chunkwisely(lora, CHUNK)
    assert any(message in str(w.message) for w in record)
    assert record[0].filename == __file__  # points at the caller's line
    assert model.peft_config["default"].scaling == 8 / 3  # MoS's own alpha/r, whatever LoRA's scheme was
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    assert biases and not any(p.requires_grad for p in biases)


@pytest.mark.parametrize("method", ["mos", "tied_lora", "prolora"])
@pytest.mark.parametrize("target", ["embed_tokens", "conv"])
def test_a_target_that_is_not_linear_is_refused_before_anything_changes(method, target):
    """PEFT reports in/out sizes for embeddings and convolutions too; our layers compute x Aᵀ Bᵀ, so such a target
    must be refused by name (not crash at the first forward), and the model must be left as it was."""
    model = build_tiny_model("llama")
    model.model.conv = torch.nn.Conv1d(4, 4, 1)  # a convolution for the target to match
    before = [type(m) for m in model.modules()]
    config = adapter_config(method, r=2, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2,
                            target_modules=["q_proj", target])
    with pytest.raises(ValueError, match=rf"adapts linear layers only .*'model\.{target}' \(\w+\) is not one"):
        peft.get_peft_model(model, config)
    assert [type(m) for m in model.modules()] == before


def test_share_lora_chunkwisely_refuses_lora_on_an_embedding_and_keeps_the_lora():
    lora = peft.get_peft_model(build_tiny_model("llama"), peft.LoraConfig(r=4, target_modules=["embed_tokens",
                                                                                               "q_proj"]))
    with pytest.raises(ValueError, match=r"MoS adapts linear layers only .*'model\.embed_tokens' \(Embedding\)"):
        share_lora_chunkwisely(lora, dict(lora_r=2, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2))
    assert isinstance(lora.base_model.model.model.embed_tokens, peft.tuners.lora.LoraLayer)


def test_share_lora_chunkwisely_converts_the_active_adapter_whatever_its_name():
    lora = peft.get_peft_model(build_tiny_model("llama"), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
                               adapter_name="task")
    with pytest.raises(ValueError, match=r"has no adapter 'default'; it has \['task'\]\. Pass adapter_name="):
        share_lora_chunkwisely(lora, CHUNK, adapter_name="default")
    model = share_lora_chunkwisely(lora, CHUNK)
    assert list(model.peft_config) == ["task"] and model.active_adapter == "task"
    assert model.peft_config["task"].peft_type == "MOS" and model.get_nb_trainable_parameters()[0] > 0


def test_prolora_checks_every_module_before_converting_any():
    # tiny mistral: hidden 48, intermediate 96, k/v output 12. m = n = 8 divides every size but k/v's output, and
    # k_proj comes after q_proj: a per-module check during injection would leave q_proj converted.
    model = build_tiny_model("mistral")
    with torch.no_grad():
        before = model(input_ids=torch.arange(3, 11)[None]).logits
    config = adapter_config("prolora", r=4, valid_param_private_r=1, num_chunk_per_vec=8, target_modules=ALL_PROJ)
    with pytest.raises(ValueError, match=r"reduce_lora_B_x \(8\) must divide every target's output size, but "
                                         r"'model.layers.0.self_attn.k_proj' has output size 12"):
        peft.get_peft_model(model, config)
    assert not any(isinstance(m, ProLoRALinear) for m in model.modules())  # q_proj was not converted either
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=torch.arange(3, 11)[None]).logits, before, rtol=0, atol=0)
