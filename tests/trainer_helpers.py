"""Shared by the trainer tests: a callback that interrupts training like a preempted job."""

from transformers import TrainerCallback


class StopAt(TrainerCallback):
    """Raises KeyboardInterrupt right after checkpoint ``step`` is written (a simulated interruption)."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption")
