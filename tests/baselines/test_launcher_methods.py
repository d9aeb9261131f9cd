"""A short tiny-model training run per method through the paper's launcher: outputs, and a plain LoRA export."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "ft_llama2_7b_superni_mmlu.sh"

# launcher arguments 1 and 5-10: lora_r, mode, vec value, vec std, p (PRoLoRA u), e, c (PRoLoRA m = n)
RUNS = {
    "lora": ["2", "lora", "1", "0", "1", "1", "1"],
    "vera": ["16", "vera", "1", "0", "1", "1", "1"],
    "tied_lora": ["4", "tied_lora", "1", "0", "1", "1", "1"],
    "prolora": ["4", "prolora", "1", "0", "1", "1", "2"],
    "mos": ["3", "mos", "1", "0", "1", "2", "2"],
}
NATIVE_TYPE = {"vera": "VERA", "tied_lora": "TIED_LORA", "prolora": "PROLORA", "mos": "MOS"}


def expected_trainable(method: str, config) -> int:
    """Each method's parameter budget by its formula, from the model's shapes (r, u, e, c as in RUNS)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]  # q k v o gate up down
    per_rank = layers * sum(i + o for i, o in shapes)
    r, _, _, _, p, e, c = RUNS[method]
    r, p, e, c = int(r), int(p), int(e), int(c)
    if method == "lora":
        return r * per_rank
    if method == "vera":  # λ_d (r) and λ_b (out) per module
        return layers * sum(r + o for _, o in shapes)
    if method == "tied_lora":  # tied A, B per type; u (r) and v (out) per module
        return sum(r * (i + o) + layers * (r + o) for i, o in shapes)
    if method == "prolora":  # u unshared ranks in full, r − u ranks as chunks of in/c and out/c
        return layers * sum(p * (i + o) + (r - p) * (i // c + o // c) for i, o in shapes)
    return e * per_rank  # mos


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher-inputs")
    model = save_tiny_checkpoint(root / "tiny", "llama")
    data = root / "data.jsonl"
    with data.open("w") as f:
        for i in range(16):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Say the magic words ({i})."},
                                             {"role": "assistant", "content": "The quick brown fox."}]}) + "\n")
    return model, data


def test_launcher_rejects_unknown_mode():
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(LAUNCHER), "8", "0", "0", "2e-4", "dora", "1", "0", "1", "2", "4"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "finetune_mode must be one of mos, lora, vera, tied_lora, prolora; got 'dora'" in proc.stderr
    usage = subprocess.run(["bash", str(LAUNCHER)], capture_output=True, text=True, env=env).stderr
    assert "mos | lora | vera | tied_lora | prolora" in usage and "m = n = num_chunk_per_vec" in usage


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RUNS))
def test_launcher_trains_each_method(tiny_run_inputs, tmp_path, method):
    model, data = tiny_run_inputs
    r, mode, vec_value, vec_std, p, e, c = RUNS[method]
    env = dict(os.environ, PYTHON=sys.executable, REPORT_TO="none", OMP_NUM_THREADS="2", MODEL=str(model),
               TRAIN_FILE=str(data), OUTPUT_ROOT=str(tmp_path / "out"), MAX_STEPS="3", BATCH_SIZE="4",
               MAX_EVAL_SAMPLES="4", SKIP_EVAL="1", LOGGING_STEPS="1")
    proc = subprocess.run(["bash", str(LAUNCHER), r, "0", "0", "1e-3", mode, vec_value, vec_std, p, e, c],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = list((tmp_path / "out").iterdir())
    assert f"_r_{r}_lr_1e-3_sd_0_ft_mode_{mode}_" in run.name
    for name in ["adapter_config.json", "adapter_model.safetensors", "train_results.json", "all_results.json",
                 "metrics.json", "completed", "run.log"]:
        assert (run / name).exists(), name
    results = json.loads((run / "all_results.json").read_text())
    assert results["trainable_params"] == expected_trainable(method, AutoModelForCausalLM.from_pretrained(model).config)
    assert math.isfinite(results["train_loss"])
    # the adapter moved: every method starts with ΔW = 0 (B, λ_b = 0), so a trained export has a non-zero B
    exported = load_file(run / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in exported.items() if "lora_B" in k), "the adapter did not train"
    assert json.loads((run / "adapter_config.json").read_text())["peft_type"] == "LORA"
    if method in NATIVE_TYPE:  # the method's own compact checkpoint beside the export
        native = json.loads((run / f"{method}_adapter" / "adapter_config.json").read_text())
        assert native["peft_type"] == NATIVE_TYPE[method]
    lora = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), run)  # stock PEFT
    assert type(lora.peft_config["default"]) is peft.LoraConfig and lora.peft_config["default"].r == int(r)
