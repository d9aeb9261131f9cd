"""Files written whole or not at all: the one way this project replaces a result, table, manifest or run record.

:func:`replacing` yields a temporary path next to the target and renames it over the target only when the block
succeeds, so a kill, an exception or a full disk never leaves a partial file (an earlier one stays as it was). The
temporary name holds the process id, so two processes writing the same file never share one. A full disk is one
line naming the directory (:func:`open_instruct.errors.no_space_error`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | Path, what: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder is created); rename it over ``path`` if the block succeeds,
    remove it if not."""
    from open_instruct.errors import disk_full, no_space_error

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and disk_full(err, path.parent):
            raise no_space_error(path.parent, what or path.name, "its partial file was removed and what was "
                                 "there before is unchanged") from None
        raise


def write_atomic(path: str | Path, write: Callable[[Path], object], what: str | None = None) -> Path:
    """``write(tmp_path)``, then rename it to ``path`` (see :func:`replacing`)."""
    with replacing(path, what) as tmp:
        write(tmp)
    return Path(path)


@contextlib.contextmanager
def open_atomic(path: str | Path, what: str | None = None, newline: str | None = None):
    """A text file (UTF-8) to write into; it becomes ``path`` when the block succeeds (see :func:`replacing`)."""
    with replacing(path, what) as tmp, open(tmp, "w", encoding="utf-8", newline=newline) as fout:
        yield fout


def write_text_atomic(path: str | Path, text: str, what: str | None = None) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def write_json_atomic(path: str | Path, data, what: str | None = None, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n", what)


def write_jsonl_atomic(path: str | Path, rows, what: str | None = None, ensure_ascii: bool = False) -> Path:
    """One JSON object per line (``ensure_ascii``: non-ASCII characters as ``\\uXXXX`` escapes, as ``json.dumps``
    writes them by default)."""
    with open_atomic(path, what) as fout:
        for row in rows:
            fout.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
    return Path(path)
