"""The sample data shipped in data/samples is valid, converts, and is in sync with make_samples.py."""

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from open_instruct.data import prepare_datasets
from open_instruct.reformat_datasets import convert_super_ni_data

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
MMLU_SUBJECTS = {"high_school_geography", "elementary_mathematics", "world_religions", "nutrition",
                 "high_school_computer_science"}
TYDIQA_LANGUAGES = {"english", "arabic", "bengali", "finnish", "indonesian", "korean", "russian", "swahili", "telugu"}


def test_natural_instructions_sample_converts_and_trains(tmp_path, tiny_tokenizer):
    summary = convert_super_ni_data(SAMPLES / "natural-instructions", tmp_path, seed=42)
    assert summary["tasks_used"] == 6 and summary["tasks_skipped_mmmlu"] == 1
    assert summary["few_shot"] > 0 and summary["zero_shot"] > 0
    train, evals, stats = prepare_datasets(tmp_path / "super_ni_data.jsonl", tiny_tokenizer, 256,
                                           max_eval_samples=32, seed=42)
    assert stats["num_dropped_no_trainable_tokens"] == 0
    assert len(train) + len(evals) == summary["examples"]


def test_natural_instructions_sample_schema():
    tasks_dir = SAMPLES / "natural-instructions" / "tasks"
    listed = (SAMPLES / "natural-instructions" / "splits" / "xlingual" / "train_tasks.txt").read_text().split()
    assert sum("_mmmlu_" in t for t in listed) == 1
    for name in listed:
        task = json.loads((tasks_dir / f"{name}.json").read_text())
        assert isinstance(task["Definition"][0], str)
        assert len(task["Positive Examples"]) >= 2 and len(task["Negative Examples"]) >= 1
        assert 30 <= len(task["Instances"]) <= 100
        assert len({inst["id"] for inst in task["Instances"]}) == len(task["Instances"])
        assert all(isinstance(inst["output"], list) and inst["output"] for inst in task["Instances"])
    size = sum(p.stat().st_size for p in (SAMPLES / "natural-instructions").rglob("*") if p.is_file())
    assert size < 500_000


def test_mmlu_sample_csvs():
    for split, (lo, hi) in {"dev": (5, 5), "test": (12, 20)}.items():
        files = sorted((SAMPLES / "mmlu" / split).glob(f"*_{split}.csv"))
        assert {f.name[: -len(f"_{split}.csv")] for f in files} == MMLU_SUBJECTS
        for f in files:
            rows = list(csv.reader(f.open(newline="")))
            assert lo <= len(rows) <= hi, f
            for row in rows:
                assert len(row) == 6 and row[5] in ("A", "B", "C", "D"), (f, row)
                assert len(set(row[1:5])) == 4, (f, row)
    answers = Counter(row[5] for f in (SAMPLES / "mmlu" / "test").glob("*.csv") for row in csv.reader(f.open()))
    assert set(answers) == {"A", "B", "C", "D"}


@pytest.mark.parametrize("split, min_per_lang", [("dev", 8), ("train", 1)])
def test_tydiqa_sample_offsets(split, min_per_lang):
    doc = json.loads((SAMPLES / "tydiqa" / f"tydiqa-goldp-v1.1-{split}.json").read_text())
    per_lang = Counter()
    for article in doc["data"]:
        assert article["title"]
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                lang = qa["id"].split("-")[0]
                assert lang in TYDIQA_LANGUAGES
                per_lang[lang] += 1
                assert qa["question"] and qa["answers"]
                for ans in qa["answers"]:
                    start = ans["answer_start"]
                    assert context[start:start + len(ans["text"])] == ans["text"], qa["id"]
    assert len(per_lang) >= 3 and min(per_lang.values()) >= min_per_lang


def test_samples_match_their_generator(tmp_path):
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path)])
    for generated in tmp_path.rglob("*"):
        if generated.is_file():
            shipped = SAMPLES / generated.relative_to(tmp_path)
            assert shipped.read_bytes() == generated.read_bytes(), f"{shipped} is stale: rerun make_samples.py"
