"""Shared by the trainer tests: a callback that interrupts training like a preempted job, a tiny chat file."""

import json
from pathlib import Path

from transformers import TrainerCallback


def write_chat_file(path: Path, n: int = 64) -> Path:
    """``n`` one-turn chat examples (messages format) at ``path``, every reply the same short sentence."""
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say it ({i})."},
                                                     {"role": "assistant", "content": "The quick brown fox."}]})
                            + "\n" for i in range(n)))
    return path


class StopAt(TrainerCallback):
    """Raises KeyboardInterrupt right after checkpoint ``step`` is written (a simulated interruption)."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption")
