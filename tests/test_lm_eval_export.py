"""lm-eval (an independent tool, no code of this project in its process) loads an exported MoS adapter through
``peft=`` and scores exactly what the MoS model scores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from open_instruct.mos import MoSConfig, export_lora
from open_instruct.tiny import save_tiny_checkpoint

DOCS = [("The quick brown", ["fox", "dog", "B"]), ("Answer: Paris is the", ["capital", "dog", "B"])]


def test_lm_eval_scores_exported_adapter_like_mos(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is installed by scripts/bootstrap.sh (requirements-dev.txt)")
    base = save_tiny_checkpoint(tmp_path / "base", "llama")
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base), MoSConfig(
        r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, init_weights=False, seed=0,
        target_modules="all-linear"))
    model.eval()
    export_lora(model, tmp_path / "lora")
    with open(tmp_path / "data.jsonl", "w") as f:
        for question, choices in DOCS:
            f.write(json.dumps({"question": question, "choices": choices, "label": 0}) + "\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/mos_check.yaml").write_text(
        "task: mos_check\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'data.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [str(Path(sys.executable).with_name("lm_eval")), "--model", "hf", "--model_args",
           f"pretrained={base},peft={tmp_path / 'lora'}", "--tasks", "mos_check", "--include_path",
           str(tmp_path / "tasks"), "--device", "cpu", "--batch_size", "2", "--output_path", str(tmp_path / "out"),
           "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (samples,) = (tmp_path / "out").rglob("samples_mos_check_*.jsonl")
    scored = {json.loads(line)["doc"]["question"]: json.loads(line)["resps"] for line in samples.open()}

    tok = AutoTokenizer.from_pretrained(base)
    for question, choices in DOCS:
        ctx = tok(question)["input_ids"]
        for choice, resp in zip(choices, scored[question]):
            whole = tok(question + " " + choice)["input_ids"]
            assert whole[: len(ctx)] == ctx
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), -1)
            expect = sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))
            assert float(resp[0][0]) == pytest.approx(expect, abs=1e-4), (question, choice)
