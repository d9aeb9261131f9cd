"""reformat_datasets: SuperNI conversion (counts, skipped tasks, schema, seeding, zero/few-shot) and the CLI."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from open_instruct import reformat_datasets as rd
from open_instruct.data import load_jsonl_examples
from open_instruct.instruction_encode_templates import TEMPLATES_WITH_INPUT

REPO = Path(__file__).resolve().parents[2]
DEFINITION = {"task1_big": "Copy the input.", "task2_small": "Say the word twice.", "task3_mid": "Echo it."}
SIZES = {"task1_big": 100, "task2_small": 50, "task3_mid": 70}


def make_task(name, n):
    return {
        "Definition": [DEFINITION[name]],
        "Positive Examples": [{"input": f"pos{k}", "output": f"out{k}", "explanation": "."} for k in range(4)],
        "Negative Examples": [{"input": "neg", "output": "bad", "explanation": "."}],
        "Instances": [{"id": f"{name}-{k}", "input": f" {name} input {k} ", "output": [f"{name} answer {k}", "alt"]}
                      for k in range(n)],
    }


@pytest.fixture
def super_ni(tmp_path):
    root = tmp_path / "super_ni"
    (root / "tasks").mkdir(parents=True)
    (root / "splits" / "xlingual").mkdir(parents=True)
    for name, n in SIZES.items():
        (root / "tasks" / f"{name}.json").write_text(json.dumps(make_task(name, n)))
    # The _mmmlu_ task is listed (twice, between others) but never read: it has no task file at all.
    (root / "splits" / "xlingual" / "train_tasks.txt").write_text(
        "task1_big\ntask900_mmmlu_answer_generation_x\ntask2_small\n\ntask901_mmmlu_y\ntask3_mid\n")
    return root


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_counts_skips_and_schema(super_ni, tmp_path):
    summary = rd.convert_super_ni_data(super_ni, tmp_path / "out", seed=42)
    out = tmp_path / "out" / "super_ni_data.jsonl"
    rows = read(out)
    per_task = {name: [r for r in rows if r["id"].startswith(f"super_ni_{name}-")] for name in SIZES}
    assert {k: len(v) for k, v in per_task.items()} == {"task1_big": 80, "task2_small": 50, "task3_mid": 70}
    assert summary["tasks_used"] == 3 and summary["tasks_skipped_mmmlu"] == 2
    assert summary["zero_shot"] == 60 + 50 + 60 and summary["few_shot"] == 20 + 0 + 10
    assert summary["examples"] == len(rows) == 200
    for r in rows:
        assert set(r) == {"dataset", "id", "messages"} and r["dataset"] == "super_ni"
        user, assistant = r["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert isinstance(user["content"], str) and isinstance(assistant["content"], str)
        task, k = r["id"][len("super_ni_"):].rsplit("-", 1)
        assert assistant["content"] == f"{task} answer {k}"  # output[0], stripped, no eos
    assert len({r["id"] for r in rows}) == len(rows)  # sampled without replacement
    assert len(load_jsonl_examples(out)) == 200  # the trainer's loader accepts the file


def test_zero_shot_then_few_shot_structure(super_ni, tmp_path):
    rd.convert_super_ni_data(super_ni, tmp_path, seed=1)
    rows = [r for r in read(tmp_path / "super_ni_data.jsonl") if r["id"].startswith("super_ni_task1_big-")]
    shot_pairs = set()
    for i, r in enumerate(rows):
        prompt = r["messages"][0]["content"]
        k = r["id"].rsplit("-", 1)[1]
        query = f"task1_big input {k}"
        if i < 60:  # zero-shot: one of the weighted with-input templates, on Definition[0] and the stripped input
            allowed = {t.format(instruction=DEFINITION["task1_big"], input=query) for t, _, _ in TEMPLATES_WITH_INPUT}
            assert prompt in allowed
        else:       # few-shot: definition, two distinct positive examples, then the query
            assert prompt.startswith(DEFINITION["task1_big"] + "\n\nInput:\npos")
            assert prompt.endswith(f"Input:\n{query}\nOutput:\n")
            assert prompt.count("Input:\n") == 3 and prompt.count("Output:\n") == 3
            shots = [int(prompt.split("Input:\npos")[j][0]) for j in (1, 2)]
            assert shots[0] != shots[1]
            shot_pairs.add(tuple(shots))
            assert f"Input:\npos{shots[0]}\nOutput:\nout{shots[0]}\n\n" in prompt
    assert len(shot_pairs) > 3  # the two demonstrations are drawn at random for every instance


def test_seeded_determinism_and_sampling_convention(super_ni, tmp_path):
    rd.convert_super_ni_data(super_ni, tmp_path / "a", seed=42)
    rd.convert_super_ni_data(super_ni, tmp_path / "b", seed=42)
    rd.convert_super_ni_data(super_ni, tmp_path / "c", seed=43)
    a, b, c = ((tmp_path / x / "super_ni_data.jsonl").read_bytes() for x in "abc")
    assert a == b and a != c
    # The first random call is random.sample(instances, 80) of the first task, as in the original.
    random.seed(42)
    expected = random.sample(make_task("task1_big", 100)["Instances"], k=80)
    got = [r["id"] for r in read(tmp_path / "a" / "super_ni_data.jsonl")][:80]
    assert got == [f"super_ni_{inst['id']}" for inst in expected]


def test_missing_and_malformed_task_files(super_ni, tmp_path):
    (super_ni / "tasks" / "task2_small.json").unlink()
    with pytest.raises(FileNotFoundError, match="task2_small.json"):
        rd.convert_super_ni_data(super_ni, tmp_path / "o1")
    (super_ni / "tasks" / "task2_small.json").write_text('{"Definition": ["x"], ')
    with pytest.raises(ValueError, match=r"task2_small\.json: invalid JSON"):
        rd.convert_super_ni_data(super_ni, tmp_path / "o2")
    bad = make_task("task2_small", 5)
    bad["Instances"][3]["output"] = "not a list"
    (super_ni / "tasks" / "task2_small.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"task2_small\.json.*task2_small-3"):
        rd.convert_super_ni_data(super_ni, tmp_path / "o3")
    assert not (tmp_path / "o3" / "super_ni_data.jsonl").exists()  # no half-written output
    with pytest.raises(FileNotFoundError, match="train_tasks.txt"):
        rd.convert_super_ni_data(tmp_path / "nowhere", tmp_path / "o4")


def test_cli_main_and_other_datasets(super_ni, tmp_path):
    raw = super_ni.parent
    (raw / "code_alpaca").mkdir()
    (raw / "code_alpaca" / "code_alpaca_20k.json").write_text(json.dumps([
        {"instruction": "Write hello world in Python.", "input": "", "output": "print('hello world')"},
        {"instruction": "Add the numbers.", "input": "1 2", "output": "3"}]))
    (raw / "cot").mkdir()
    for name in ("cot_zsopt.jsonl", "cot_fsopt.jsonl"):
        (raw / "cot" / name).write_text(json.dumps({"inputs": "Q: 1+1?", "targets": "2"}) + "\n")
    summaries = rd.main(["--raw_data_dir", str(raw), "--output_dir", str(tmp_path / "processed"), "--seed", "42"])
    assert [s["dataset"] for s in summaries] == ["super_ni", "cot", "code_alpaca"]  # flan_v2 has no raw dir
    alone = tmp_path / "alone"
    rd.main(["--raw_data_dir", str(raw), "--output_dir", str(alone), "--dataset", "super_ni"])
    assert ((tmp_path / "processed" / "super_ni" / "super_ni_data.jsonl").read_bytes()
            == (alone / "super_ni" / "super_ni_data.jsonl").read_bytes())  # super_ni goes first: same file
    code = read(tmp_path / "processed" / "code_alpaca" / "code_alpaca_data.jsonl")
    assert [r["id"] for r in code] == ["code_alpaca_0", "code_alpaca_1"]
    assert code[0]["messages"][1]["content"].strip() == "print('hello world')"
    cot = read(tmp_path / "processed" / "cot" / "cot_data.jsonl")
    assert cot[0]["messages"][0]["content"] == "Q: 1+1?\n" and len(cot) == 2
    with pytest.raises(SystemExit):
        rd.main(["--raw_data_dir", str(raw), "--output_dir", str(tmp_path / "x"), "--dataset", "flan_v2"])


@pytest.mark.parametrize("how", [["open_instruct/reformat_datasets.py"], ["-m", "open_instruct.reformat_datasets"]])
def test_runs_as_script_path_and_module(super_ni, tmp_path, how):
    out = tmp_path / f"out{len(how)}"
    proc = subprocess.run([sys.executable, *how, "--raw_data_dir", str(super_ni.parent), "--output_dir", str(out),
                           "--dataset", "super_ni"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "3 tasks used, 2 skipped" in proc.stdout
    assert len(read(out / "super_ni" / "super_ni_data.jsonl")) == 200
