"""The replication command, reduced: a tiny model, two training steps a run, through the paper's launcher."""

import csv
import json
from pathlib import Path

import pytest
from replicate_helpers import fake_bigbench

from open_instruct.data.bigbench_ni import convert_tree
from open_instruct.reformat_datasets import convert_super_ni_data
from open_instruct.run_spec import read_run_spec
from open_instruct.tiny import TINY_ARCHS, save_tiny_checkpoint
from replication.__main__ import main
from replication.grid import SETTINGS, build_grid

REPO = Path(__file__).resolve().parents[2]


def lora_params_per_rank(arch: str = "llama") -> int:
    """Σ over the 7 projections of (in + out), times layers: an independent count from the config."""
    cfg = TINY_ARCHS[arch]
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = h // cfg["num_attention_heads"] * cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    return layers * ((h + h) + (h + kv) * 2 + (h + h) + (h + i) * 2 + (i + h))


def test_grid_order_and_budget_settings():
    rows = build_grid(SETTINGS["cpu"])
    stages = [r.stage for r in rows]
    assert stages.index("regime") < stages.index("lr") < stages.index("main") < stages.index("baselines") \
        < stages.index("ablations")
    assert {r.label for r in rows if r.stage == "regime"} == {"LoRA r=e", "LoRA r=8e"}
    lrs = {r.lr for r in rows if r.stage == "lr" and r.label == "MoS"}
    assert len(lrs) >= 3 and max(map(float, lrs)) / min(map(float, lrs)) >= 10
    assert {r.seed for r in rows if r.stage == "main"} == {0, 1}
    assert len({r.row_id for r in rows}) == len(rows)
    # the comparison at one budget (MoS vs LoRA r=e, two seeds) is ready before the references' sweeps start
    first_ref_sweep = min(i for i, r in enumerate(rows) if r.stage == "lr" and r.label in ("LoRA r=4e", "LoRA r=8e"))
    assert max(i for i, r in enumerate(rows) if r.stage == "main" and r.label in ("LoRA r=e", "MoS")) < first_ref_sweep
    # every method in the main table, the larger-rank references included, is swept and run at its own rate
    main_labels = {r.label for r in rows if r.stage == "main"}
    assert {"LoRA r=4e", "LoRA r=8e"} <= main_labels
    for label in main_labels:
        assert {r.lr for r in rows if r.stage == "main" and r.label == label} == {f"best:{label}"}
        assert len({r.lr for r in rows if r.stage == "lr" and r.label == label}) >= 3


def test_a_setting_can_restrict_the_grid_to_some_methods():
    from dataclasses import replace

    pilot = replace(SETTINGS["cpu"], labels=("LoRA r=e", "LoRA r=8e"))
    rows = build_grid(pilot)
    assert {r.label for r in rows} == {"LoRA r=e", "LoRA r=8e"}
    assert {r.stage for r in rows} == {"regime", "lr", "main"}
    full = [r for r in build_grid(SETTINGS["cpu"]) if r.label in pilot.labels]
    assert [r.row_id for r in rows] == [r.row_id for r in full]  # the same rows, in the same order


def test_bad_input_paths_stop_the_grid_before_any_training(tmp_path, capsys):
    """A folder given for a file (the ARC-Easy folder instead of its test.jsonl), a missing path or a file given for
    a folder is one line naming the path and the flag, before the base model is scored or any run starts."""
    data = tmp_path / "data"
    (data / "processed" / "super_ni").mkdir(parents=True)
    (data / "processed" / "super_ni" / "super_ni_data.jsonl").write_text("{}\n")
    (data / "heldout").mkdir()
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "arc").mkdir()
    (tmp_path / "arc" / "test.jsonl").write_text("{}\n")
    model = tmp_path / "model"
    model.mkdir()
    common = ["run", "--setting", "tiny", "--model", str(model), "--data_dir", str(data), "--runs_dir",
              str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"), "--threads", "1"]
    cases = [
        (["--mmlu_dir", str(tmp_path / "mmlu"), "--arc_file", str(tmp_path / "arc")],
         f"{tmp_path / 'arc'} is a folder, but arc_file must be a file (it holds test.jsonl: --arc_file "
         f"{tmp_path / 'arc' / 'test.jsonl'}); check --arc_file."),
        (["--mmlu_dir", str(tmp_path / "arc" / "test.jsonl"), "--arc_file", str(tmp_path / "arc" / "test.jsonl")],
         f"{tmp_path / 'arc' / 'test.jsonl'} is a file, but mmlu_dir must be a folder; check --mmlu_dir."),
        (["--mmlu_dir", str(tmp_path / "nope"), "--arc_file", str(tmp_path / "arc" / "test.jsonl")],
         f"{tmp_path / 'nope'} does not exist; run: bash scripts/prepare_eval_data.sh (or --mmlu_dir)"),
    ]
    for extra, message in cases:
        assert main(common + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_reduced_replication_run(tmp_path, capsys):
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "replication"
    convert_tree(fake_bigbench(tmp_path / "bb", n_families=5, n_examples=30), data, num_heldout_families=1,
                 heldout_per_task=2, min_examples=10, seed=0)
    convert_super_ni_data(data / "super_ni", data / "processed" / "super_ni", seed=42)
    arc = tmp_path / "arc_easy.jsonl"
    arc.write_text("".join(
        json.dumps({"id": i, "question": f"Which is a colour ({i})?", "choices": ["blue", "dog"], "gold": 0}) + "\n"
        for i in range(6)))
    args = ["run", "--setting", "tiny", "--model", str(model), "--data_dir", str(data),
            "--mmlu_dir", str(REPO / "data/samples/mmlu"), "--arc_file", str(arc), "--runs_dir", str(tmp_path / "runs"),
            "--results_dir", str(tmp_path / "results"), "--threads", "1"]
    assert main([*args, "--stages", "base", "regime", "--max_runs", "2", "--parallel", "2"]) == 0  # seed 0 runs
    assert main([*args, "--stages", "lr", "--max_runs", "2"]) == 0  # LoRA r=e and MoS at the first rate
    table = tmp_path / "results" / "tiny" / "runs.csv"
    rows = list(csv.DictReader(table.open()))
    by = {(r["stage"], r["label"], r["seed"], r["lr"]): r for r in rows}
    per_rank, e = lora_params_per_rank(), SETTINGS["tiny"].e
    assert int(by[("regime", "LoRA r=e", "0", "1e-3")]["trainable_params"]) == e * per_rank
    assert int(by[("regime", "LoRA r=8e", "0", "1e-3")]["trainable_params"]) == 8 * e * per_rank
    assert int(by[("lr", "MoS", "0", "3e-4")]["trainable_params"]) == e * per_rank
    assert by[("base", "base model", "0", "-")]["trainable_params"] == "0"
    for r in rows:
        for m in ("seen_loss", "unseen_loss", "mmlu_cloze", "arc_easy", "mmlu_letter"):
            assert r[m] != "" and float(r[m]) == float(r[m]), (r["run_key"], m)
    # a rerun skips what is done: only the two seed-1 regime runs are left to make
    before = table.read_text()
    capsys.readouterr()
    assert main([*args, "--stages", "base", "regime", "--dry_run"]) == 0
    todo = [line for line in capsys.readouterr().out.splitlines() if "would run" in line]
    assert len(todo) == 2 and all("_sd1_" in line for line in todo), todo
    assert table.read_text() == before
    assert main(["report", "--setting", "tiny", "--results_dir", str(tmp_path / "results")]) == 0
    tables = (tmp_path / "results" / "tiny" / "tables.md").read_text()
    assert "| LoRA r=8e |" in tables
    runs_section = tables.split("## Runs and wall times", 1)[1]
    assert all(runs_section.count(f"`{key}`") == 1 for key in {r["run_key"] for r in rows})
    # each run's recorded command carries the thread count it trained with (--threads), so it reproduces
    assert all("OMP_NUM_THREADS=1 " in r["command"] for r in rows if r["run_key"] != "base")
    assert all(f"{REPO}/" not in r["command"] + r["run_dir"] for r in rows)  # works from any clone's root
    for r in rows:  # every run directory has the launcher's run.json, recording what the row says
        if r["run_key"] != "base":
            spec = read_run_spec(REPO / r["run_dir"] if not Path(r["run_dir"]).is_absolute() else r["run_dir"])
            assert spec.model == str(model) and spec.method.name == r["mode"] and spec.training.seed == int(r["seed"])
            assert spec.data.chat_format == "tokenizer" and spec.training.learning_rate == float(r["lr"])
    # reproduce: one row retrained from scratch elsewhere and rescored gives its recorded numbers; the table is kept
    key = by[("lr", "MoS", "0", "3e-4")]["run_key"]
    capsys.readouterr()
    assert main(["reproduce", *args[1:], "--run_key", key]) == 0
    printed = {line.split("|")[1].strip(): line.split("|")[2:4] for line in capsys.readouterr().out.splitlines()
               if line.startswith("| ") and "metric" not in line}
    assert set(printed) == {"seen_loss", "unseen_loss", "mmlu_cloze", "arc_easy", "mmlu_letter"}
    assert all(old.strip() == new.strip() for old, new in printed.values()), printed
    assert (tmp_path / "runs" / "_reproduce" / "tiny" / key).is_dir() and table.read_text() == before
    assert main(["reproduce", *args[1:], "--run_key", "no_such_run"]) == 2
    assert "is not in" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cpu", "cpu_qv", "gpu"])
def test_setting_budgets_on_smollm2_shape(name):
    """Each setting's ranks put MoS, PRoLoRA and Tied-LoRA at LoRA r=e's budget on SmolLM2-135M's shape."""
    from transformers import LlamaConfig

    from open_instruct.param_table import Row, measure

    s = SETTINGS[name]
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152)
    targets = "all-linear" if s.lora_modules == "all" else s.lora_modules.split(",")
    per_layer = {"all": (576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 3, "q_proj,v_proj": (576 + 576) + (576 + 192)}
    budget = s.e * 30 * per_layer[s.lora_modules]
    assert measure(config, Row("lora", s.e), targets).trainable == budget
    assert measure(config, Row("mos", s.mos_r, p=s.mos_p, e=s.e, c=s.mos_c), targets).trainable == budget
    assert measure(config, Row("prolora", s.mos_r, p=0, c=s.mos_r // s.e), targets).trainable == budget
    tied = measure(config, Row("tied_lora", s.tied_lora_r), targets).trainable
    assert abs(tied - budget) / budget < 0.01, (tied, budget)


def test_a_run_is_scored_on_the_model_and_chat_format_its_run_json_records(tmp_path, monkeypatch):
    """replication.__main__.score takes the base model and chat format from run.json; a run directory made before
    run.json is scored on the setting's model in the tokenizer's format."""
    import replication.score
    from open_instruct.run_spec import DataSpec, MethodSpec, RunSpec, TrainingSpec, write_run_spec
    from replication.__main__ import score

    calls = []
    monkeypatch.setattr(replication.score, "score_run", lambda model, adapter, data, s, chat_format: calls.append(
        (model, adapter, chat_format)) or {})
    paths = {"model": tmp_path / "setting-model", "heldout_dir": tmp_path, "mmlu_dir": tmp_path, "arc_file": tmp_path}
    old, new = tmp_path / "old_run", tmp_path / "new_run"
    old.mkdir(), new.mkdir()
    write_run_spec(RunSpec(launcher="ft_llama2_7b_superni_mmlu.sh", task="superni", run_prefix="x",
                           started="20260101-000000", positional=("2",) * 10, method=MethodSpec("lora", 2, 1, 0, 2, 2, 1),
                           model="/models/recorded", data=DataSpec("t.jsonl", chat_format="tulu"),
                           training=TrainingSpec(seed=0, learning_rate=1e-3)), new)
    score(new, SETTINGS["tiny"], paths)
    score(old, SETTINGS["tiny"], paths)
    score(None, SETTINGS["tiny"], paths)
    assert calls == [("/models/recorded", str(new), "tulu"), (str(paths["model"]), str(old), "tokenizer"),
                     (str(paths["model"]), None, "tokenizer")]
