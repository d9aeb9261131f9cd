"""Preemption-safe training: SIGTERM or SIGUSR1 (a cluster taking the machine back) ends training cleanly.

Clusters preempt jobs with SIGTERM (SLURM: optionally SIGUSR1 ahead of time, ``#SBATCH --signal``; Kubernetes:
SIGTERM, then SIGKILL after the grace period). With :class:`StopOnSignal` among the Trainer's callbacks:

1. the signal only sets a flag; the current optimizer step runs to its end (with gradient accumulation: all of
   its micro-batches);
2. at that step's end the Trainer logs, saves a complete ``checkpoint-N`` (its ``trainer_state.json`` is written
   last, so a checkpoint cut off by a SIGKILL is never resumed from: ``run_dir.last_complete_checkpoint``) and
   stops; an evaluation due at that step is skipped to save time;
3. the trainer writes the marker ``preempted`` (JSON: step, signal, checkpoint) into the output directory -- not
   ``completed`` -- and exits with status 75 (``EX_TEMPFAIL``). The same command with
   ``--resume_from_checkpoint auto`` (the launcher: ``RUN_DIR=<run>``) continues from that checkpoint, with the
   same data order, optimizer and random state, so the run equals an uninterrupted one.

More signals while stopping are noted and ignored: the checkpoint being written is finished. With several
processes (DDP, DeepSpeed, several machines) the ranks agree on the step to stop at through accelerate's trigger
(``Accelerator.set_trigger`` / ``check_trigger``: one all-reduce of a flag per step), so a signal that reaches only
some ranks stops all of them at the same step. A signal that arrives after the last step is noted and the run is
finished as usual.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from open_instruct.errors import STOP_SIGNALS, signal_name

PREEMPTED = "preempted"  # marker file in the output directory: stopped by a signal after a complete checkpoint


class StopOnSignal(TrainerCallback):
    """SIGTERM / SIGUSR1 -> finish the step, save a checkpoint, stop training (see the module doc)."""

    def __init__(self, signals=STOP_SIGNALS, prog: str = "finetune_trainer"):
        self.signals = tuple(signals)
        self.prog = prog
        self.received: int | None = None  # the first signal this process got
        self.stopped_at: int | None = None  # the step training was stopped at (all ranks agree)
        self.trainer = None  # set after the Trainer is built: multi-process agreement needs its accelerator
        self._previous: dict = {}
        self._finished = False

    # ------------------------------------------------------------------ signal handlers
    def install(self) -> StopOnSignal:
        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (an embedding program): signals stay as they were
            pass
        return self

    def uninstall(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal_name(signum)
        if self._finished:
            print(f"{self.prog}: {name} received after the last training step; finishing the run's outputs",
                  file=sys.stderr, flush=True)
        elif self.received is None:
            print(f"{self.prog}: {name} received: finishing the current step, then saving a checkpoint and stopping",
                  file=sys.stderr, flush=True)
        else:
            print(f"{self.prog}: {name} received again: already stopping; the checkpoint is being finished",
                  file=sys.stderr, flush=True)
        if self.received is None:
            self.received = signum

    # ------------------------------------------------------------------ Trainer callback
    def _stop_requested(self, args) -> bool:
        local = self.received is not None and not self._finished
        if self.trainer is None or args.world_size <= 1:
            return local
        accelerator = self.trainer.accelerator
        if local:
            accelerator.set_trigger()
        return accelerator.check_trigger()  # collective: every rank calls it at every step end

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self._stop_requested(args):
            if state.global_step >= state.max_steps:
                self._finished = True  # the last step: the run finishes as usual
                return control
            self.stopped_at = state.global_step
            control.should_log = True  # the losses since the last log are not in the checkpoint: log them now
            control.should_evaluate = False
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        # Stop only once the checkpoint is written: the control state is saved inside it, and a resumed run must
        # not read should_training_stop from it.
        if self.stopped_at == state.global_step:
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._finished = True
        return control

    @property
    def preempted(self) -> bool:
        return self.stopped_at is not None


def mark_preempted(output_dir: str | Path, stop: StopOnSignal, checkpoint: str | None) -> Path:
    """Write the ``preempted`` marker (JSON) into ``output_dir``."""
    path = Path(output_dir) / PREEMPTED
    record = {"step": stop.stopped_at, "signal": signal_name(stop.received) if stop.received else "another rank's",
              "checkpoint": checkpoint, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = path.with_name(f".{PREEMPTED}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return path
