"""Write a data set atomically, with a manifest: build it in a temporary folder, rename it into place.

A set counts as present only when its folder holds ``MANIFEST.json``, which is written last inside the
temporary folder; an interrupted build leaves a ``.tmp-*`` folder that is removed at the next run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

MANIFEST = "MANIFEST.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def count_rows(path: Path) -> int | None:
    """Rows of a data file: JSONL / CSV lines (gzipped too), examples of a BBH task JSON; None otherwise."""
    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    if name.endswith(".jsonl"):
        return sum(1 for line in path.open(encoding="utf-8") if line.strip())
    if name.endswith(".csv"):
        import pandas as pd

        return len(pd.read_csv(path, header=None, keep_default_na=False))
    if name.endswith(".json") and name != MANIFEST:
        data = json.loads(path.read_text(encoding="utf-8"))
        return len(data["examples"]) if isinstance(data, dict) and "examples" in data else None
    return None


def manifest_for(folder: Path, name: str, label: str, source: str) -> dict:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(path.relative_to(folder))] = {"rows": count_rows(path), "sha256": sha256(path)}
    return {"set": name, "label": label, "source": source, "files": files}


def is_complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def build_atomically(out_root: Path, name: str, label: str, source: str, build: Callable[[Path], None]) -> dict:
    """``build(tmp_folder)`` fills a temporary folder; it gets a manifest and is renamed to ``out_root/name``.

    An existing folder without a manifest (a partial or hand-made set) is moved aside to ``name.old-*``,
    never deleted.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return finalize(out_root, name, label, source)


def finalize(out_root: Path, name: str, label: str, source: str) -> dict:
    """Give the finished temporary folder ``out_root/.tmp-name`` its manifest and rename it to ``name``."""
    tmp, final = out_root / f".tmp-{name}", out_root / name
    if not tmp.is_dir():
        raise FileNotFoundError(f"{tmp} does not exist; nothing to finalize.")
    manifest = manifest_for(tmp, name, label, source)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    if final.exists():
        aside = out_root / f"{name}.old-{len(list(out_root.glob(name + '.old-*')))}"
        final.rename(aside)
        print(f"{name}: an incomplete folder was in the way; moved it to {aside}")
    tmp.rename(final)
    return manifest


def record_in_place(folder: Path, name: str, label: str, source: str) -> dict:
    """Write the manifest of a set that is already in place (downloaded from the original source)."""
    manifest = manifest_for(folder, name, label, source)
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    tmp.rename(folder / MANIFEST)
    return manifest
