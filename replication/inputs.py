"""What a setting's rows were made from: fingerprints of its inputs, kept beside runs.csv in ``inputs.json``.

The rows of one table are comparable only if they were trained and scored on the same data and base model. Both are
regenerated on every new machine (``python -m replication prepare``, ``python -m open_instruct.models
fetch-smollm2``), and a table is continued across machines for days. So ``run`` fingerprints its inputs before any
training and compares them with those recorded with the table: a difference stops the grid before it adds a row made
from something else, and names what changed.

* data: the sha256 of each file the runs read (the training file; the held-out files the scorer reads; ARC-Easy and
  the MMLU CSVs where the setting scores them);
* model: the sha256 of the base model's tensors, by name, dtype, shape and bytes (so a re-conversion that writes
  the same weights with other file metadata matches).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eval.data_prep.store import sha256
from open_instruct.errors import UserError
from open_instruct.files import write_json_atomic

FILE_NAME = "inputs.json"
HELDOUT_FILES = {"loss": ("heldout.jsonl",), "full": ("seen_tasks.jsonl", "unseen_tasks.jsonl")}


class InputsChanged(UserError):
    """The inputs differ from those a table's rows were made with."""


def tensors_digest(model_dir: Path) -> str:
    """sha256 over the model's tensors by name (each: its dtype, shape and raw bytes), whatever file holds them."""
    import torch
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:  # a PyTorch-pickle checkpoint: its bytes
        bins = sorted(model_dir.glob("*.bin"))
        if not bins:
            raise UserError(f"{model_dir} holds no *.safetensors or *.bin weights; check --model")
        return digest_of({p.name: sha256(p) for p in bins})
    parts = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t = f.get_tensor(name).contiguous()
                h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
                parts[name] = h.hexdigest()
    return digest_of(parts)


def digest_of(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def fingerprint(paths: dict, scoring: str) -> dict[str, str]:
    """``{input: sha256}`` for every input of a setting that scores ``scoring`` ("loss" or "full")."""
    out = {"model tensors": tensors_digest(paths["model"]), "train_file": sha256(paths["train_file"])}
    for name in HELDOUT_FILES[scoring]:
        out[f"held-out {name}"] = sha256(paths["heldout_dir"] / name)
    if scoring == "full":
        out["arc_file"] = sha256(paths["arc_file"])
        mmlu = paths["mmlu_dir"]
        out["mmlu_dir"] = digest_of({str(p.relative_to(mmlu)): sha256(p) for p in sorted(mmlu.rglob("*.csv"))})
    return out


def check_unchanged(paths: dict, scoring: str, rows: int, record: bool = True) -> str:
    """Compare the inputs with ``inputs.json`` beside the table; record them there when it is absent.

    Raises :class:`InputsChanged` on a difference; returns a line saying what was checked or recorded."""
    table: Path = paths["table"]
    recorded_file = table.parent / FILE_NAME
    now = fingerprint(paths, scoring)
    if recorded_file.is_file():
        try:
            recorded = json.loads(recorded_file.read_text(encoding="utf-8"))["sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{recorded_file} is damaged ({e}); restore it from git (git checkout -- "
                            f"{recorded_file.name}) rather than deleting it") from None
        changed = [k for k in now if k in recorded and recorded[k] != now[k]]
        if changed:
            k = changed[0]
            raise InputsChanged(
                f"the {k} differs from the one the rows of {table} were made with (sha256 {recorded[k][:12]}, now "
                f"{now[k][:12]}{'; also ' + ', '.join(changed[1:]) if changed[1:] else ''}): prepare the same inputs "
                f"again (python -m replication prepare; fetch-smollm2 for the model), or pass another --results_dir "
                f"to start a separate table")
        missing = {k: v for k, v in now.items() if k not in recorded}
        if not missing:
            return f"[replicate] inputs match {recorded_file.name} ({len(now)} fingerprints)"
        if not record:
            return f"[replicate] inputs match {recorded_file.name}; it lacks {', '.join(missing)}"
        write_json_atomic(recorded_file, {"sha256": {**recorded, **missing}}, indent=1)
        return f"[replicate] inputs match {recorded_file.name}; added {', '.join(missing)}"
    if not record:
        return f"[replicate] no {recorded_file} to compare the inputs with"
    table.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(recorded_file, {"sha256": now}, indent=1)
    since = f" (the {rows} rows already in the table predate it)" if rows else ""
    return f"[replicate] recorded the inputs' fingerprints in {recorded_file}{since}"
