"""The paper's launcher and the demo, end to end on a tiny model on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "ft_llama2_7b_superni_mmlu.sh"


def _env(**kw):
    env = dict(os.environ, PYTHON=sys.executable, REPORT_TO="none", OMP_NUM_THREADS="2")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def test_launcher_usage_errors():
    proc = subprocess.run(["bash", str(LAUNCHER)], capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and "usage: bash ft_llama2_7b_superni_mmlu.sh lora_r seed GPU_ID" in proc.stderr
    proc = subprocess.run(["bash", str(LAUNCHER), "8", "0", "0", "2e-4", "mos", "1", "0", "1", "2", "x"],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and "num_chunk_per_vec must be a positive integer, got 'x'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(["bash", str(LAUNCHER), "8", "0", "0", "2e-4", "mos", "1", "0", "1", "2", "4"],
                          capture_output=True, text=True, env=_env(TRAIN_FILE="/nonexistent.jsonl"))
    assert proc.returncode == 2 and "TRAIN_FILE /nonexistent.jsonl not found" in proc.stderr


@pytest.mark.slow
def test_launcher_trains_and_exports(tmp_path):
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "learnable.jsonl"  # a learnable task: the reply is always the same short sentence
    with data.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Say the magic words, please ({i})."},
                                             {"role": "assistant", "content": "The quick brown fox."}]}) + "\n")
    root = tmp_path / "output"
    proc = subprocess.run(["bash", str(LAUNCHER), "3", "0", "0", "3e-2", "mos", "1", "0", "1", "2", "2"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=_env(MODEL=model, TRAIN_FILE=data, OUTPUT_ROOT=root, MAX_STEPS=30, BATCH_SIZE=8,
                                   MAX_EVAL_SAMPLES=8, LOGGING_STEPS=1, SKIP_EVAL=1), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = list(root.iterdir())
    assert run.name.startswith("LLaMA2_7b_MoS_superni_") and run.name.endswith(
        "_GPU_0_r_3_lr_3e-2_sd_0_ft_mode_mos_init_lora_A_vec_value_1_init_lora_A_vec_std_0"
        "_valid_param_private_r_1_valid_param_lora_r_2_num_chunk_2")
    for name in ["adapter_config.json", "adapter_model.safetensors", "mos_adapter/adapter_model.safetensors",
                 "train_results.json", "all_results.json", "metrics.json", "completed", "run.log"]:
        assert (run / name).exists(), name
    losses = [h["loss"] for h in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses
    base = AutoModelForCausalLM.from_pretrained(model)
    lora = peft.PeftModel.from_pretrained(base, run)  # stock PEFT reads the exported adapter
    assert type(lora.peft_config["default"]).__name__ == "LoraConfig"
    assert any(torch.count_nonzero(p) for n, p in lora.named_parameters() if "lora_B" in n)


@pytest.mark.slow
def test_demo_pipeline_reduced(tmp_path):
    """scripts/demo.sh with a tiny model and a few steps: every stage runs, the summaries and plots appear."""
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    out = tmp_path / "demo"
    proc = subprocess.run(["bash", str(REPO / "scripts/demo.sh")], capture_output=True, text=True, timeout=900,
                          env=_env(DEMO_MODEL=model, DEMO_MOS="3 2 1 2", DEMO_STEPS=2, DEMO_OUT=out,
                                   SKIP_BOOTSTRAP=1, DEMO_TYDIQA_PER_LANG=1, DEMO_MMLU="samples"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import pandas as pd

    mmlu = pd.read_csv(out / "mmlu_summary.csv")
    tydi = pd.read_csv(out / "tydiqa_summary.csv")
    assert len(mmlu) == 4 and len(tydi) == 4  # base model + MoS + LoRA (same budget) + LoRA (same rank)
    assert sorted(mmlu["ft_mode"].dropna()) == ["lora", "lora", "mos"]
    params = dict(zip(mmlu["r"].fillna(0).astype(int).astype(str) + mmlu["ft_mode"].fillna("base"),
                      mmlu["trainable_params"]))
    assert params["3mos"] == params["2lora"] and params["3lora"] == 1.5 * params["3mos"]
    for png in ("mmlu.png", "tydiqa.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
    assert "MMLU_acc" in proc.stdout and "base_model" in proc.stdout
