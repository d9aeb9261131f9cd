"""HumanEval scoring: canonical solutions pass, bare prompts fail, hostile programs fail alone, pass@k by hand."""

import gzip
import itertools
import json
import socket
import subprocess
import time
from math import comb

import pytest

from eval.codex_humaneval import run_eval as humaneval
from eval.codex_humaneval import sandbox as sandbox_mod
from eval.codex_humaneval.sandbox import Limits, Sandbox, SandboxUnavailable

# Three problems in HumanEval's real format (task_id, prompt, canonical_solution, test, entry_point).
PROBLEMS = [
    {"task_id": "Tiny/0", "entry_point": "add",
     "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n',
     "canonical_solution": "    return a + b\n",
     "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"
             "    assert candidate(-1, 1) == 0\n"},
    {"task_id": "Tiny/1", "entry_point": "reverse",
     "prompt": 'from typing import List\n\n\ndef reverse(xs: List[int]) -> List[int]:\n    """Reversed list."""\n',
     "canonical_solution": "    return xs[::-1]\n",
     "test": "\n\ndef check(candidate):\n    assert candidate([1, 2, 3]) == [3, 2, 1]\n    assert candidate([]) == []\n"},
    {"task_id": "Tiny/2", "entry_point": "is_even",
     "prompt": 'def is_even(n: int) -> bool:\n    """True when n is even."""\n',
     "canonical_solution": "    return n % 2 == 0\n",
     "test": "\n\ndef check(candidate):\n    assert candidate(4) is True\n    assert candidate(7) is False\n"},
]


@pytest.fixture(scope="module")
def sandbox():
    try:
        return Sandbox(Limits(timeout=3.0, memory_mb=1024))
    except SandboxUnavailable as err:
        pytest.skip(f"no working bubblewrap here ({err}); .ci/run installs it")


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(p) + "\n" for p in PROBLEMS)
    return path


def write_completions(path, pairs):
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in pairs))
    return path


def results_of(save_dir):
    return [json.loads(line) for line in (save_dir / "codex_eval_predictions_with_results.jsonl").open()]


def test_pass_at_k_against_enumeration():
    for n, c, k in [(5, 2, 2), (10, 3, 1), (10, 3, 5), (4, 0, 2), (4, 4, 3), (20, 1, 10)]:
        subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
        assert humaneval.pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
        assert humaneval.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    metrics = humaneval.pass_at_ks({"a": [True, False, False, False], "b": [True, True, False, False]}, [1, 2, 5])
    assert metrics == pytest.approx({"pass@1": (0.25 + 0.5) / 2, "pass@2": (0.5 + 5 / 6) / 2})


def test_canonical_pass_and_bare_prompts_fail(sandbox, problems_file, tmp_path):
    canonical = write_completions(tmp_path / "c.jsonl", [(p["task_id"], p["canonical_solution"]) for p in PROBLEMS])
    bare = write_completions(tmp_path / "b.jsonl", [(p["task_id"], "") for p in PROBLEMS])
    args = ["--data_file", str(problems_file), "--n_workers", "2", "--eval_pass_at_ks", "1"]
    assert humaneval.main(args + ["--completions_file", str(canonical), "--save_dir", str(tmp_path / "c")]) == \
        {"pass@1": 1.0}
    assert humaneval.main(args + ["--completions_file", str(bare), "--save_dir", str(tmp_path / "b")]) == \
        {"pass@1": 0.0}
    assert json.loads((tmp_path / "c" / "metrics.json").read_text()) == {"pass@1": 1.0}
    assert all(r["result"] == "passed" for r in results_of(tmp_path / "c"))


def leftover_processes(marker):
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line]


def test_hostile_programs_each_fail_alone(sandbox, problems_file, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    marker = f"hostile{port}"
    good = "    return a + b\n"
    hostile = {
        "loop": "    while True:\n        pass\n",
        "early_exit": good + "import sys\nsys.exit(0)\n",  # correct, but exits before the tests run
        "hard_exit": good + "import os\nos._exit(0)\n",
        "fork_bomb": "    import os\n    while True:\n        os.fork()\n",
        "spawn": "    import subprocess, sys\n    subprocess.Popen([sys.executable, '-c', 'import time; "
                 f"time.sleep(300)', '{marker}'], start_new_session=True)\n    return None\n",
        "write_outside": f"    open({str(victim)!r}, 'w').write('pwned')\n    return a + b\n",
        "delete_outside": f"    import os\n    os.remove({str(victim)!r})\n    return a + b\n",
        "fill_disk": "    for i in range(64):\n        open(f'f{i}', 'wb').write(b'x' * (32 << 20))\n    return a + b\n",
        "huge_alloc": "    x = bytearray(1 << 40)\n    return a + b\n",
        "growing_alloc": "    x = [b'x' * (1 << 20) for _ in range(1 << 14)]\n    return a + b\n",
        "socket": f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return a + b\n",
    }
    pairs = [("Tiny/0", c) for c in hostile.values()] + [("Tiny/1", PROBLEMS[1]["canonical_solution"])]
    completions = write_completions(tmp_path / "h.jsonl", pairs)
    start = time.time()
    humaneval.main(["--data_file", str(problems_file), "--completions_file", str(completions), "--save_dir",
                    str(tmp_path / "h"), "--n_workers", "2", "--timeout", "2", "--max_memory_mb", "1024"])
    assert time.time() - start < 45
    results = results_of(tmp_path / "h")
    verdicts = dict(zip(list(hostile) + ["canonical"], [(r["passed"], r["result"]) for r in results]))
    assert verdicts.pop("canonical") == (True, "passed")
    for name, (passed, result) in verdicts.items():
        assert not passed, f"{name} passed: {result}"
    assert verdicts["loop"][1] == "timed out"
    assert "sentinel" in verdicts["early_exit"][1] and "sentinel" in verdicts["hard_exit"][1]
    assert victim.read_text() == "original"
    with pytest.raises(socket.timeout):
        server.accept()  # nobody connected from inside the sandbox
    server.close()
    time.sleep(0.5)
    assert leftover_processes(marker) == []


def test_without_bwrap_refuses_unless_weak_guard_allowed(monkeypatch, problems_file, tmp_path, capsys):
    real_which = sandbox_mod.shutil.which
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    pairs = [("Tiny/0", "    return a + b\n"), ("Tiny/0", "    return a + b\nimport sys\nsys.exit(0)\n")]
    completions = write_completions(tmp_path / "w.jsonl", pairs)
    args = ["--data_file", str(problems_file), "--completions_file", str(completions), "--save_dir",
            str(tmp_path / "w"), "--n_workers", "1"]
    with pytest.raises(SystemExit) as exc:
        humaneval.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "bubblewrap" in err and "--allow_weak_sandbox" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()  # refused before writing anything
    assert humaneval.main(args + ["--allow_weak_sandbox"]) == {"pass@1": 0.5}
    assert [r["passed"] for r in results_of(tmp_path / "w")] == [True, False]


def test_bad_completions_file_is_one_line_exit_2(problems_file, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "Nope/1", "completion": ""}\n')
    with pytest.raises(SystemExit) as exc:
        humaneval.main(["--data_file", str(problems_file), "--completions_file", str(bad), "--save_dir",
                        str(tmp_path / "x"), "--allow_weak_sandbox"])
    assert exc.value.code == 2 and "Nope/1" in capsys.readouterr().err


def test_generation_on_tiny_model(sandbox, problems_file, tmp_path, tiny_checkpoint):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval.templates import create_prompt_with_tulu_chat_format

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    common = ["--data_file", str(problems_file), "--model_name_or_path", str(tiny_checkpoint), "--max_num_examples",
              "2", "--max_new_tokens", "12", "--eval_batch_size", "2", "--n_workers", "2"]
    # temperature 0: n identical greedy completions, equal to single-prompt decoding cut at the stop sequences
    metrics = humaneval.main(common + ["--save_dir", str(tmp_path / "g"), "--temperature", "0",
                                       "--unbiased_sampling_size_n", "2", "--eval_pass_at_ks", "1", "2", "5"])
    assert set(metrics) == {"pass@1", "pass@2"}  # pass@5 needs n >= 5
    samples = [json.loads(line) for line in (tmp_path / "g" / "codex_eval_predictions.jsonl").open()]
    assert [s["task_id"] for s in samples] == ["Tiny/0", "Tiny/0", "Tiny/1", "Tiny/1"]
    for s, problem in zip(samples[::2], PROBLEMS):
        ids = tokenizer(problem["prompt"], return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        cuts = [text.find(stop) for stop in humaneval.STOP_SEQUENCES if stop in text]
        assert s["prompt"] == problem["prompt"] and s["completion"] == text[:min(cuts, default=len(text))]
    assert samples[0]["completion"] == samples[1]["completion"]
    results = results_of(tmp_path / "g")
    assert metrics["pass@1"] == pytest.approx(sum(r["passed"] for r in results) / 4)
    # sampling: n samples per problem, reproducible with the seed; chat prompts in the original's wording
    runs = []
    for name in ("s1", "s2"):
        humaneval.main(common + ["--save_dir", str(tmp_path / name), "--temperature", "0.8",
                                 "--unbiased_sampling_size_n", "3", "--use_chat_format",
                                 "--chat_formatting_function", "tulu"])
        runs.append([json.loads(line) for line in (tmp_path / name / "codex_eval_predictions.jsonl").open()])
    assert runs[0] == runs[1] and len(runs[0]) == 6
    assert runs[0][0]["prompt"] == create_prompt_with_tulu_chat_format(
        [{"role": "user", "content": "Complete the following python function.\n\n\n" + PROBLEMS[0]["prompt"]}],
        tokenizer) + "Here is the completed function:\n\n\n" + PROBLEMS[0]["prompt"]
