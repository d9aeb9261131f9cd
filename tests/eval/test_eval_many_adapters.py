"""Several adapters scored on one base model load (--adapter_path a b c) give the numbers of separate runs."""

import json
from pathlib import Path

import pandas as pd
import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from eval.mmlu import run_eval as mmlu
from eval.tydiqa import run_eval as tydiqa
from eval.utils import adapter_save_dirs

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_checkpoint):
    """Two MoS adapters of different seeds, then a plain LoRA adapter (another PEFT type), all non-trivial."""
    from open_instruct.mos import MoSConfig

    root = tmp_path_factory.mktemp("adapters")
    out = []
    for seed in (1, 2):
        base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
        cfg = MoSConfig(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, lora_alpha=16,
                        target_modules=TARGETS, seed=seed, init_weights=False)
        peft.get_peft_model(base, cfg).save_pretrained(root / f"mos{seed}")
        out.append(root / f"mos{seed}")
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    torch.manual_seed(3)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=TARGETS, init_lora_weights=False))
    lora.save_pretrained(root / "lora")
    return out + [root / "lora"]


def mmlu_argv(checkpoint, save_dirs, adapters):
    return ["--ntrain", "1", "--data_dir", "data/samples/mmlu", "--subjects", "nutrition", "--n_instances", "5",
            "--model_name_or_path", str(checkpoint), "--eval_batch_size", "2", "--save_dir", *map(str, save_dirs),
            "--adapter_path", *map(str, adapters)]


def test_mmlu_many_adapters_equal_separate_runs(tmp_path, tiny_checkpoint, adapters):
    together = [tmp_path / "together" / p.name for p in adapters]
    mmlu.main(mmlu_argv(tiny_checkpoint, [tmp_path / "together"], adapters))  # one --save_dir: a subdir each
    probs = []
    for adapter, save_dir in zip(adapters, together):
        alone = tmp_path / "alone" / adapter.name
        mmlu.main(mmlu_argv(tiny_checkpoint, [alone], [adapter]))
        a = pd.read_csv(save_dir / "nutrition.csv")
        b = pd.read_csv(alone / "nutrition.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6, rtol=0)
        assert json.loads((save_dir / "metrics.json").read_text()) == json.loads((alone / "metrics.json").read_text())
        probs.append(a.filter(like="_probs").to_numpy())
    # the adapters really differ, so a model that kept the first adapter active would fail the comparison above
    assert min(abs(probs[i] - probs[j]).max() for i in range(3) for j in range(i + 1, 3)) > 1e-4


def test_tydiqa_many_adapters_equal_separate_runs(tmp_path, tiny_checkpoint, adapters):
    argv = ["--data_dir", "data/samples/tydiqa", "--max_num_examples_per_lang", "1", "--n_shot", "0",
            "--model_name_or_path", str(tiny_checkpoint), "--eval_batch_size", "2"]
    two = adapters[:2]
    tydiqa.main(argv + ["--adapter_path", *map(str, two), "--save_dir", *(str(tmp_path / f"t{i}") for i in range(2))])
    for i, adapter in enumerate(two):
        tydiqa.main(argv + ["--adapter_path", str(adapter), "--save_dir", str(tmp_path / f"s{i}")])
        for name in ("tydiaqa_predictions.jsonl", "metrics.json"):
            assert (tmp_path / f"t{i}" / name).read_text() == (tmp_path / f"s{i}" / name).read_text()


def test_save_dirs_are_one_per_adapter():
    assert adapter_save_dirs([], ["r"]) == [adapter_save_dirs(["a"], ["r"])[0]]
    assert adapter_save_dirs(["x/a", "y/b"], ["r"]) == [Path("r/a"), Path("r/b")]
    assert adapter_save_dirs(["x/a", "y/b"], ["r", "s"]) == [Path("r"), Path("s")]
    with pytest.raises(ValueError, match="same results directory"):
        adapter_save_dirs(["x/a", "y/a"], ["r"])  # two adapters named a would share r/a
    with pytest.raises(ValueError, match="not 2"):
        adapter_save_dirs(["a", "b", "c"], ["r", "s"])
