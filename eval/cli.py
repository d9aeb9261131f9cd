"""What every evaluator's command line shares: one clear line and exit code 2 for a bad input, and results that
are never written over by accident.

    if __name__ == "__main__":
        run_cli(main)                      # EvalInputError / a missing data file -> "<prog>: error: ...", exit 2

* :class:`EvalInputError` -- raised for a bad input (data file, argument), with a message naming the file,
  the row or value, and the fix.
* :func:`add_overwrite_argument` and :func:`check_save_dir` -- ``--save_dir`` that already holds results
  (``metrics.json``) is refused unless ``--overwrite``; a training run directory (its own ``metrics.json``,
  adapter and ``completed``) is refused always: results go into a subfolder such as ``<run>/mmlu_results``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from open_instruct.errors import UserError
from open_instruct.files import write_atomic  # noqa: F401  (the evaluators import it from here)

RUN_DIR_MARKERS = ("completed", "adapter_config.json", "trainer_state.json")


class EvalInputError(UserError, ValueError):
    """A bad input to an evaluator, reported as one line (exit code 2) without a traceback."""


def int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (a bad value is argparse's usage error, exit code 2)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_overwrite_argument(ap) -> None:
    ap.add_argument("--overwrite", action="store_true", help="replace the results already in --save_dir "
                    "(without it, a --save_dir holding metrics.json is refused)")


def check_save_dir(save_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse a ``--save_dir`` whose results would be replaced (without ``overwrite``) or that is a training run."""
    save_dir = Path(save_dir)
    markers = [m for m in RUN_DIR_MARKERS if (save_dir / m).exists()]
    if markers:
        raise EvalInputError(f"--save_dir {save_dir} is a training run directory (it holds {', '.join(markers)}); "
                             "write the results into a subfolder such as "
                             f"{save_dir / 'mmlu_results'}")
    if (save_dir / "metrics.json").exists() and not overwrite:
        raise EvalInputError(f"--save_dir {save_dir} already holds results ({save_dir / 'metrics.json'}); pass "
                             "--overwrite to replace them, or choose another --save_dir")
    return save_dir


def read_json_file(path: str | Path, what: str):
    """``json.loads`` of a data file; a cut-off or non-JSON file is an EvalInputError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark is skipped
    except UnicodeDecodeError as err:
        raise EvalInputError(f"{path}: {what} is not UTF-8 text (byte offset {err.start}); download it again "
                             "(bash scripts/prepare_eval_data.sh)") from None
    except json.JSONDecodeError as err:
        raise EvalInputError(f"{path}: {what} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
                             "a cut-off download? Delete it and run bash scripts/prepare_eval_data.sh again") from None


def program_name(module: str) -> str:
    """The name errors are reported under: the module (``eval.mmlu.run_eval``), or for ``python -m
    eval.mmlu.run_eval`` (whose module is ``__main__``) the evaluator's folder (``mmlu``)."""
    if module == "__main__":
        path = Path(sys.argv[0])
        return path.parent.name if path.name == "run_eval.py" else path.name
    return module


def run_cli(main, argv=None, prog: str | None = None):
    """Run an evaluator's ``main(argv)``; expected failures end as one line on stderr and exit code 2, a stop by
    SIGTERM / SIGUSR1 as one line and exit code 75 (what was finished is kept for the rerun)."""
    prog = prog or program_name(getattr(main, "__module__", "__main__"))
    from open_instruct.errors import run_main, stop_on_signals

    def checked(args):
        try:
            with stop_on_signals(detail="no metrics.json was written; run the same command again to finish (MMLU "
                                        "subjects and BBH tasks already scored are kept)"):
                return main(args)
        except FileNotFoundError as err:  # a data file named by the evaluator's own check (require_file)
            raise EvalInputError(str(err)) from None

    return run_main(checked, prog, argv, exit=False)


def write_metrics(save_dir: str | Path, metrics: dict, indent: int = 4) -> Path:
    """``save_dir/metrics.json`` (the file the summarizers read), announced on stdout; written atomically."""
    path = write_atomic(Path(save_dir) / "metrics.json",
                        lambda tmp: tmp.write_text(json.dumps(metrics, indent=indent)))
    print(f"Wrote {path}")
    return path


class Progress:
    """The parts of an evaluation (MMLU subjects, BBH tasks) already scored into ``save_dir``, so that a rerun after
    an interruption (SIGTERM, a kill, a full disk) keeps them. Kept in ``save_dir/.progress.json`` together with the
    settings they were scored with; other settings, or ``--overwrite``, start over. Removed once metrics.json is
    written."""

    NAME = ".progress.json"

    def __init__(self, save_dir: str | Path, settings: dict, overwrite: bool = False):
        self.path = Path(save_dir) / self.NAME
        self.settings = json.loads(json.dumps(settings, default=str))
        self.done: list[str] = []
        if self.path.is_file() and not overwrite:
            try:
                saved = json.loads(self.path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                saved = {}
            if isinstance(saved, dict) and saved.get("settings") == self.settings:
                self.done = list(saved.get("done", []))

    def __contains__(self, part: str) -> bool:
        return part in self.done

    def add(self, part: str) -> None:
        self.done.append(part)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, lambda tmp: tmp.write_text(json.dumps({"settings": self.settings, "done": self.done})))

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def read_jsonl_file(path: str | Path) -> list:
    """The records of a JSON-lines file (``.jsonl`` or gzipped ``.jsonl.gz``); a bad line is an EvalInputError
    naming the file and the line."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    hint = "fix or download it again (bash scripts/prepare_eval_data.sh)"
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is skipped
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise EvalInputError(f"{path} line {lineno} is not valid JSON ({err}): cut off? {hint}") from None
    except UnicodeDecodeError as err:
        raise EvalInputError(f"{path} is not UTF-8 text (byte offset {err.start}); {hint}") from None
    except (EOFError, OSError) as err:  # gzip: not a gzip file, or cut off
        if isinstance(err, FileNotFoundError):
            raise
        raise EvalInputError(f"{path} cannot be read ({type(err).__name__}: {err}): cut off or not "
                             f"{'gzipped ' if path.suffix == '.gz' else ''}JSON lines? {hint}") from None
    if not rows:
        raise EvalInputError(f"{path} holds no records (the file is empty); {hint}")
    return rows
