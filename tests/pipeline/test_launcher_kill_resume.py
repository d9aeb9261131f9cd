"""kill -9 in the middle of a real (tiny) launcher run, then the resume recipe: same directory, nothing lost."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
ARGS = ["3", "0", "0", "3e-2", "mos", "1", "0", "1", "2", "2"]


@pytest.mark.slow
def test_kill_9_then_resume_in_the_same_directory(tmp_path):
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say it ({i})."},
                                                     {"role": "assistant", "content": "The quick brown fox."}]})
                            + "\n" for i in range(64)))
    root = tmp_path / "output"
    env = dict(os.environ, PYTHON=sys.executable, REPORT_TO="none", OMP_NUM_THREADS="1", MODEL=str(model),
               TRAIN_FILE=str(data), OUTPUT_ROOT=str(root), MAX_STEPS="60", SAVE_STEPS="5", BATCH_SIZE="4",
               MAX_EVAL_SAMPLES="0", SKIP_EVAL="1", LOGGING_STEPS="1")
    launcher = ["bash", str(REPO / "ft_llama2_7b_superni_mmlu.sh"), *ARGS]
    proc = subprocess.Popen(launcher, env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(root.glob("*/checkpoint-*/trainer_state.json")) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the trainer, mid-run
    proc.wait()
    (run,) = root.iterdir()
    assert not (run / "completed").exists()

    resumed = subprocess.run(launcher, env={**env, "RUN_DIR": str(run)}, cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert list(root.iterdir()) == [run] and (run / "completed").exists()
    assert f"run directory (resumed): {run}" in resumed.stdout and f"not evaluated): {run}" in resumed.stdout
    state = json.loads((run / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 60 and steps == list(range(1, 61))  # each step once: resumed, not restarted

    again = subprocess.run(launcher, env={**env, "RUN_DIR": str(run)}, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "holds a completed run" in again.stderr
    assert json.loads((run / "trainer_state.json").read_text()) == state
