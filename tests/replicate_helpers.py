"""A small BIG-bench-like task tree in the real layout, for the replication tests."""

import json
from pathlib import Path


def write_task(path: Path, description: str, examples: list[dict], **extra) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "task.json").write_text(json.dumps({"name": path.name, "description": description,
                                                "examples": examples, **extra}))


def fake_bigbench(root: Path, n_families: int = 6, n_examples: int = 40) -> Path:
    """``root/benchmark_tasks`` with n generative families, one multiple-choice family with subtasks, a BBH
    source family (``navigate``) and a family whose examples are all too long."""
    tasks = root / "benchmark_tasks"
    for f in range(n_families):
        write_task(tasks / f"family_{f}", f"Repeat the word number {f}.",
                   [{"input": f"word {f}-{i}", "target": [f"w{f}x{i}", "alt"]} for i in range(n_examples)])
    for sub in ("easy", "hard"):
        write_task(tasks / "choices" / sub, f"Pick the right colour ({sub}).",
                   [{"input": f"Colour of sky {i}?", "target_scores": {"red": 0, "blue": 1, "green": 0}}
                    for i in range(n_examples)], task_prefix="Answer with one colour.")
    (tasks / "choices" / "task.json").write_text(json.dumps({"name": "choices", "description": "parent",
                                                             "subtasks": []}))
    write_task(tasks / "navigate", "BBH source", [{"input": f"go {i}", "target": "yes"} for i in range(n_examples)])
    write_task(tasks / "too_long", "Long inputs", [{"input": "x" * 5000, "target": "y"} for _ in range(n_examples)])
    return tasks
