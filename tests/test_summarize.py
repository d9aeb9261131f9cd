"""Summarizers on a fake output/ tree: --ts filtering, skipped runs, columns, CSV content, parsing, plot."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from open_instruct import summarize
from open_instruct.summarize import MMLU, TYDIQA

ROOT = Path(__file__).resolve().parents[1]
MOS_A = ("LLaMA2_7b_MoS_superni_20240101-120000_GPU_0,1_r_8_lr_2e-4_sd_0_ft_mode_mos_init_lora_A_vec_value_1"
         "_init_lora_A_vec_std_0_valid_param_private_r_1_valid_param_lora_r_2_num_chunk_4")
MOS_B = ("LLaMA2_7b_MoS_superni_20240102-080000_GPU_3_r_16_lr_0.0002_sd_1_ft_mode_mos_init_lora_A_vec_value_1"
         "_init_lora_A_vec_std_0_valid_param_private_r_2_valid_param_lora_r_4_num_chunk_8")
LORA = ("LLaMA2_7b_MoS_superni_20240103-090000_GPU_0_r_2_lr_2e-4_sd_0_ft_mode_lora_init_lora_A_vec_value_1"
        "_init_lora_A_vec_std_0_valid_param_private_r_2_valid_param_lora_r_2_num_chunk_1")
OLD = ("LLaMA2_7b_MoS_superni_20231201-000000_GPU_0_r_8_lr_1e-4_sd_0_ft_mode_mos_init_lora_A_vec_value_1"
       "_init_lora_A_vec_std_0_valid_param_private_r_1_valid_param_lora_r_2_num_chunk_4")

CATS = ("STEM", "humanities", "social sciences", "other (business, health, misc.)")


def write(path, obj, age_h=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    mtime = time.time() - age_h * 3600
    os.utime(path, (mtime, mtime))


def mmlu_metrics(base):
    return {"average_acc": base, "subcat_acc": {}, "cat_acc": {c: base + i / 100 for i, c in enumerate(CATS)}}


def tydiqa_metrics(f1, em):
    return {"english": {"exact_match": em, "f1": f1}, "average": {"f1": f1, "exact_match": em}}


@pytest.fixture
def output(tmp_path):
    out = tmp_path / "output"
    # a MoS run, 1 hour old, trainable params in all_results.json
    write(out / MOS_A / "all_results.json", {"train_loss": 1.25, "eval_loss": 1.5, "train_runtime": 7200,
                                             "trainable_params": 4997120}, age_h=1)
    write(out / MOS_A / "mmlu_results" / "metrics.json", mmlu_metrics(0.40))
    write(out / MOS_A / "tydiqa_results" / "metrics.json", tydiqa_metrics(30.0, 20.0))
    write(out / MOS_A / "checkpoint-1000" / "all_results.json", {"train_loss": 9.0})  # ignored
    # another MoS run in a nested folder; trainable params only in the run's metrics.json
    write(out / "3B" / MOS_B / "all_results.json", {"train_loss": 1.0, "eval_loss": 1.1, "train_runtime": 3600},
          age_h=2)
    write(out / "3B" / MOS_B / "metrics.json", {"run_name": "x", "trainable_params": 9994240})
    write(out / "3B" / MOS_B / "mmlu_results" / "metrics.json", mmlu_metrics(0.45))
    write(out / "3B" / MOS_B / "tydiqa_results" / "metrics.json", tydiqa_metrics(35.0, 25.0))
    # a LoRA run with no eval_loss and no parameter count
    write(out / LORA / "all_results.json", {"train_loss": 1.3, "train_runtime": 1800}, age_h=3)
    write(out / LORA / "mmlu_results" / "metrics.json", mmlu_metrics(0.38))
    # too old for --ts 6
    write(out / OLD / "all_results.json", {"train_loss": 2.0, "eval_loss": 2.0, "train_runtime": 360}, age_h=10)
    write(out / OLD / "mmlu_results" / "metrics.json", mmlu_metrics(0.30))
    # broken runs: missing eval, corrupt JSON
    write(out / "no_eval_run" / "all_results.json", {"train_loss": 1.0, "eval_loss": 1.0, "train_runtime": 60})
    write(out / "corrupt_run" / "all_results.json", {"train_loss": 1.0, "eval_loss": 1.0, "train_runtime": 60})
    write(out / "corrupt_run" / "mmlu_results" / "metrics.json", '{"average_acc": 0.4,')
    write(out / "corrupt_run" / "tydiqa_results" / "metrics.json", '[1, 2]')
    # a run whose name is not the launcher's, and a base-model evaluation without training
    write(out / "my_custom_run" / "all_results.json", {"train_loss": 0.9, "eval_loss": 0.95, "train_runtime": 900})
    write(out / "my_custom_run" / "mmlu_results" / "metrics.json", mmlu_metrics(0.41))
    write(out / "base_llama2_7b" / "mmlu_results" / "metrics.json", mmlu_metrics(0.35), age_h=0.5)
    return out


def test_parse_run_name():
    assert summarize.parse_run_name(MOS_A) == {"r": 8, "seed": 0, "lr": 2e-4, "ft_mode": "mos", "p": 1, "e": 2,
                                               "c": 4}
    assert summarize.parse_run_name("MoS_superni_" + MOS_B.split("superni_")[1])["c"] == 8
    assert summarize.parse_run_name("my_custom_run") == dict.fromkeys(["r", "seed", "lr", "ft_mode", "p", "e", "c"])


def test_mmlu_summary_columns_rows_and_csv(output, tmp_path, capsys):
    csv = tmp_path / "mmlu.csv"
    df = summarize.main(MMLU, ["--output_root", str(output), "--csv", str(csv)])
    assert list(df.columns) == ["dir", "train_loss", "eval_loss", "time_h", "MMLU_acc_STEM", "MMLU_acc_humanities",
                                "MMLU_acc_socialsciences", "MMLU_acc_other", "MMLU_acc",
                                "r", "seed", "lr", "ft_mode", "p", "e", "c", "trainable_params", "path"]
    # sorted by path; OLD is filtered out by the default --ts 6; checkpoint folders are ignored
    assert df["dir"].tolist() == [MOS_B, MOS_A, LORA, "base_llama2_7b", "my_custom_run"]
    out = capsys.readouterr().out
    assert "Skipped 2 run(s)" in out
    assert "no_eval_run: missing mmlu_results/metrics.json" in out
    assert "corrupt_run: corrupt mmlu_results/metrics.json" in out

    back = pd.read_csv(csv, keep_default_na=False, dtype=str)
    assert list(back.columns) == list(df.columns)
    a = back.set_index("dir").loc[MOS_A]
    assert float(a["train_loss"]) == 1.25 and float(a["eval_loss"]) == 1.5 and float(a["time_h"]) == 2.0
    assert float(a["MMLU_acc_STEM"]) == pytest.approx(0.40) and float(a["MMLU_acc_other"]) == pytest.approx(0.43)
    assert float(a["MMLU_acc_socialsciences"]) == pytest.approx(0.42) and float(a["MMLU_acc"]) == pytest.approx(0.40)
    assert (a["r"], a["seed"], a["ft_mode"], a["p"], a["e"], a["c"], a["trainable_params"]) == \
        ("8", "0", "mos", "1", "2", "4", "4997120")
    assert float(a["lr"]) == 2e-4 and a["path"] == MOS_A
    b = back.set_index("dir").loc[MOS_B]
    assert b["trainable_params"] == "9994240" and b["path"] == f"3B/{MOS_B}" and float(b["time_h"]) == 1.0
    lora = back.set_index("dir").loc[LORA]
    assert lora["eval_loss"] == "" and lora["trainable_params"] == "" and lora["ft_mode"] == "lora"
    custom = back.set_index("dir").loc["my_custom_run"]
    assert [custom[c] for c in ["r", "seed", "lr", "ft_mode", "p", "e", "c"]] == [""] * 7
    assert float(custom["MMLU_acc"]) == pytest.approx(0.41)
    base = back.set_index("dir").loc["base_llama2_7b"]
    assert base["train_loss"] == base["time_h"] == "" and float(base["MMLU_acc"]) == pytest.approx(0.35)


def test_ts_filtering(output, tmp_path):
    def dirs(*extra):
        return summarize.main(MMLU, ["--output_root", str(output), "--csv", str(tmp_path / "s.csv"), *extra])["dir"]

    assert OLD in dirs("--ts", "-1").tolist() and len(dirs("--ts", "-1")) == 6
    assert dirs("--ts", "1.5").tolist() == [MOS_A, "base_llama2_7b", "my_custom_run"]
    assert dirs("--ts", "0.25").tolist() == ["my_custom_run"]
    assert "base_llama2_7b" not in dirs("--skip_eval_only").tolist()


@pytest.mark.parametrize("ts", ["0", "-2", "nan", "NaN", "inf", "-inf", "abc", ""])
def test_bad_ts_is_one_line_exit_2(output, tmp_path, capsys, ts):
    csv = tmp_path / "s.csv"
    with pytest.raises(SystemExit) as exc:
        summarize.main(MMLU, ["--output_root", str(output), "--csv", str(csv), f"--ts={ts}"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--ts" in err and "-1" in err
    assert not csv.exists()


def test_no_runs_keeps_an_earlier_csv(output, tmp_path, capsys):
    csv = tmp_path / "s.csv"
    summarize.main(MMLU, ["--output_root", str(output), "--csv", str(csv), "--ts", "-1"])
    before = csv.read_text()
    assert len(pd.read_csv(csv)) == 6
    empty = tmp_path / "empty_output"
    empty.mkdir()
    df = summarize.main(MMLU, ["--output_root", str(empty), "--csv", str(csv)])
    assert df.empty and csv.read_text() == before
    assert "left unchanged" in capsys.readouterr().out
    fresh = tmp_path / "fresh.csv"
    summarize.main(MMLU, ["--output_root", str(empty), "--csv", str(fresh)])
    assert not fresh.exists()


def test_tydiqa_summary(output, tmp_path, capsys):
    csv = tmp_path / "tydiqa.csv"
    df = summarize.main(TYDIQA, ["--output_root", str(output), "--csv", str(csv), "--ts", "-1"])
    assert list(df.columns)[:6] == ["dir", "train_loss", "eval_loss", "time_h", "f1", "em"]
    assert df["dir"].tolist() == [MOS_B, MOS_A]
    back = pd.read_csv(csv).set_index("dir")
    assert back.loc[MOS_A, "f1"] == 30.0 and back.loc[MOS_A, "em"] == 20.0 and back.loc[MOS_B, "em"] == 25.0
    out = capsys.readouterr().out
    assert "corrupt_run: corrupt tydiqa_results/metrics.json" in out
    assert f"{LORA}: missing tydiqa_results/metrics.json" in out


def test_plot_writes_a_png(output, tmp_path):
    png = tmp_path / "plots" / "mmlu.png"
    summarize.main(MMLU, ["--output_root", str(output), "--csv", str(tmp_path / "s.csv"), "--ts", "-1",
                          "--plot", str(png)])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_missing_output_root_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        summarize.main(MMLU, ["--output_root", str(tmp_path / "nope"), "--csv", str(tmp_path / "s.csv")])
    assert exc.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_top_level_script(output, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tydiqa_summarize.py"), "--output_root", str(output),
                             "--ts", "-1"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tydiqa_summary.csv").is_file() and "Skipped" in result.stdout
