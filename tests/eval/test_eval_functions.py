"""Each evaluator's library function, given a model loaded once, returns exactly the metrics its command line
writes to metrics.json (the command line loading the model itself), and with a save_dir writes the same per-item
files (probabilities, log-probabilities, generated texts: these differ where a setting is lost on the way)."""

import gzip
import json
from pathlib import Path

import pytest

from eval.bbh.run_eval import evaluate_bbh
from eval.bbh.run_eval import main as bbh_main
from eval.cloze.run_eval import evaluate_cloze
from eval.cloze.run_eval import main as cloze_main
from eval.codex_humaneval.run_eval import evaluate_humaneval
from eval.codex_humaneval.run_eval import main as humaneval_main
from eval.codex_humaneval.sandbox import Sandbox, SandboxUnavailable
from eval.gsm.run_eval import evaluate_gsm
from eval.gsm.run_eval import main as gsm_main
from eval.mmlu.run_eval import evaluate_mmlu
from eval.mmlu.run_eval import main as mmlu_main
from eval.tydiqa.run_eval import evaluate_tydiqa
from eval.tydiqa.run_eval import main as tydiqa_main
from eval.utils import load_hf_lm_and_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_hf_lm_and_tokenizer(str(tiny_checkpoint))


def cli_metrics(main, argv, save_dir: Path) -> dict:
    returned = main([*argv, "--save_dir", str(save_dir)])
    written = json.loads((save_dir / "metrics.json").read_text())
    assert returned == written
    return written


def item_files(save_dir: Path) -> dict[str, bytes]:
    """The per-item files of a results directory (the command line alone writes metrics.json and dataset.json)."""
    files = {str(p.relative_to(save_dir)): p.read_bytes() for p in sorted(save_dir.rglob("*")) if p.is_file()
             and p.name not in ("metrics.json", "dataset.json")}
    assert files, f"no per-item files in {save_dir}"
    return files


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mmlu(loaded, tiny_checkpoint, tmp_path):
    model, tokenizer = loaded
    argv = ["--ntrain", "1", "--data_dir", str(SAMPLES / "mmlu"), "--n_instances", "2", "--model_name_or_path",
            str(tiny_checkpoint), "--eval_batch_size", "3", "--use_chat_format", "--chat_formatting_function",
            "tokenizer"]
    expected = cli_metrics(mmlu_main, argv, tmp_path / "cli")
    settings = dict(ntrain=1, n_instances=2, batch_size=3)
    assert evaluate_mmlu(model, tokenizer, SAMPLES / "mmlu", chat_format="tokenizer", **settings) == expected
    assert list(tmp_path.iterdir()) == [tmp_path / "cli"]  # without a save_dir the function writes nothing
    evaluate_mmlu(model, tokenizer, SAMPLES / "mmlu", chat_format="tokenizer", save_dir=tmp_path / "fn", **settings)
    assert item_files(tmp_path / "fn") == item_files(tmp_path / "cli")
    evaluate_mmlu(model, tokenizer, SAMPLES / "mmlu", save_dir=tmp_path / "plain", **settings)  # no chat format
    assert item_files(tmp_path / "plain") != item_files(tmp_path / "cli")


def test_cloze(loaded, tiny_checkpoint, tmp_path):
    model, tokenizer = loaded
    arc = write_jsonl(tmp_path / "arc.jsonl", [{"id": i, "question": f"Which is a colour ({i})?",
                                                "choices": ["blue", "dog", "a table"], "gold": i % 3}
                                               for i in range(5)])
    common = ["--model_name_or_path", str(tiny_checkpoint), "--eval_batch_size", "4", "--n_instances", "3"]
    for task, source in (("mmlu", ["--data_dir", str(SAMPLES / "mmlu")]), ("arc_easy", ["--data_file", str(arc)])):
        expected = cli_metrics(cloze_main, ["--task", task, *source, *common], tmp_path / task)
        data = SAMPLES / "mmlu" if task == "mmlu" else arc
        assert evaluate_cloze(model, tokenizer, task, data, n_instances=3, batch_size=4,
                              save_dir=tmp_path / f"fn_{task}") == expected
        assert item_files(tmp_path / f"fn_{task}") == item_files(tmp_path / task)


def test_gsm(loaded, tiny_checkpoint, tmp_path):
    model, tokenizer = loaded
    data = tmp_path / "gsm"
    write_jsonl(data / "test.jsonl", [{"question": f"Tom has {i} apples and gets 2 more. How many?",
                                       "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"} for i in range(3)])
    write_jsonl(data / "cot_exemplars.jsonl", [{"question": "Ann has 2 pens and gets 3 more. How many?",
                                                "cot_answer": "2 + 3 = 5. The answer is 5.", "short_answer": "5"}])
    argv = ["--data_dir", str(data), "--n_shot", "1", "--model_name_or_path", str(tiny_checkpoint),
            "--eval_batch_size", "2", "--max_new_tokens", "6"]
    expected = cli_metrics(gsm_main, argv, tmp_path / "cli")
    assert evaluate_gsm(model, tokenizer, data, n_shot=1, max_new_tokens=6, batch_size=2,
                        save_dir=tmp_path / "fn") == expected
    assert item_files(tmp_path / "fn") == item_files(tmp_path / "cli")


def test_bbh(loaded, tiny_checkpoint, tmp_path):
    model, tokenizer = loaded
    data = tmp_path / "bbh"
    for folder in ("bbh", "cot-prompts"):
        (data / folder).mkdir(parents=True)
    for task in ("colors", "shapes"):
        (data / "cot-prompts" / f"{task}.txt").write_text(
            "header\n-----\nQ: Is it?\nA: Let's think step by step. It is. So the answer is (A).\n")
        (data / "bbh" / f"{task}.json").write_text(json.dumps({"examples": [
            {"input": f"{task} question {i}?", "target": "(A)"} for i in range(3)]}))
    argv = ["--data_dir", str(data), "--model_name_or_path", str(tiny_checkpoint), "--max_new_tokens", "5",
            "--eval_batch_size", "2"]
    for cot in (True, False):
        expected = cli_metrics(bbh_main, argv + ([] if cot else ["--no_cot"]), tmp_path / f"cli_{cot}")
        assert evaluate_bbh(model, tokenizer, data, cot=cot, max_new_tokens=5, batch_size=2,
                            save_dir=tmp_path / f"fn_{cot}") == expected
        assert item_files(tmp_path / f"fn_{cot}") == item_files(tmp_path / f"cli_{cot}")


def test_tydiqa(loaded, tiny_checkpoint, tmp_path):
    model, tokenizer = loaded
    argv = ["--data_dir", str(SAMPLES / "tydiqa"), "--max_num_examples_per_lang", "2", "--model_name_or_path",
            str(tiny_checkpoint), "--eval_batch_size", "2", "--use_chat_format", "--chat_formatting_function", "tulu"]
    expected = cli_metrics(tydiqa_main, argv, tmp_path / "cli")
    got = evaluate_tydiqa(model, tokenizer, SAMPLES / "tydiqa", max_num_examples_per_lang=2, chat_format="tulu",
                          batch_size=2, save_dir=tmp_path / "fn")
    assert got == expected and item_files(tmp_path / "fn") == item_files(tmp_path / "cli")


def test_humaneval(loaded, tiny_checkpoint, tmp_path):
    try:
        sandbox = Sandbox()
    except SandboxUnavailable as err:
        pytest.skip(f"no working bubblewrap here ({err})")
    model, tokenizer = loaded
    problems = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(problems, "wt") as f:
        f.write(json.dumps({"task_id": "Tiny/0", "entry_point": "add", "canonical_solution": "    return a + b\n",
                            "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
                            "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}) + "\n")
    argv = ["--data_file", str(problems), "--model_name_or_path", str(tiny_checkpoint), "--temperature", "0",
            "--unbiased_sampling_size_n", "2", "--max_new_tokens", "8", "--n_workers", "1"]
    expected = cli_metrics(humaneval_main, argv, tmp_path / "cli")
    got = evaluate_humaneval(model, tokenizer, problems, n=2, temperature=0, max_new_tokens=8, sandbox=sandbox,
                             n_workers=1, save_dir=tmp_path / "fn")
    assert got == expected and item_files(tmp_path / "fn") == item_files(tmp_path / "cli")
