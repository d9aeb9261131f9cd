"""MMLU and TyDiQA evaluators on bad inputs: one line naming the file / row and exit code 2, results never written
over without --overwrite, and an adapter whose support cannot be imported is an error, not a silent fallback."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from peft import LoraConfig, PeftModel, get_peft_model

from eval.cli import EvalInputError, run_cli
from eval.mmlu import run_eval as mmlu
from eval.tydiqa import run_eval as tydiqa
from eval.utils import attach_adapter

REPO = Path(__file__).resolve().parents[2]
ROWS = [["What is 2+2?", "4", "5", "6", "7", "A"], ["Which is a fruit?", "car", "apple", "rock", "sand", "B"]]
NO_MODEL = "/nonexistent/model"  # a check that passes would fail later, on loading this


def mmlu_dir(tmp_path, text=None, rows=ROWS):
    data = tmp_path / "mmlu"
    (data / "test").mkdir(parents=True, exist_ok=True)
    path = data / "test" / "anatomy_test.csv"
    if text is None:
        pd.DataFrame(rows).to_csv(path, header=False, index=False)
    else:
        path.write_text(text)
    return data, path


def run_mmlu(data, save, model=NO_MODEL, *extra):
    return mmlu.main(["--ntrain", "0", "--data_dir", str(data), "--save_dir", str(save),
                      "--model_name_or_path", str(model), *extra])


@pytest.mark.parametrize("text,needle", [
    ('"What is 2+2?",4,5,6,7,A\n"Which is a fruit?,car,apple,rock,sand,B\n', "is not a readable CSV"),
    ("", "is empty"),
    ("What is 2+2?,4,5,6,7,A\nWhich is a fruit?,car,apple,B\n", "row 2 has 4 fields, expected 6"),
    ("What is 2+2?,4,5,6,7,A\nWhich is a fruit?,car,apple,rock,sand,E\n", "row 2 has the answer 'E'"),
    ("What is 2+2?,4,5,6,7,A,extra\n", "row 1 has 7 fields"),
    ("What is 2+2?,4,5,6,7,\n", "row 1 has the answer ''"),
])
def test_mmlu_bad_csv_names_file_and_row(tmp_path, text, needle):
    data, path = mmlu_dir(tmp_path, text)
    with pytest.raises(EvalInputError) as err:
        run_mmlu(data, tmp_path / "out")
    assert needle in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_mmlu_dev_rows_are_checked_too(tmp_path):
    data, _ = mmlu_dir(tmp_path)
    (data / "dev").mkdir()
    (data / "dev" / "anatomy_dev.csv").write_text("Q?,a,b,c,d,Z\n")
    with pytest.raises(EvalInputError, match=r"anatomy_dev.csv: row 1 has the answer 'Z'"):
        run_mmlu(data, tmp_path / "out", NO_MODEL, "--ntrain", "1")


def test_save_dir_with_results_is_refused_without_overwrite(tmp_path, tiny_checkpoint):
    data, _ = mmlu_dir(tmp_path)
    save = tmp_path / "out"
    save.mkdir()
    (save / "metrics.json").write_text('{"average_acc": 0.5}')
    with pytest.raises(EvalInputError, match="already holds results.*--overwrite"):
        run_mmlu(data, save)
    assert json.loads((save / "metrics.json").read_text()) == {"average_acc": 0.5}
    pd.DataFrame(ROWS).to_csv(data / "test" / "virology_test.csv", header=False, index=False)
    (save / "virology.csv").write_text("an earlier run's rows")
    metrics = run_mmlu(data, save, tiny_checkpoint, "--overwrite", "--subjects", "anatomy")
    assert json.loads((save / "metrics.json").read_text()) == metrics and "average_acc" in metrics
    assert sorted(p.name for p in save.iterdir()) == ["anatomy.csv", "metrics.json"]  # no stale subject left


def test_training_run_directory_is_never_a_save_dir(tmp_path):
    data, _ = mmlu_dir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("completed", "adapter_config.json", "metrics.json"):
        (run / name).write_text("{}")
    for module, argv in ((mmlu, ["--data_dir", str(data)]), (tydiqa, ["--data_dir", str(tmp_path)])):
        with pytest.raises(EvalInputError, match="is a training run directory.*subfolder"):
            module.main([*argv, "--save_dir", str(run), "--model_name_or_path", NO_MODEL, "--overwrite"])
    assert (run / "metrics.json").read_text() == "{}"


def goldp(qas, answers=True):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": "Helsinki is the capital of Finland.",
         "qas": [{"id": qid, "question": "What is the capital?",
                  "answers": [{"text": "Helsinki", "answer_start": 0}] if answers else []} for qid in qas]}]}]}


def run_tydiqa(data, save, *extra):
    return tydiqa.main(["--data_dir", str(data), "--save_dir", str(save), "--model_name_or_path", NO_MODEL, *extra])


def test_tydiqa_truncated_json_and_wrong_layout(tmp_path):
    text = json.dumps(goldp(["english-1"]))
    (tmp_path / tydiqa.DEV_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(EvalInputError, match=r"tydiqa-goldp-v1.1-dev.json: the TyDiQA GoldP file is not valid JSON"):
        run_tydiqa(tmp_path, tmp_path / "out")
    (tmp_path / tydiqa.DEV_FILE).write_text(json.dumps({"version": "1.1", "articles": []}))
    with pytest.raises(EvalInputError, match="is not in the SQuAD layout"):
        run_tydiqa(tmp_path, tmp_path / "out")
    (tmp_path / tydiqa.DEV_FILE).write_text(json.dumps(goldp(["english-1"])))
    train = json.dumps(goldp(["english-t1"]))
    (tmp_path / tydiqa.TRAIN_FILE).write_text(train[:-3])
    with pytest.raises(EvalInputError, match="tydiqa-goldp-v1.1-train.json: the TyDiQA GoldP file is not valid JSON"):
        run_tydiqa(tmp_path, tmp_path / "out")


def test_tydiqa_demo_or_question_without_answer(tmp_path):
    (tmp_path / tydiqa.DEV_FILE).write_text(json.dumps(goldp(["english-1"])))
    (tmp_path / tydiqa.TRAIN_FILE).write_text(json.dumps(goldp(["english-t1"], answers=False)))
    with pytest.raises(EvalInputError, match="the demo 'english-t1' drawn from the train file has no answer"):
        run_tydiqa(tmp_path, tmp_path / "out")
    (tmp_path / tydiqa.DEV_FILE).write_text(json.dumps(goldp(["english-1", "english-2"], answers=False)))
    with pytest.raises(EvalInputError, match="2 question\\(s\\) have no gold answer"):
        run_tydiqa(tmp_path, tmp_path / "out", "--n_shot", "0")


def test_tydiqa_save_dir_with_results_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    with pytest.raises(EvalInputError, match="already holds results"):
        run_tydiqa(tmp_path, tmp_path / "out")


def test_run_cli_one_line_exit_2(tmp_path, capsys):
    data, path = mmlu_dir(tmp_path, "")
    with pytest.raises(SystemExit) as exc:
        run_cli(mmlu.main, ["--ntrain", "0", "--data_dir", str(data), "--save_dir", str(tmp_path / "o"),
                            "--model_name_or_path", "m"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eval.mmlu.run_eval: error:") and f"{path} is empty" in err[0]
    with pytest.raises(SystemExit) as exc:
        run_cli(mmlu.main, ["--data_dir", str(data), "--model_name_or_path", "m", "--eval_batch_size", "0"])
    assert exc.value.code == 2 and "--eval_batch_size must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["eval.mmlu.run_eval", "eval.tydiqa.run_eval"])
def test_command_line_bad_data_is_one_line_exit_2(tmp_path, module):
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    (data / "test" / "anatomy_test.csv").write_text('"unterminated,1,2,3,4,A\n')
    (data / tydiqa.DEV_FILE).write_text('{"version": "1.1", "data": [')
    proc = subprocess.run([sys.executable, "-m", module, "--data_dir", str(data), "--save_dir", str(tmp_path / "o"),
                           "--model_name_or_path", NO_MODEL, *(["--ntrain", "0"] if "mmlu" in module else [])], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert ("not a readable CSV" if "mmlu" in module else "is not valid JSON") in lines[0]


def test_attach_adapter_does_not_swallow_import_errors(tmp_path, monkeypatch, tiny_llama):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "MOS", "r": 2}))
    monkeypatch.setitem(sys.modules, "open_instruct.baselines", None)  # importing it raises ImportError
    with pytest.raises(ImportError, match="is a MOS adapter, which needs this project's open_instruct package"):
        attach_adapter(tiny_llama, adapter)
    lora = tmp_path / "lora"
    get_peft_model(copy.deepcopy(tiny_llama), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(lora)
    with pytest.warns(UserWarning, match="importing open_instruct.mos / open_instruct.baselines failed"):
        model = attach_adapter(tiny_llama, lora)  # plain LoRA needs only stock PEFT: loaded, with a warning
    assert isinstance(model, PeftModel)


@pytest.mark.parametrize("module,flag,value", [(mmlu, "--ntrain", "-1"), (mmlu, "--n_instances", "0"),
                                               (mmlu, "--max_prompt_tokens", "0"),
                                               (tydiqa, "--max_num_examples_per_lang", "-1"),
                                               (tydiqa, "--n_shot", "-2"), (tydiqa, "--max_context_length", "x")])
def test_bad_numbers_are_usage_errors(tmp_path, capsys, module, flag, value):
    with pytest.raises(SystemExit) as exc:
        module.main(["--data_dir", str(tmp_path), "--model_name_or_path", NO_MODEL, f"{flag}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and ("must be >=" in err or "expected an integer" in err)
