"""Saved adapters as files (issue 12): the export never overwrites what it was not asked to, its config is
byte-identical between runs, and every way a saved adapter can fail to fit is one line naming the file and the fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
import open_instruct.lowrank
import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)
from open_instruct.adapters import AdapterError, attach_adapter
from open_instruct.export import main as export_main
from open_instruct.mos import MoSConfig
from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def mos_config(**kw):
    return MoSConfig(**{"r": 3, "valid_param_lora_r": 2, "valid_param_private_r": 1, "num_chunk_per_vec": 2,
                        "target_modules": TARGETS, "init_weights": False, "seed": 0, **kw})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny base checkpoint, a 3-layer one, and MoS adapters saved on each."""
    root = tmp_path_factory.mktemp("adapters")
    base, base3 = save_tiny_checkpoint(root / "base", "llama"), save_tiny_checkpoint(root / "base3", "llama",
                                                                                      num_hidden_layers=3)
    for name, path in (("mos", base), ("mos3", base3)):
        model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(path), mos_config())
        model.save_pretrained(root / name)
    return root


def fresh_copy(saved, name, tmp_path):
    import shutil

    return Path(shutil.copytree(saved / name, tmp_path / name))


def export(saved, adapter, out, *extra):
    return export_main(["--base_model", str(saved / "base"), "--adapter", str(adapter), "--output_dir", str(out),
                        *extra])


def snapshot(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- export CLI
def test_export_refuses_a_non_empty_output_dir_unless_overwrite(saved, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert export(saved, saved / "mos", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not empty" in err and "--overwrite" in err
    assert snapshot(out) == {Path("results.json"): b"{}"}
    assert export(saved, saved / "mos", out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary directory left


@pytest.mark.parametrize("target", ["adapter", "base", "parent_of_adapter"])
@pytest.mark.parametrize("merge", [False, True])
def test_export_never_writes_over_its_inputs(saved, tmp_path, capsys, target, merge):
    adapter = fresh_copy(saved, "mos", tmp_path)
    out = {"adapter": adapter, "base": saved / "base", "parent_of_adapter": tmp_path}[target]
    before_adapter, before_base = snapshot(adapter), snapshot(saved / "base")
    extra = ["--overwrite"] + (["--merge"] if merge else [])
    assert export(saved, adapter, out, *extra) == 2
    assert "never over its inputs" in capsys.readouterr().err
    assert snapshot(adapter) == before_adapter and snapshot(saved / "base") == before_base


def test_exported_config_is_byte_identical_between_processes(saved, tmp_path):
    outputs = []
    for seed in ("1", "2"):  # the string hash seed decides a set's order: PEFT wrote target_modules in it
        out = tmp_path / f"out{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get(
            "PYTHONPATH", "")]))
        subprocess.run([sys.executable, "-m", "open_instruct.export", "--base_model", str(saved / "base"),
                        "--adapter", str(saved / "mos"), "--output_dir", str(out)], check=True, env=env,
                       capture_output=True)
        outputs.append((out / "adapter_config.json").read_bytes())
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["target_modules"] == sorted(TARGETS)


def test_modules_to_save_are_exported_with_their_weights(saved, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(saved / "base")
    model = peft.get_peft_model(base, mos_config(target_modules=["q_proj"], modules_to_save=["lm_head"]))
    with torch.no_grad():  # the trained head: different from the base's
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(-1.5)
        ids = torch.arange(3, 15)[None]
        ref = model(input_ids=ids).logits
    open_instruct.lowrank.export_lora(model, tmp_path / "lora")
    lora = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved / "base"), tmp_path / "lora")
    with torch.no_grad():
        torch.testing.assert_close(lora(input_ids=ids).logits, ref, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------- loading checks
def one_line_error(fn, *args) -> str:
    with pytest.raises(AdapterError) as err:
        fn(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("base", "adapter"), [("base", "mos3"), ("base3", "mos")])
def test_adapter_of_a_different_model_is_an_error(saved, base, adapter, capsys):
    """3-layer adapter on a 2-layer base (a layer would be dropped) and the reverse (a layer left unadapted)."""
    message = one_line_error(attach_adapter, AutoModelForCausalLM.from_pretrained(saved / base), saved / adapter)
    assert f"The adapter in {saved / adapter} belongs to a different model" in message
    if base == "base":  # the export command (its base is saved / "base") refuses it the same way
        assert export(saved, saved / adapter, saved / "never") == 2
        assert "belongs to a different model" in capsys.readouterr().err and not (saved / "never").exists()


def test_a_different_recorded_base_name_is_only_a_warning(saved, tmp_path):
    adapter = fresh_copy(saved, "mos", tmp_path)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/other-model"}))
    with pytest.warns(UserWarning, match="records base model org/other-model"):
        attach_adapter(AutoModelForCausalLM.from_pretrained(saved / "base"), adapter)


def test_truncated_weights_name_the_file(saved, tmp_path):
    adapter = fresh_copy(saved, "mos", tmp_path)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = one_line_error(attach_adapter, AutoModelForCausalLM.from_pretrained(saved / "base"), adapter)
    assert message.startswith(f"{weights} is truncated or not a safetensors file") and "copy it again" in message


def test_config_that_is_not_json_names_the_file(saved, tmp_path, capsys):
    adapter = fresh_copy(saved, "mos", tmp_path)
    (adapter / "adapter_config.json").write_text('{"peft_type": "MOS", "r": 3,')
    message = one_line_error(attach_adapter, AutoModelForCausalLM.from_pretrained(saved / "base"), adapter)
    assert message.startswith(f"{adapter / 'adapter_config.json'} is not valid JSON")
    assert export(saved, adapter, tmp_path / "out") == 2
    assert "is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("edit", [{"r": 4}, {"valid_param_lora_r": 3}, {"num_chunk_per_vec": 1}])
def test_config_edited_away_from_its_weights_names_the_file_not_training_advice(saved, tmp_path, edit):
    adapter = fresh_copy(saved, "mos", tmp_path)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, **edit}))
    message = one_line_error(attach_adapter, AutoModelForCausalLM.from_pretrained(saved / "base"), adapter)
    assert message.startswith(f"{adapter / 'adapter_config.json'} does not match the weights")
    assert "Raise valid_param_lora_r" not in message


def test_the_evaluators_loader_refuses_an_adapter_of_a_different_model(saved):
    from eval.utils import attach_adapter as eval_attach_adapter

    message = one_line_error(eval_attach_adapter, AutoModelForCausalLM.from_pretrained(saved / "base"),
                             saved / "mos3")
    assert "belongs to a different model" in message


@pytest.mark.parametrize(("base", "first", "second"), [("base", "mos", "mos3"), ("base3", "mos3", "mos"),
                                                       ("base", "lora", "lora3"), ("base3", "lora3", "lora")])
def test_a_second_adapter_of_a_different_model_is_refused_too(saved, base, first, second):
    """``--adapter_path a b``: the second adapter (same PEFT type, loaded with load_adapter) is checked like the
    first, and the model keeps serving the first one unchanged."""
    from eval.utils import iter_adapter_models

    for name, path in (("lora", saved / "base"), ("lora3", saved / "base3")):
        if not (saved / name).exists():
            torch.manual_seed(0)
            lora = peft.LoraConfig(r=2, target_modules=TARGETS, init_lora_weights=False)
            peft.get_peft_model(AutoModelForCausalLM.from_pretrained(path), lora).save_pretrained(saved / name)
    models = iter_adapter_models(AutoModelForCausalLM.from_pretrained(saved / base), [saved / first, saved / second])
    _, model = next(models)
    ids = torch.arange(3, 15)[None]
    with torch.no_grad():
        before = model(input_ids=ids).logits
    with pytest.raises(AdapterError) as err:
        next(models)
    assert f"The adapter in {saved / second} belongs to a different model" in str(err.value)
    assert "\n" not in str(err.value)
    assert list(model.peft_config) == ["default"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
