"""The launchers' run-directory handling, paths and environment checks, with a stand-in for python.

The stand-in (PYTHON=stub) records every command the launcher runs and plays the trainer and the evaluators
(STUB_TRAIN=ok | fail | fail_after_checkpoint), so each case takes a fraction of a second; the launcher's own
Python step (``open_instruct.launch``: checks, run directory, commands) runs in the real interpreter. The real
trainer and evaluators run in test_launcher_and_demo.py and tests/baselines/test_launcher_methods.py.
"""

import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARGS = ["8", "0", "0", "2e-4", "mos", "1", "0", "1", "2", "4"]
TAIL = ("_GPU_0_r_8_lr_2e-4_sd_0_ft_mode_mos_init_lora_A_vec_value_1_init_lora_A_vec_std_0"
        "_valid_param_private_r_1_valid_param_lora_r_2_num_chunk_4")

STUB = r"""#!/usr/bin/env bash
if [ "$1" = -c ]; then echo 0 1; exit 0; fi      # the launcher's device probe: no CUDA, a CPU with native bf16
if [ "$1 $2" = "-m open_instruct.launch" ]; then exec "$REAL_PYTHON" "$@"; fi  # the launcher's checks: real Python
printf '%s\n' "$*" >>"$STUB_LOG"
arg() { local want=$1; shift; while [ $# -gt 0 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
if [ "$1" = open_instruct/finetune_trainer.py ]; then
  out=$(arg --output_dir "$@"); echo "stub trainer" >>"$out/run.log"
  case "${STUB_TRAIN:-ok}" in
    ok) echo '{"train_loss": 1.0}' >"$out/all_results.json"; touch "$out/completed" ;;
    fail) exit 1 ;;
    fail_after_checkpoint) mkdir -p "$out/checkpoint-5"; echo '{}' >"$out/checkpoint-5/trainer_state.json"; exit 1 ;;
  esac
  exit 0
fi
if [ "$1" = -m ]; then
  save=$(arg --save_dir "$@"); [ "${STUB_EVAL:-ok}" = ok ] || exit 1
  mkdir -p "$save"; echo '{"score": 1}' >"$save/metrics.json"; exit 0
fi
exit 3
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "stub_python"
    path.write_text(STUB)
    path.chmod(0o755)
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "a", "completion": "b"}\n')
    evaldata = tmp_path / "evaldata"
    for sub in ("mmlu/test", "tydiqa", "bbh", "gsm", "codex_humaneval"):
        (evaldata / sub).mkdir(parents=True)
    for name in ("tydiqa/tydiqa-goldp-v1.1-dev.json", "gsm/test.jsonl", "codex_humaneval/HumanEval.jsonl.gz"):
        (evaldata / name).write_text("")
    return {"PYTHON": str(path), "REAL_PYTHON": sys.executable, "STUB_LOG": str(tmp_path / "calls.log"),
            "TRAIN_FILE": str(train), "OUTPUT_ROOT": str(tmp_path / "output"), "REPORT_TO": "none",
            "EVAL_DATA_DIR": str(evaldata)}


def launch(env, launcher="ft_llama2_7b_superni_mmlu.sh", args=ARGS, cwd=None, **extra):
    full = {k: v for k, v in os.environ.items() if k not in ("RUN_DIR", "EXTRA_ARGS", "DRY_RUN", "EVAL_ONLY")}
    full.update(env)
    full.update({k: str(v) for k, v in extra.items()})
    return subprocess.run(["bash", str(REPO / launcher), *args], capture_output=True, text=True, env=full,
                          cwd=cwd or REPO, timeout=120)


def calls(env):
    log = Path(env["STUB_LOG"])
    return [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []


def flag(call, name):
    return call[call.index(name) + 1]


def runs(env):
    root = Path(env["OUTPUT_ROOT"])
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_resume_trains_and_evaluates_the_same_directory(stub):
    first = launch(stub, STUB_TRAIN="fail_after_checkpoint")
    assert first.returncode == 2
    (run,) = runs(stub)
    assert run.name.endswith(TAIL) and f"RUN_DIR={run}" in first.stderr and "to resume" in first.stderr
    # the hint is a command that can be pasted as is: resume in that directory, same arguments
    hint = first.stderr.split("to resume from its last checkpoint: ")[1].strip()
    resumed = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **stub, "STUB_TRAIN": "ok"})
    assert resumed.returncode == 0, resumed.stderr
    assert runs(stub) == [run]  # no new, empty directory
    train, mmlu, tydiqa = calls(stub)[1:]
    assert flag(train, "--output_dir") == str(run) and flag(train, "--resume_from_checkpoint") == "auto"
    assert flag(mmlu, "--save_dir") == f"{run}/mmlu_results" and flag(mmlu, "--adapter_path") == str(run)
    assert flag(tydiqa, "--save_dir") == f"{run}/tydiqa_results" and flag(tydiqa, "--adapter_path") == str(run)
    assert str(run) in resumed.stdout and "done" in resumed.stdout


def test_old_resume_recipe_extra_args_output_dir_means_that_directory(stub):
    launch(stub, STUB_TRAIN="fail_after_checkpoint")
    (run,) = runs(stub)
    proc = launch(stub, EXTRA_ARGS=f"--output_dir {run} --warmup_steps 0", SKIP_EVAL=1)
    assert proc.returncode == 0, proc.stderr
    assert runs(stub) == [run]
    train = calls(stub)[-1]
    assert train.count("--output_dir") == 1 and flag(train, "--output_dir") == str(run)
    assert flag(train, "--warmup_steps") == "0"


def test_failure_without_checkpoint_gives_no_resume_hint(stub):
    proc = launch(stub, STUB_TRAIN="fail")
    (run,) = runs(stub)
    assert proc.returncode == 2 and "before any checkpoint was written" in proc.stderr and str(run) in proc.stderr
    assert "RUN_DIR=" not in proc.stderr and "resume from" not in proc.stderr


def test_completed_run_is_refused_and_left_alone(stub):
    assert launch(stub).returncode == 0
    (run,) = runs(stub)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    n_calls = len(calls(stub))
    for env in ({"RUN_DIR": str(run)}, {"EXTRA_ARGS": f"--output_dir {run}"}):
        proc = launch(stub, **env)
        assert proc.returncode == 2 and "holds a completed run" in proc.stderr and str(run) in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
    assert len(calls(stub)) == n_calls and runs(stub) == [run]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_eval_only_runs_just_the_missing_evaluations(stub):
    proc = launch(stub, STUB_EVAL="fail")
    assert proc.returncode == 2 and "MMLU evaluation failed" in proc.stderr and "EVAL_ONLY=1 RUN_DIR=" in proc.stderr
    (run,) = runs(stub)
    (run / "mmlu_results").mkdir()
    (run / "mmlu_results" / "metrics.json").write_text('{"kept": 1}')
    n_calls = len(calls(stub))
    proc = launch(stub, EVAL_ONLY=1, RUN_DIR=run)
    assert proc.returncode == 0, proc.stderr
    new = calls(stub)[n_calls:]
    assert [c[1] for c in new] == ["eval.tydiqa.run_eval"]  # no training, MMLU kept
    assert (run / "mmlu_results" / "metrics.json").read_text() == '{"kept": 1}'


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock (util-linux) not installed")
def test_a_run_directory_in_use_is_refused(stub):
    import fcntl

    launch(stub, STUB_TRAIN="fail_after_checkpoint")
    (run,) = runs(stub)
    n_calls = len(calls(stub))
    with open(run / ".launcher.lock", "a") as lock:  # as a launch (or its trainer) still running there holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = launch(stub, RUN_DIR=run)
        assert proc.returncode == 2 and f"another launch is still running in {run}" in proc.stderr
        assert len(calls(stub)) == n_calls
    assert launch(stub, RUN_DIR=run, SKIP_EVAL=1).returncode == 0  # released: the resume goes ahead


def test_resume_with_other_arguments_is_refused(stub):
    launch(stub, STUB_TRAIN="fail_after_checkpoint")
    (run,) = runs(stub)
    other = ARGS[:]
    other[0] = "16"
    proc = launch(stub, args=other, RUN_DIR=run)
    assert proc.returncode == 2 and "was started with other arguments" in proc.stderr
    missing = launch(stub, RUN_DIR=run.parent / "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_run_directories_are_unique_and_created_exclusively(stub):
    root = Path(stub["OUTPUT_ROOT"])
    root.mkdir()
    now = datetime.now()
    taken = []
    for s in range(3):  # the names of this second and the next two are already taken (e.g. by other launches)
        d = root / f"LLaMA2_7b_MoS_superni_{(now + timedelta(seconds=s)):%Y%m%d-%H%M%S}{TAIL}"
        d.mkdir()
        (d / "run.log").write_text("someone else's run\n")
        taken.append(d)
    procs = [subprocess.Popen(["bash", str(REPO / "ft_llama2_7b_superni_mmlu.sh"), *ARGS], cwd=REPO,
                              env={**os.environ, **stub, "SKIP_EVAL": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        p.wait(timeout=120)
        assert p.returncode == 0, p.stderr.read()
    for d in taken:
        assert (d / "run.log").read_text() == "someone else's run\n" and not (d / "completed").exists()
    new = [d for d in runs(stub) if d not in taken]
    assert len(new) == 2
    for d in new:
        assert (d / "run.log").read_text() == "stub trainer\n" and (d / "run.json").is_file()


def test_relative_paths_are_taken_from_the_callers_directory(stub, tmp_path):
    work = tmp_path / "work"
    (work / "models" / "tiny").mkdir(parents=True)
    (work / "data").mkdir()
    (work / "data" / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    shutil.copytree(stub["EVAL_DATA_DIR"], work / "evaldata")
    env = {**stub, "MODEL": "models/tiny", "TRAIN_FILE": "data/t.jsonl", "EVAL_DATA_DIR": "evaldata",
           "OUTPUT_ROOT": "out"}
    proc = launch(env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    (run,) = (work / "out").iterdir()
    train, mmlu, _ = calls(stub)
    assert flag(train, "--model_name_or_path") == str(work / "models/tiny")
    assert flag(train, "--train_file") == str(work / "data/t.jsonl")
    assert flag(mmlu, "--data_dir") == str(work / "evaldata/mmlu") and flag(mmlu, "--save_dir").startswith(str(run))
    assert not (REPO / "out").exists()  # nothing inside the repository
    bad = launch({**env, "MODEL": "./models/typo"}, cwd=work)
    assert bad.returncode == 2 and f"MODEL {work}/models/typo is not a directory" in bad.stderr
    hub = launch({**env, "MODEL": "meta-llama/Llama-2-7b-hf", "DRY_RUN": "1"}, cwd=work)
    assert hub.returncode == 0 and "--model_name_or_path meta-llama/Llama-2-7b-hf" in hub.stdout


@pytest.mark.parametrize("var,value,needle", [
    ("BATCH_SIZE", "0", "BATCH_SIZE must be an integer >= 1, got '0'"),
    ("MAX_SEQ_LENGTH", "-512", "MAX_SEQ_LENGTH must be an integer >= 1, got '-512'"),
    ("MAX_STEPS", "1e3", "MAX_STEPS must be an integer >= 1, got '1e3'"),
    ("MAX_EVAL_SAMPLES", "-1", "MAX_EVAL_SAMPLES must be an integer >= 0"),
    ("EVAL_BATCH_SIZE", "0", "EVAL_BATCH_SIZE must be an integer >= 1"),
    ("SAVE_STEPS", "x", "SAVE_STEPS must be an integer >= 1"),
    ("USE_VLLM", "yes", "USE_VLLM must be 0 or 1, got 'yes'"),
    ("SKIP_EVAL", "true", "SKIP_EVAL must be 0 or 1"),
    ("NUM_GPUS", "-1", "NUM_GPUS must be an integer >= 0"),
    ("CHAT_FORMAT", "chatml", "CHAT_FORMAT must be tulu or tokenizer"),
    ("TRAIN_FORMAT", "pretrain", "TRAIN_FORMAT must be auto, instruction or text, got 'pretrain'"),
    ("PACKING", "yes", "PACKING must be 0 or 1, got 'yes'"),
    ("PRECISION", "fp16", "PRECISION must be fp32 or bf16, got 'fp16'"),
])
def test_bad_environment_overrides_are_one_line_errors(stub, var, value, needle):
    proc = launch(stub, **{var: value})
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not calls(stub) and not runs(stub)


@pytest.mark.parametrize("launcher,missing", [("ft_llama2_7b_superni_mmlu.sh", "tydiqa/tydiqa-goldp-v1.1-dev.json"),
                                              ("ft_llama2_7b_flan_v2.sh", "bbh"),
                                              ("ft_llama2_7b_cot_gsm8k.sh", "gsm/test.jsonl"),
                                              ("ft_llama2_7b_code.sh", "codex_humaneval/HumanEval.jsonl.gz")])
def test_missing_evaluation_data_stops_before_training(stub, launcher, missing):
    path = Path(stub["EVAL_DATA_DIR"]) / missing
    path.rmdir() if path.is_dir() else path.unlink()
    proc = launch(stub, launcher=launcher)
    assert proc.returncode == 2 and f"evaluation data {path} not found" in proc.stderr
    assert not calls(stub) and not runs(stub)
    assert launch(stub, launcher=launcher, SKIP_EVAL=1).returncode == 0  # training alone does not need it


def test_batching_precision_and_text_overrides_reach_the_trainer(stub):
    assert launch(stub, SKIP_EVAL=1).returncode == 0  # defaults: the original's command, nothing added
    default = calls(stub)[-1]
    assert not {"--train_format", "--padding_free", "--bf16"} & set(default)
    assert launch(stub, SKIP_EVAL=1, TRAIN_FORMAT="text", PACKING=1, PRECISION="bf16").returncode == 0
    train = calls(stub)[-1]
    assert flag(train, "--train_format") == "text" and flag(train, "--padding_free") == "True"
    # CPU as on a GPU: bf16 base weights (the adapter stays float32 in the tuner), autocast, evaluation in bf16
    assert flag(train, "--bf16") == "True" and flag(train, "--torch_dtype") == "bfloat16"
    assert launch(stub, PRECISION="bf16").returncode == 0
    evals = [c for c in calls(stub) if "--adapter_path" in c]
    assert evals and all(flag(c, "--torch_dtype") == "bfloat16" for c in evals)


def test_max_eval_samples_zero_turns_held_out_evaluation_off(stub):
    assert launch(stub, MAX_EVAL_SAMPLES=0, SKIP_EVAL=1).returncode == 0
    train = calls(stub)[0]
    assert flag(train, "--do_eval") == "False" and "--max_eval_samples" not in train


LAUNCHERS = {  # launcher: (model, run-name prefix, [(evaluator, save dir, flags that must be there)])
    "ft_llama2_7b_superni_mmlu.sh": ("meta-llama/Llama-2-7b-hf", "LLaMA2_7b_MoS_superni", [
        ("eval.mmlu.run_eval", "mmlu_results", {"--ntrain": "0", "--eval_batch_size": "16"}),
        ("eval.tydiqa.run_eval", "tydiqa_results", {"--n_shot": "1", "--max_context_length": "512"})]),
    "ft_llama2_13b_superni_mmlu.sh": ("meta-llama/Llama-2-13b-hf", "LLaMA2_13b_MoS_superni", [
        ("eval.mmlu.run_eval", "mmlu_results", {"--eval_batch_size": "8"}),
        ("eval.tydiqa.run_eval", "tydiqa_results", {})]),
    "ft_llama3_2_3b_superni_mmlu.sh": ("meta-llama/Llama-3.2-3B", "3B/MoS_superni", [
        ("eval.mmlu.run_eval", "mmlu_results", {}), ("eval.tydiqa.run_eval", "tydiqa_results", {})]),
}
for size, model, prefix in (("llama2_7b", "meta-llama/Llama-2-7b-hf", "LLaMA2_7b_MoS_"),
                            ("llama2_13b", "meta-llama/Llama-2-13b-hf", "LLaMA2_13b_MoS_"),
                            ("llama3_2_3b", "meta-llama/Llama-3.2-3B", "3B/MoS_")):
    LAUNCHERS[f"ft_{size}_flan_v2.sh"] = (model, prefix + "flan_v2", [
        ("eval.bbh.run_eval", "bbh_results/no_cot", {"--no_cot": None, "--eval_batch_size": "16"}),
        ("eval.bbh.run_eval", "bbh_results/cot", {"--eval_batch_size": "16"})])
    LAUNCHERS[f"ft_{size}_cot_gsm8k.sh"] = (model, prefix + "cot", [
        ("eval.gsm.run_eval", "gsm_results", {"--n_shot": "8", "--eval_batch_size": "16"})])
    LAUNCHERS[f"ft_{size}_code.sh"] = (model, prefix + "code_alpaca", [
        ("eval.codex_humaneval.run_eval", "codex_results/pass1",
         {"--eval_pass_at_ks": "1 5 10 20", "--temperature": "0.1", "--unbiased_sampling_size_n": "20",
          "--eval_batch_size": "4"}),
        ("eval.codex_humaneval.run_eval", "codex_results/pass10",
         {"--eval_pass_at_ks": "10", "--temperature": "0.8", "--unbiased_sampling_size_n": "20"})])


def _flag_values(call, name):
    i = call.index(name) + 1
    values = []
    while i < len(call) and not call[i].startswith("--"):
        values.append(call[i])
        i += 1
    return " ".join(values)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_every_launcher_trains_then_runs_its_evaluations(stub, launcher):
    model, prefix, evals = LAUNCHERS[launcher]
    dry = launch(stub, launcher=launcher, DRY_RUN=1)
    assert dry.returncode == 0, dry.stderr
    assert not runs(stub) and not calls(stub)  # a dry run creates and runs nothing
    assert dry.stdout.count("[dry-run]") == 1 + len(evals)
    proc = launch(stub, launcher=launcher, MAX_STEPS=5)
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in Path(stub["OUTPUT_ROOT"]).rglob("*") if p.is_dir() and p.name.endswith(TAIL)]
    assert str(run.relative_to(stub["OUTPUT_ROOT"])).startswith(prefix + "_")
    train, *eval_calls = calls(stub)
    assert flag(train, "--model_name_or_path") == model and flag(train, "--output_dir") == str(run)
    assert flag(train, "--max_steps") == "5" and flag(train, "--train_file") == stub["TRAIN_FILE"]
    assert len(eval_calls) == len(evals)
    for call, (module, save, flags) in zip(eval_calls, evals):
        assert call[0:2] == ["-m", module] and flag(call, "--save_dir") == f"{run}/{save}"
        assert flag(call, "--adapter_path") == str(run) and flag(call, "--model_name_or_path") == model
        assert "--use_chat_format" in call and (run / save / "metrics.json").is_file()
        for name, value in flags.items():
            assert name in call and (value is None or _flag_values(call, name) == value), (name, call)
        assert ("--no_cot" in call) == ("--no_cot" in flags)


def test_new_launchers_default_to_their_training_files(stub):
    for launcher, dataset in (("ft_llama2_7b_flan_v2.sh", "flan_v2"), ("ft_llama2_7b_cot_gsm8k.sh", "cot"),
                              ("ft_llama2_7b_code.sh", "code_alpaca")):
        env = {k: v for k, v in stub.items() if k != "TRAIN_FILE"}
        proc = launch(env, launcher=launcher, TRAIN_FILE="")
        expected = f"data/processed/{dataset}/{dataset}_data.jsonl"
        if (REPO / expected).is_file():
            continue
        assert proc.returncode == 2 and f"TRAIN_FILE {expected} not found" in proc.stderr
        assert f"prepare_train_data.sh {dataset}" in proc.stderr

