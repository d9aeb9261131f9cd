"""Read and validate an instruction-tuning file before any tokenization or training.

Two record formats are accepted (the two open-instruct understands), one JSON object per line:

* messages:          ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...], ...}``
* prompt/completion: ``{"prompt": str, "completion": str, ...}``

Extra keys (``dataset``, ``id``, ...) are allowed and kept. Every problem is reported as a ``ValueError``
naming the file, the 1-based line number and what is wrong, so a bad line in a 100k-line file fails in
seconds instead of hours into a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
ALLOWED_SUFFIXES = (".json", ".jsonl")


def example_format(example: dict[str, Any]) -> str:
    """Return ``"messages"`` or ``"prompt_completion"`` for a validated record."""
    return "messages" if example.get("messages") is not None else "prompt_completion"


def validate_example(record: Any) -> str | None:
    """Return what is wrong with one decoded record, or ``None`` if it is a valid training example."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    has_messages = "messages" in record
    has_pc = "prompt" in record or "completion" in record
    if has_messages and has_pc:
        return "has both 'messages' and 'prompt'/'completion'; keep one format per record"
    if has_messages:
        messages = record["messages"]
        if not isinstance(messages, list):
            return f"'messages' must be a list, got {type(messages).__name__}"
        if not messages:
            return "'messages' is empty"
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                return f"{where} must be an object with 'role' and 'content', got {type(message).__name__}"
            missing = [k for k in ("role", "content") if k not in message]
            if missing:
                return f"{where} is missing {' and '.join(repr(k) for k in missing)}"
            if message["role"] not in ROLES:
                return f"{where} has role {message['role']!r}; expected one of {list(ROLES)}"
            if not isinstance(message["content"], str):
                return f"{where} content must be a string, got {type(message['content']).__name__}"
        return None
    if has_pc:
        for key in ("prompt", "completion"):
            if key not in record:
                return f"has 'prompt'/'completion' format but is missing {key!r}"
            if not isinstance(record[key], str):
                return f"{key!r} must be a string, got {type(record[key]).__name__}"
        return None
    if "text" in record:
        return ("is a plain-text record ({'text': ...}); train on plain text (continued pretraining) with "
                "--train_format text (launcher: TRAIN_FORMAT=text)")
    return f"needs either 'messages' or 'prompt' and 'completion'; found keys {sorted(record)}"


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in ALLOWED_SUFFIXES:
        raise ValueError(f"training file {str(path)!r} must end in .json or .jsonl (JSON lines), got {path.suffix!r}")
    if not path.exists():
        raise FileNotFoundError(f"training file {str(path)!r} does not exist; create it with "
                                "open_instruct/reformat_datasets.py or pass the right --train_file")
    if not path.is_file():
        raise ValueError(f"training file {str(path)!r} is not a regular file")
    return path


def load_jsonl_examples(path: str | Path, validate=None) -> list[dict[str, Any]]:
    """Read a ``.json``/``.jsonl`` training file and validate every record (with ``validate``, a function
    returning what is wrong with a record or None; default :func:`validate_example`).

    The file is JSON lines (one object per line; blank lines are skipped). A ``.json`` file whose first
    non-blank character is ``[`` is read as one JSON array of records instead (errors then name the
    record index). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for anything else,
    always naming the file and the 1-based line (or record) number. An empty file is an error too.
    """
    path = _check_path(path)
    validate = validate or validate_example
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is skipped
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                         "the training file must be JSON lines in UTF-8 -- is it a binary or compressed file?"
                         ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ValueError(f"{path}: line {line}: contains NUL bytes; the training file must be JSON lines text, "
                         "not a binary file")
    examples: list[dict[str, Any]] = []
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: invalid JSON array: {e.msg}") from None
        for i, record in enumerate(records):
            problem = validate(record)
            if problem:
                raise ValueError(f"{path}: record {i + 1} of the JSON array: {problem}")
            examples.append(record)
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            problem = validate(record)
            if problem:
                raise ValueError(f"{path}: line {lineno}: {problem}")
            examples.append(record)
    if not examples:
        raise ValueError(f"{path}: no examples found (the file is empty)")
    return examples
