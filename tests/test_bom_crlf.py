"""Every reader of text files accepts a UTF-8 byte-order mark (Windows editors, PowerShell) and Windows line ends,
reading exactly what it reads from the plain file: one test per reader."""

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BOM = b"\xef\xbb\xbf"
VARIANTS = ["bom", "crlf", "bom+crlf"]


def variant(content: bytes, kind: str) -> bytes:
    if "crlf" in kind:
        content = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return BOM + content if "bom" in kind else content


def write_pair(tmp_path: Path, name: str, content: bytes, kind: str) -> tuple[Path, Path]:
    """``(plain file, the same content as kind)``, each named ``name`` in its own folder."""
    plain, other = tmp_path / "plain" / name, tmp_path / kind.replace("+", "_") / name
    for path, data in ((plain, content), (other, variant(content, kind))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return plain, other


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


CHAT = jsonl({"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]},
             {"prompt": "2+2=", "completion": "4"})


@pytest.mark.parametrize("kind", VARIANTS)
def test_training_jsonl(tmp_path, kind):
    from open_instruct.data.loading import load_jsonl_examples

    plain, other = write_pair(tmp_path, "train.jsonl", CHAT, kind)
    assert load_jsonl_examples(other) == load_jsonl_examples(plain)


@pytest.mark.parametrize("kind", VARIANTS)
def test_training_text_jsonl(tmp_path, kind):
    from open_instruct.data.loading import load_jsonl_examples
    from open_instruct.data.text import is_text_file, validate_text_record

    plain, other = write_pair(tmp_path, "text.jsonl", jsonl({"text": "Ein Text."}, {"text": "Noch einer."}), kind)
    assert is_text_file(other)
    assert (load_jsonl_examples(other, validate=validate_text_record)
            == load_jsonl_examples(plain, validate=validate_text_record))


@pytest.mark.parametrize("kind", VARIANTS)
def test_superni_task_files_and_task_list(tmp_path, kind):
    from open_instruct.reformat_datasets import convert_super_ni_data

    src = REPO / "data" / "samples" / "natural-instructions"
    trees = {}
    for name, transform in (("plain", lambda b: b), (kind, lambda b: variant(b, kind))):
        tree = tmp_path / name.replace("+", "_") / "ni"
        for path in src.rglob("*"):
            if path.is_file():
                target = tree / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(transform(path.read_bytes()))
        out = tree.parent / "out"
        convert_super_ni_data(tree, out, seed=0)
        trees[name] = sorted((p.name, p.read_text(encoding="utf-8")) for p in out.rglob("*.jsonl"))
    assert trees[kind] == trees["plain"] and trees["plain"]


@pytest.mark.parametrize("kind", VARIANTS)
def test_mmlu_csv(tmp_path, kind):
    from eval.mmlu.run_eval import read_split

    content = b'What is 2+2?,4,5,6,7,A\n"Which, of these, is a fruit?",car,apple,rock,sand,B\n'
    plain, other = write_pair(tmp_path, "test/anatomy_test.csv", content, kind)
    expected = read_split(plain.parent.parent, "test", "anatomy")
    got = read_split(other.parent.parent, "test", "anatomy")
    pd.testing.assert_frame_equal(got, expected)
    assert got.iloc[0, 0] == "What is 2+2?"  # no BOM glued to the first question


@pytest.mark.parametrize("kind", VARIANTS)
def test_cloze_mmlu_csv_and_arc_jsonl(tmp_path, kind):
    from eval.cloze.run_eval import arc_questions, mmlu_questions

    plain, other = write_pair(tmp_path, "test/anatomy_test.csv", b"What is 2+2?,4,5,6,7,A\n", kind)
    assert mmlu_questions(other.parent.parent, None) == mmlu_questions(plain.parent.parent, None)
    plain, other = write_pair(tmp_path, "arc.jsonl", jsonl({"question": "Sky?", "choices": ["blue", "red"],
                                                            "gold": 0}), kind)
    assert arc_questions(other, None) == arc_questions(plain, None)


@pytest.mark.parametrize("kind", VARIANTS)
def test_tydiqa_json(tmp_path, kind):
    from eval.tydiqa.run_eval import load_goldp

    data = {"data": [{"paragraphs": [{"context": "Helsinki is the capital of Finland.\nIt is large.", "qas": [
        {"id": "finnish-1", "question": "Capital?", "answers": [{"text": "Helsinki", "answer_start": 0}]}]}]}]}
    plain, other = write_pair(tmp_path, "dev.json", json.dumps(data, indent=1).encode(), kind)
    assert load_goldp(other) == load_goldp(plain)


@pytest.mark.parametrize("kind", VARIANTS)
def test_bbh_task_and_prompt(tmp_path, kind):
    from eval.bbh.run_eval import read_examples, read_prompt

    for folder in ("plain", kind.replace("+", "_")):
        (tmp_path / folder / "bbh").mkdir(parents=True)
    write_pair(tmp_path, "bbh/dates.json", json.dumps({"examples": [{"input": "1+1?", "target": "2"}]},
                                                      indent=1).encode(), kind)
    write_pair(tmp_path, "cot-prompts/dates.txt", b"header\n-----\nQ: 1+1?\nA: 1 and 1. So the answer is 2.\n", kind)
    plain, other = tmp_path / "plain", tmp_path / kind.replace("+", "_")
    assert read_examples(other, "dates", None) == read_examples(plain, "dates", None)
    for cot in (True, False):
        assert read_prompt(other, "dates", cot) == read_prompt(plain, "dates", cot)


@pytest.mark.parametrize("kind", VARIANTS)
def test_gsm_jsonl(tmp_path, kind):
    from eval.gsm.run_eval import read_jsonl

    plain, other = write_pair(tmp_path, "test.jsonl", jsonl({"question": "1+1?", "answer": "2\n#### 2"}), kind)
    assert read_jsonl(other, "GSM8K") == read_jsonl(plain, "GSM8K")


@pytest.mark.parametrize("kind", VARIANTS)
def test_humaneval_jsonl_gz(tmp_path, kind):
    from eval.codex_humaneval.run_eval import read_problems

    problem = {"task_id": "HumanEval/0", "prompt": "def f():\n", "test": "def check(c):\n    pass\n",
               "entry_point": "f", "canonical_solution": "    return 1\n"}
    plain, other = write_pair(tmp_path, "HumanEval.jsonl.gz", jsonl(problem), kind)
    assert read_problems(other) == read_problems(plain)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("kind", VARIANTS)
def test_trainer_config_file(tmp_path, kind, suffix):
    from open_instruct.finetune_trainer import parse_args

    fields = {"model_name_or_path": "m", "train_file": "t.jsonl", "output_dir": str(tmp_path / "o"), "lora_r": 4,
              "learning_rate": 1e-3, "use_cpu": True, "optim": "adamw_torch"}
    text = (json.dumps(fields, indent=1) if suffix == ".json"
            else "".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items())).encode()
    plain, other = write_pair(tmp_path, f"config{suffix}", text, kind)
    expected, got = parse_args([str(plain)]), parse_args([str(other)])
    assert [vars(a) for a in got[:3]] == [vars(a) for a in expected[:3]]
    assert got[3].learning_rate == 1e-3 and got[2].lora_r == 4


@pytest.mark.parametrize("kind", VARIANTS)
def test_adapter_config_and_summarized_metrics(tmp_path, kind):
    from open_instruct.adapters import read_adapter_config
    from open_instruct.summarize import read_json

    cfg = json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]}, indent=2).encode()
    plain, other = write_pair(tmp_path, "adapter_config.json", cfg, kind)
    assert read_adapter_config(other.parent) == read_adapter_config(plain.parent)
    plain, other = write_pair(tmp_path, "metrics.json", json.dumps({"average_acc": 0.5}, indent=2).encode(), kind)
    assert read_json(other, "metrics") == read_json(plain, "metrics")


def test_variants_really_differ():
    """The files above really hold a BOM and CR LF (a guard on the helper itself)."""
    assert variant(b"a\nb\n", "bom+crlf") == BOM + b"a\r\nb\r\n"
