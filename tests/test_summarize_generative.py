"""BBH, GSM8K and HumanEval summarizers: two-part results (cot/no_cot, pass1/pass10), dataset labels, scripts."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from open_instruct import summarize
from open_instruct.summarize import BBH, CODEX, GSM

ROOT = Path(__file__).resolve().parents[1]
RUN = ("LLaMA2_7b_MoS_flan_v2_20240101-120000_GPU_0_r_8_lr_2e-4_sd_0_ft_mode_mos_init_lora_A_vec_value_1"
       "_init_lora_A_vec_std_0_valid_param_private_r_1_valid_param_lora_r_2_num_chunk_4")
LABEL = "BBH (rebuilt from BIG-bench)"


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def output(tmp_path):
    out = tmp_path / "output"
    write(out / RUN / "all_results.json", {"train_loss": 1.0, "eval_loss": 1.2, "train_runtime": 3600,
                                           "trainable_params": 4997120})
    write(out / RUN / "bbh_results" / "cot" / "metrics.json", {"a": 0.5, "b": 0.25, "average_exact_match": 0.375})
    write(out / RUN / "bbh_results" / "cot" / "dataset.json", {"name": LABEL, "source": "x", "cot": True})
    write(out / RUN / "bbh_results" / "no_cot" / "metrics.json", {"a": 0.1, "average_exact_match": 0.1})
    write(out / RUN / "gsm_results" / "metrics.json", {"exact_match": 0.125})
    write(out / RUN / "codex_results" / "pass1" / "metrics.json", {"pass@1": 0.2, "pass@5": 0.3})
    write(out / RUN / "codex_results" / "pass10" / "metrics.json", {"pass@10": 0.4})
    # an eval-only base model with only the CoT BBH run and pass1; a run without any of these results
    write(out / "base" / "bbh_results" / "cot" / "metrics.json", {"average_exact_match": 0.3})
    write(out / "base" / "codex_results" / "pass1" / "metrics.json", {"pass@1": 0.05})
    write(out / "trained_only" / "all_results.json", {"train_loss": 2.0})
    write(out / "broken" / "all_results.json", {"train_loss": 2.0})
    write(out / "broken" / "gsm_results" / "metrics.json", {"accuracy": 1})
    return out


def table(benchmark, output, tmp_path, capsys):
    csv = tmp_path / f"{benchmark.name}.csv"
    df = summarize.main(benchmark, ["--output_root", str(output), "--csv", str(csv), "--ts", "-1"])
    back = pd.read_csv(csv).set_index("dir")
    assert list(back.reset_index().columns) == list(df.columns)
    return back, capsys.readouterr().out


def test_bbh_summary(output, tmp_path, capsys):
    back, out = table(BBH, output, tmp_path, capsys)
    assert list(back.columns[:6]) == ["train_loss", "eval_loss", "time_h", "BBH_cot_em", "BBH_no_cot_em", "dataset"]
    assert back.loc[RUN, "BBH_cot_em"] == 0.375 and back.loc[RUN, "BBH_no_cot_em"] == 0.1
    assert back.loc[RUN, "dataset"] == LABEL and back.loc[RUN, "e"] == 2
    assert back.loc["base", "BBH_cot_em"] == 0.3 and pd.isna(back.loc["base", "BBH_no_cot_em"])
    assert LABEL in out and "trained_only: missing bbh_results/cot/metrics.json and bbh_results/no_cot" in out


def test_gsm_and_codex_summaries(output, tmp_path, capsys):
    back, out = table(GSM, output, tmp_path, capsys)
    assert back.loc[RUN, "GSM_em"] == 0.125 and list(back.index) == [RUN]
    assert "broken: gsm_results/metrics.json has no 'exact_match' entry" in out
    back, _ = table(CODEX, output, tmp_path, capsys)
    assert back.loc[RUN, "pass@1"] == 0.2 and back.loc[RUN, "pass@10"] == 0.4
    assert back.loc["base", "pass@1"] == 0.05 and pd.isna(back.loc["base", "pass@10"])


@pytest.mark.parametrize("script", ["bbh_summarize.py", "gsm_summarize.py", "codex_summarize.py"])
def test_top_level_scripts(output, tmp_path, script):
    png = tmp_path / "plot.png"
    result = subprocess.run([sys.executable, str(ROOT / script), "--output_root", str(output), "--ts", "-1",
                             "--plot", str(png)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / script.replace("summarize.py", "summary.csv")).is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
