"""BIG-bench -> natural-instructions conversion, and the SuperNI path of reformat_datasets on its output."""

import json

import pytest
from replicate_helpers import fake_bigbench

from open_instruct.data.bigbench_ni import convert_example, convert_tree, main
from open_instruct.reformat_datasets import convert_super_ni_data


def test_convert_example_targets_and_choices():
    assert convert_example({"input": "q", "target": ["", "b", "c"]}, True) == ("q", "b")
    scored = {"input": "q?", "target_scores": {"x": 0, "y": 1, "z": 1}}
    assert convert_example(scored, True) == ("q?\nOptions:\n- x\n- y\n- z", "y")  # first top-scored choice
    assert convert_example(scored, False) == ("q?", "y")
    assert convert_example({"input": "q", "target": ""}, True) is None
    assert convert_example({"input": 3, "target": "a"}, True) is None


def test_tree_layout_heldout_and_exclusions(tmp_path):
    tasks = fake_bigbench(tmp_path / "bb", n_families=6, n_examples=40)
    out = tmp_path / "out"
    m = convert_tree(tasks, out, num_heldout_families=2, heldout_per_task=5, min_examples=10, seed=3)
    assert "navigate" in m["excluded_families"] and "navigate" not in m["train_families"] + m["heldout_families"]
    assert "too_long" not in m["train_families"] + m["heldout_families"]  # every example over max_input_chars
    assert len(m["heldout_families"]) == 2 and not set(m["heldout_families"]) & set(m["train_families"])
    listed = (out / "super_ni/splits/xlingual/train_tasks.txt").read_text().split()
    assert len(listed) == m["train_tasks"]
    families_of = {name.split("__")[0] for name in listed}
    assert families_of == set(m["train_families"])  # held-out families contribute no training task
    seen = [json.loads(x) for x in (out / "heldout/seen_tasks.jsonl").read_text().splitlines()]
    unseen = [json.loads(x) for x in (out / "heldout/unseen_tasks.jsonl").read_text().splitlines()]
    assert {r["task"].split("__")[0] for r in unseen} == set(m["heldout_families"])
    assert len(seen) == 5 * len(listed) == m["seen_heldout"]
    train_ids = set()
    for name in listed:
        task = json.loads((out / "super_ni/tasks" / f"{name}.json").read_text())
        assert len(task["Positive Examples"]) == 3
        train_ids |= {inst["id"] for inst in task["Instances"]}
        if name.startswith("choices__"):
            assert task["Definition"][0].endswith("\nAnswer with one colour.")
            assert task["Instances"][0]["input"].endswith("Options:\n- red\n- blue\n- green")
            assert task["Instances"][0]["output"] == ["blue"]
    assert not train_ids & {r["id"] for r in seen + unseen}  # held-out instances never reach training
    summary = convert_super_ni_data(out / "super_ni", tmp_path / "processed", zero_shot_examples_per_task=4,
                                    few_shot_examples_per_task=2, seed=42)
    assert summary["tasks_used"] == len(listed) and summary["examples"] == 6 * len(listed)


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["--tasks_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing is not a directory" in err[0]
    tasks = fake_bigbench(tmp_path / "bb", n_families=2)
    assert main(["--tasks_dir", str(tasks), "--output_dir", str(tmp_path / "o"), "--num_heldout_families", "9"]) == 2
    assert "need more than num_heldout_families=9" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [0, 1])
def test_conversion_is_deterministic(tmp_path, seed):
    tasks = fake_bigbench(tmp_path / "bb")
    a = convert_tree(tasks, tmp_path / "a", num_heldout_families=2, min_examples=10, seed=seed)
    b = convert_tree(tasks, tmp_path / "b", num_heldout_families=2, min_examples=10, seed=seed)
    assert a["heldout_families"] == b["heldout_families"]
    assert (tmp_path / "a/heldout/seen_tasks.jsonl").read_text() == (tmp_path / "b/heldout/seen_tasks.jsonl").read_text()
