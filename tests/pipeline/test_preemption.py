"""Preemption with real signals to real processes (issue 28).

* SIGTERM in the middle of a run: the trainer finishes the step, saves a complete checkpoint, marks the run
  ``preempted`` and exits with 75; resuming reproduces the uninterrupted run of the same seed (per-step losses and
  the final adapter, to 1e-6).
* A second SIGTERM while that checkpoint is written does not cut it short; a SIGKILL while a checkpoint is written
  leaves one that resume skips.
* An evaluator stopped by SIGTERM exits with 75 and one line; the rerun keeps the subjects it had finished.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainer_helpers import write_chat_file

from open_instruct.errors import EXIT_PREEMPTED
from open_instruct.run_dir import last_complete_checkpoint
from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 10
TOL = 1e-6

# Runs the trainer with hooks that make the tests deterministic: after each optimizer step it records the step
# (and may send itself SIGTERM at one step, or pause); while a checkpoint's RNG state is written (the middle of
# the checkpoint: model and optimizer are saved, trainer_state.json is not yet) it may send a second SIGTERM or
# stop there to be killed. The signals themselves are real ones, delivered by the kernel.
DRIVER = r"""
import os, signal, sys, time
from pathlib import Path
from transformers import Trainer, TrainerCallback
from open_instruct import finetune_trainer

progress, hooks = Path(os.environ["PROGRESS"]), os.environ.get("HOOKS", "")
self_term = int(os.environ.get("SELF_TERM_AT", "0"))

class Progress(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        progress.write_text(str(state.global_step))
        if state.global_step == self_term:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(float(os.environ.get("STEP_PAUSE", "0")))

original = Trainer._save_rng_state
def save_rng_state(self, output_dir):
    original(self, output_dir)
    if "term_again" in hooks:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
    if "hang" in hooks:
        Path(os.environ["PROGRESS"] + ".saving").write_text(output_dir)
        time.sleep(600)
Trainer._save_rng_state = save_rng_state
sys.exit(finetune_trainer.main(sys.argv[1:], callbacks=[Progress()]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    model = save_tiny_checkpoint(root / "tiny", "llama")
    data = write_chat_file(root / "d.jsonl")
    return root, model, data


def trainer_args(setup, out: Path) -> list[str]:
    _, model, data = setup
    return ["--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(out),
            "--ft_mode", "mos", "--lora_r", "3", "--valid_param_lora_r", "2", "--valid_param_private_r", "1",
            "--num_chunk_per_vec", "2", "--lora_dropout", "0.1", "--learning_rate", "3e-2", "--max_steps",
            str(MAX_STEPS), "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "1000",
            "--save_total_limit", "3", "--seed", "0", "--do_eval", "False", "--use_cpu", "True", "--torch_dtype",
            "float32", "--optim", "adamw_torch", "--report_to", "none", "--max_seq_length", "64",
            "--resume_from_checkpoint", "auto", "--disable_tqdm", "True"]


def start(setup, out: Path, **env) -> subprocess.Popen:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PROGRESS=str(out) + ".progress",
                    **{k: str(v) for k, v in env.items()})
    return subprocess.Popen([sys.executable, "-c", DRIVER, *trainer_args(setup, out)], env=full_env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout=600) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for(path: Path, proc: subprocess.Popen, predicate=lambda text: True, timeout=300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and predicate(path.read_text()):
            return
        assert proc.poll() is None, f"the trainer ended early:\n{finish(proc)[1][-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def step_losses(run: Path) -> dict[int, float]:
    state = json.loads((run / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def adapters(run: Path) -> dict[str, torch.Tensor]:
    return {**{f"top/{k}": v for k, v in load_file(run / "adapter_model.safetensors").items()},
            **{f"mos/{k}": v for k, v in load_file(run / "mos_adapter" / "adapter_model.safetensors").items()}}


def assert_same_run(run: Path, reference: Path) -> None:
    losses, expected = step_losses(run), step_losses(reference)
    assert sorted(losses) == list(range(1, MAX_STEPS + 1)) == sorted(expected)  # every step once
    assert max(abs(losses[s] - expected[s]) for s in expected) <= TOL, (losses, expected)
    got, want = adapters(run), adapters(reference)
    assert got.keys() == want.keys()
    assert max((got[k] - want[k]).abs().max().item() for k in want) <= TOL
    assert any(v.abs().max() > 0 for k, v in want.items() if "lora_B" in k or "mos_B" in k)  # it did train


@pytest.fixture(scope="module")
def uninterrupted(setup):
    root = setup[0]
    rc, log = finish(start(setup, root / "reference"))
    assert rc == 0, log[-3000:]
    return root / "reference"


@pytest.mark.slow
def test_sigterm_mid_run_saves_marks_and_resumes_to_the_same_run(setup, uninterrupted, tmp_path):
    run = tmp_path / "run"
    proc = start(setup, run, STEP_PAUSE=0.3)
    wait_for(Path(f"{run}.progress"), proc, lambda text: text.strip() and int(text) >= 4)
    proc.send_signal(signal.SIGTERM)
    rc, log = finish(proc)
    assert rc == EXIT_PREEMPTED, log[-3000:]
    marker = json.loads((run / "preempted").read_text())
    step = marker["step"]
    assert 4 <= step < MAX_STEPS and marker["signal"] == "SIGTERM" and marker["checkpoint"] == f"checkpoint-{step}"
    assert last_complete_checkpoint(run) == (run / f"checkpoint-{step}", [])
    assert not (run / "completed").exists() and not (run / "adapter_model.safetensors").exists()
    assert f"preempted at step {step} of {MAX_STEPS}" in log and "Traceback" not in log

    rc, log = finish(start(setup, run))
    assert rc == 0, log[-3000:]
    assert (run / "completed").exists() and not (run / "preempted").exists()
    assert json.loads((run / "train_results.json").read_text())["resumed_from_step"] == step
    assert_same_run(run, uninterrupted)


@pytest.mark.slow
def test_a_second_signal_or_a_kill_during_the_checkpoint_write(setup, uninterrupted, tmp_path):
    run = tmp_path / "run"
    # SIGTERM at step 3, and again in the middle of writing checkpoint-3: the checkpoint is still finished
    rc, log = finish(start(setup, run, SELF_TERM_AT=3, HOOKS="term_again"))
    assert rc == EXIT_PREEMPTED, log[-3000:]
    assert "received again: already stopping" in log
    assert last_complete_checkpoint(run) == (run / "checkpoint-3", [])

    # resumed, preempted at step 6, and killed (SIGKILL) while checkpoint-6 is half written: resume skips it
    proc = start(setup, run, SELF_TERM_AT=6, HOOKS="hang")
    wait_for(Path(f"{run}.progress.saving"), proc)
    proc.kill()
    finish(proc)
    last, skipped = last_complete_checkpoint(run)
    assert last == run / "checkpoint-3" and skipped and skipped[0].startswith("checkpoint-6:")
    assert not (run / "preempted").exists() and not (run / "completed").exists()

    rc, log = finish(start(setup, run))
    assert rc == 0, log[-3000:]
    assert "not resuming from checkpoint-6" in log
    assert_same_run(run, uninterrupted)


EVAL_DRIVER = r"""
import sys, time
from pathlib import Path
import eval.cli
import eval.mmlu.run_eval as mmlu

log = Path(sys.argv[1])
original, original_add = mmlu.eval_subject, eval.cli.Progress.add
def eval_subject(model, tokenizer, subject, *args, **kwargs):
    with open(log, "a") as f:
        f.write(f"scored:{subject}\n")
    return original(model, tokenizer, subject, *args, **kwargs)
def add(self, part):  # after a subject's CSV is in place
    original_add(self, part)
    with open(log, "a") as f:
        f.write(f"saved:{part}\n")
    time.sleep(float(sys.argv[2]))
mmlu.eval_subject, eval.cli.Progress.add = eval_subject, add
sys.argv = ["eval/mmlu/run_eval.py", *sys.argv[3:]]
eval.cli.run_cli(mmlu.main, prog="mmlu")
"""


@pytest.mark.slow
def test_sigterm_stops_an_evaluation_and_the_rerun_keeps_finished_subjects(setup, tmp_path):
    model = setup[1]
    data = tmp_path / "mmlu"
    subjects = ["anatomy", "astronomy", "virology"]
    for split in ("dev", "test"):
        (data / split).mkdir(parents=True)
        for s in subjects:
            (data / split / f"{s}_{split}.csv").write_text(
                "".join(f"Question {i} on {s}?,a{i},b,c,d,{'ABCD'[i % 4]}\n" for i in range(3)))

    def evaluate(save, pause, log):
        args = ["--ntrain", "1", "--data_dir", str(data), "--save_dir", str(save), "--model_name_or_path", str(model)]
        return subprocess.Popen([sys.executable, "-c", EVAL_DRIVER, str(log), str(pause), *args], cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    reference = evaluate(tmp_path / "reference", 0, tmp_path / "ref.log")
    rc, log = finish(reference)
    assert rc == 0, log[-3000:]

    save, scored = tmp_path / "out", tmp_path / "scored.log"
    proc = evaluate(save, 1.0, scored)
    wait_for(scored, proc, lambda text: "saved:" in text)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if "SIGTERM" in line]
    assert proc.returncode == EXIT_PREEMPTED and "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("mmlu: stopped by SIGTERM"), err[-2000:]
    assert not (save / "metrics.json").exists() and not list(save.glob(".*.partial"))
    finished = [w.split(":")[1] for w in scored.read_text().split() if w.startswith("saved:")]
    assert 1 <= len(finished) < len(subjects)
    kept = {s: (save / f"{s}.csv").stat().st_mtime_ns for s in finished}

    first = len(scored.read_text().split())
    rc, log = finish(evaluate(save, 0, scored))
    assert rc == 0, log[-3000:]
    rescored = [w.split(":")[1] for w in scored.read_text().split()[first:] if w.startswith("scored:")]
    assert rescored == [s for s in subjects if s not in finished]  # only the rest is scored again
    assert {s: (save / f"{s}.csv").stat().st_mtime_ns for s in finished} == kept  # finished subjects untouched
    assert json.loads((save / "metrics.json").read_text()) == json.loads(
        (tmp_path / "reference" / "metrics.json").read_text())
    assert not (save / ".progress.json").exists()


def test_a_stopped_bbh_run_keeps_its_finished_tasks(setup, tmp_path, monkeypatch):
    """BBH scores task by task: stopped (Preempted, as the SIGTERM handler raises it) after its first task, the rerun
    scores only the rest, keeps the finished task's file as it was, and ends with the metrics of an unbroken run."""
    import eval.cli
    from eval.bbh import run_eval as bbh
    from open_instruct.errors import Preempted

    model = setup[1]
    data = tmp_path / "bbh"
    for folder in ("bbh", "cot-prompts"):
        (data / folder).mkdir(parents=True)
    for task in ("colors", "shapes"):
        (data / "cot-prompts" / f"{task}.txt").write_text("header\n-----\nQ: Is it?\nA: It is. So the answer is (A).\n")
        (data / "bbh" / f"{task}.json").write_text(json.dumps({"examples": [
            {"input": f"{task} question {i}?", "target": "(A)"} for i in range(2)]}))
    args = ["--data_dir", str(data), "--model_name_or_path", str(model), "--max_new_tokens", "4"]
    reference = bbh.main([*args, "--save_dir", str(tmp_path / "reference")])

    generated, original_add, original_outputs = [], eval.cli.Progress.add, bbh.greedy_outputs

    def outputs(cli_args, prompts, *rest, **kwargs):
        generated.append(kwargs.get("desc"))
        return original_outputs(cli_args, prompts, *rest, **kwargs)

    def add_then_stop(self, part):
        original_add(self, part)
        raise Preempted(signal.SIGTERM, "test")

    monkeypatch.setattr(bbh, "greedy_outputs", outputs)
    monkeypatch.setattr(eval.cli.Progress, "add", add_then_stop)
    save = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        bbh.main([*args, "--save_dir", str(save)])
    assert exc.value.code == EXIT_PREEMPTED and generated == ["BBH colors"]
    kept = (save / "predictions" / "colors.jsonl").stat().st_mtime_ns
    assert not (save / "metrics.json").exists()

    monkeypatch.setattr(eval.cli.Progress, "add", original_add)
    assert bbh.main([*args, "--save_dir", str(save)]) == reference
    assert generated == ["BBH colors", "BBH shapes"]  # the rerun generated only the unfinished task
    assert (save / "predictions" / "colors.jsonl").stat().st_mtime_ns == kept


@pytest.mark.slow
def test_a_run_preempted_on_an_evaluation_step_evaluates_it_on_resume(setup, tmp_path):
    """The stop skips the evaluation due at its step (to stop quickly); the resumed run evaluates that step first,
    so the learning curve has every point (without the fix: [2, 6, 8, 10])."""
    def args(out):
        return [a for a in trainer_args(setup, out) if a not in ("--do_eval", "False")] + [
            "--do_eval", "True", "--eval_strategy", "steps", "--eval_steps", "2", "--max_eval_samples", "8",
            "--per_device_eval_batch_size", "4"]

    def run_to_end(out, stop_at):
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PROGRESS=str(out) + ".progress",
                   SELF_TERM_AT=str(stop_at))
        first = subprocess.run([sys.executable, "-c", DRIVER, *args(out)], env=env, cwd=REPO, capture_output=True,
                               text=True, timeout=600)
        assert first.returncode == EXIT_PREEMPTED, (first.stdout + first.stderr)[-3000:]
        env["SELF_TERM_AT"] = "0"
        second = subprocess.run([sys.executable, "-c", DRIVER, *args(out)], env=env, cwd=REPO, capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        state = json.loads((out / "trainer_state.json").read_text())
        return [e["step"] for e in state["log_history"] if "eval_loss" in e]

    assert run_to_end(tmp_path / "on_eval_step", 4) == [2, 4, 6, 8, 10]


def test_which_resumes_evaluate_first():
    """Only a resume at an evaluation step whose evaluation is not in the checkpoint's log evaluates first."""
    from types import SimpleNamespace

    from open_instruct.finetune_trainer import missed_evaluation

    def checkpoint(step, evaluated):  # its trainer_state.json
        return {"global_step": step, "log_history": [{"step": s, "eval_loss": 1.0} for s in evaluated]
                + [{"step": step, "loss": 2.0}]}

    every_2 = SimpleNamespace(eval_strategy="steps", eval_steps=2)
    assert missed_evaluation(checkpoint(4, [2]), every_2, eval_ds=[1])
    assert not missed_evaluation(checkpoint(4, [2, 4]), every_2, eval_ds=[1])  # evaluated before the stop
    assert not missed_evaluation(checkpoint(5, [2, 4]), every_2, eval_ds=[1])  # no evaluation due at step 5
    assert not missed_evaluation(checkpoint(6, [2, 4]), every_2, eval_ds=None)  # no held-out split
    assert not missed_evaluation(checkpoint(8, [2, 4]), SimpleNamespace(eval_strategy="no", eval_steps=2), [1])
