"""scripts/prepare_train_data.sh for the other launchers' datasets: hand-supplied raw files become the JSONL
the launchers train on (no download), and an unreachable source fails with the place to put the files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from open_instruct.data import load_jsonl_examples

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "prepare_train_data.sh"
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "CHECK_TIMEOUT": "3"}  # every download goes to a closed port: offline, whatever this machine has


def run(tmp_path, *datasets, **env):
    full = dict(os.environ, PYTHON=sys.executable, **OFFLINE, **env)
    return subprocess.run(["bash", str(SCRIPT), *datasets], capture_output=True, text=True, cwd=tmp_path, env=full,
                          timeout=120)


def write_raw(raw):
    (raw / "cot").mkdir(parents=True)
    (raw / "flan_v2").mkdir()
    (raw / "code_alpaca").mkdir()
    flan = [{"inputs": f"Question {i}: is {i} even?", "targets": "yes" if i % 2 == 0 else "no"} for i in range(5)]
    (raw / "cot" / "cot_zsopt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flan[:3]))
    (raw / "cot" / "cot_fsopt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flan[3:]))
    (raw / "flan_v2" / "tulu_v1_resampled_flan_100k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flan))
    code = [{"instruction": f"Write a function returning {i}.", "input": "", "output": f"def f():\n    return {i}"}
            for i in range(4)]
    (raw / "code_alpaca" / "code_alpaca_20k.json").write_text(json.dumps(code))


def test_hand_supplied_raw_data_becomes_the_launchers_training_files(tmp_path):
    write_raw(tmp_path / "raw")
    proc = run(tmp_path, "cot", "flan_v2", "code_alpaca", RAW_TRAIN_DIR="raw", PROCESSED_DIR="processed")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("already in place, not downloading") == 3
    counts = {"cot": 5, "flan_v2": 5, "code_alpaca": 4}
    for dataset, n in counts.items():  # the launchers' default TRAIN_FILE layout, readable by the trainer
        examples = load_jsonl_examples(tmp_path / "processed" / dataset / f"{dataset}_data.jsonl")
        assert len(examples) == n
        assert all([m["role"] for m in ex["messages"]] == ["user", "assistant"] for ex in examples)
    flan = load_jsonl_examples(tmp_path / "processed" / "flan_v2" / "flan_v2_data.jsonl")
    assert flan[0]["messages"][0]["content"] == "Question 0: is 0 even?\n" and flan[0]["messages"][1]["content"] == "yes"
    assert not (REPO / "processed").exists() and not (REPO / "raw").exists()


@pytest.mark.parametrize("dataset,hint", [("flan_v2", "tulu_v1_resampled_flan_100k.jsonl"),
                                          ("cot", "cot_zsopt.jsonl and cot_fsopt.jsonl"),
                                          ("code_alpaca", "code_alpaca_20k.json")])
def test_offline_fails_clearly_and_writes_nothing(tmp_path, dataset, hint):
    proc = run(tmp_path, dataset, RAW_TRAIN_DIR="raw", PROCESSED_DIR="processed")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot reach" in proc.stderr and hint in proc.stderr and f"{tmp_path}/raw/{dataset}" in proc.stderr
    assert not (tmp_path / "processed").exists()
    assert not list(tmp_path.rglob("*.part"))
