"""Evaluating base + adapter (--adapter_path, no merge) gives the numbers of the merged model."""

import numpy as np
import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.mmlu import run_eval as mmlu
from eval.utils import get_next_word_predictions, load_hf_lm_and_tokenizer

ROWS = [["What is 2+2?", "4", "5", "6", "7", "A"], ["Which is a fruit?", "car", "apple", "rock", "sand", "B"],
        ["Pick the third letter.", "a", "b", "c", "d", "C"], ["Capital of France?", "Rome", "Paris", "Oslo", "Bern", "B"]]
PROB_COLUMNS = ["choiceA_probs", "choiceB_probs", "choiceC_probs", "choiceD_probs"]


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory, tiny_checkpoint):
    """A plain PEFT LoRA adapter with random non-zero lora_B on the tiny checkpoint, and its merged model."""
    root = tmp_path_factory.mktemp("lora")
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.save_pretrained(root / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(root / "merged")
    AutoTokenizer.from_pretrained(tiny_checkpoint).save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


def run_mmlu(tmp_path, tag, model, adapter=None):
    data = tmp_path / "mmlu"
    if not data.exists():
        (data / "test").mkdir(parents=True)
        pd.DataFrame(ROWS).to_csv(data / "test" / "anatomy_test.csv", header=False, index=False)
    argv = ["--ntrain", "0", "--data_dir", str(data), "--save_dir", str(tmp_path / tag), "--eval_batch_size", "3",
            "--use_chat_format", *(["--model_name_or_path", str(model)] if model else [])]
    if adapter:
        argv += ["--adapter_path", str(adapter)]
    mmlu.main(argv)
    return pd.read_csv(tmp_path / tag / "anatomy.csv")[PROB_COLUMNS].to_numpy()


def test_adapter_path_equals_merged_model(tmp_path, tiny_checkpoint, lora_dirs):
    adapter, merged = lora_dirs
    with_adapter = run_mmlu(tmp_path, "adapter", tiny_checkpoint, adapter)
    with_merged = run_mmlu(tmp_path, "merged", merged)
    base = run_mmlu(tmp_path, "base", tiny_checkpoint)
    np.testing.assert_allclose(with_adapter, with_merged, atol=1e-5, rtol=0)
    assert np.abs(with_adapter - base).max() > 1e-4, "the adapter should change the probabilities"


def test_loaded_adapter_is_not_merged(tiny_checkpoint, lora_dirs):
    from peft import PeftModel

    adapter, _ = lora_dirs
    model, tokenizer = load_hf_lm_and_tokenizer(str(tiny_checkpoint), adapter_path=str(adapter))
    assert isinstance(model, PeftModel) and not model.training
    assert tokenizer.padding_side == "left"
    _, probs_on = get_next_word_predictions(model, tokenizer, ["Answer: The answer is"], disable_tqdm=True)
    with model.disable_adapter():
        _, probs_off = get_next_word_predictions(model, tokenizer, ["Answer: The answer is"], disable_tqdm=True)
    assert np.abs(np.array(probs_on) - np.array(probs_off)).max() > 1e-5


def test_adapter_path_without_adapter_config_is_explained(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_hf_lm_and_tokenizer(str(tiny_checkpoint), adapter_path=str(tmp_path))


def test_mos_adapter_equals_its_exported_lora_adapter(tmp_path, tiny_checkpoint):
    """A MoS adapter directory evaluates like the plain LoRA adapter exported from it (and unlike the base)."""
    import open_instruct.mos as mos  # a broken package must fail this test, not skip it
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    model = get_peft_model(base, mos.MoSConfig(
        r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, lora_alpha=16, seed=0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    model.save_pretrained(tmp_path / "mos_adapter")
    mos.export_lora(model, tmp_path / "lora_export")
    with_mos = run_mmlu(tmp_path, "mos", tiny_checkpoint, tmp_path / "mos_adapter")
    with_lora = run_mmlu(tmp_path, "lora", tiny_checkpoint, tmp_path / "lora_export")
    base_probs = run_mmlu(tmp_path, "base", tiny_checkpoint)
    np.testing.assert_allclose(with_mos, with_lora, atol=1e-5, rtol=0)
    assert np.abs(with_mos - base_probs).max() > 1e-4


def write_run_json(run_dir, model) -> None:
    """A run.json as the launcher writes it, recording ``model`` as the base model."""
    from open_instruct.run_spec import DataSpec, MethodSpec, RunSpec, TrainingSpec, write_run_spec

    write_run_spec(RunSpec(launcher="ft_llama2_7b_superni_mmlu.sh", task="superni", run_prefix="x",
                           started="20260101-000000", positional=("4", "0", "0", "1e-3", "lora", "1", "0", "4", "4",
                                                                  "1"),
                           method=MethodSpec("lora", 4, 1.0, 0.0, 4, 4, 1), model=str(model),
                           data=DataSpec("train.jsonl"), training=TrainingSpec(seed=0, learning_rate=1e-3)), run_dir)


def test_the_base_model_comes_from_the_runs_run_json(tmp_path, tiny_checkpoint, lora_dirs):
    """Without --model_name_or_path the evaluator takes the base model from run.json: in the adapter's directory
    (a run directory and its exported LoRA) or its parent (the method's own checkpoint, <run>/mos_adapter)."""
    import shutil

    from eval.cli import EvalInputError
    from eval.utils import recorded_base_model

    adapter, _ = lora_dirs
    run = tmp_path / "run"
    shutil.copytree(adapter, run)
    shutil.copytree(adapter, run / "sub_adapter")
    expected = run_mmlu(tmp_path, "given", tiny_checkpoint, run)
    with pytest.raises(EvalInputError, match=f"{run} has no run.json"):
        recorded_base_model([str(run)])
    write_run_json(run, tiny_checkpoint)
    assert recorded_base_model(str(run / "sub_adapter")) == str(tiny_checkpoint)
    np.testing.assert_array_equal(run_mmlu(tmp_path, "recorded", None, run), expected)
    other = tmp_path / "other"
    shutil.copytree(adapter, other)
    write_run_json(other, tmp_path / "another-model")
    with pytest.raises(EvalInputError, match="trained on different base models"):
        recorded_base_model([str(run), str(other)])
    with pytest.raises(EvalInputError, match="--model_name_or_path is required"):
        recorded_base_model([])
