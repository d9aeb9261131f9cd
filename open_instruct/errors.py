"""Expected failures and how every entry point reports them: one line on stderr, a fixed exit status.

* :class:`UserError` -- the one base type of expected failures: a bad argument or value, a missing, empty,
  damaged or foreign file, missing data, a full disk. Its message names the file or value and the fix. The
  older names (``UsageError``, ``AdapterError``, ``ExportError``, ``FetchError``, ``EvalInputError``,
  ``PackageError``) are subclasses, so code that catches them keeps working.
* :class:`Preempted` -- a stop asked for by SIGTERM / SIGUSR1 (a cluster preempting the job). Derived from
  ``BaseException`` like ``KeyboardInterrupt``, so no ``except Exception`` swallows it.
* :func:`run_main` -- how an entry point's ``main`` ends: ``UserError`` (and a full disk) -> ``prog: error:
  <one line>``, exit status 2; ``Preempted`` -> one line, exit status 75 (``EX_TEMPFAIL``: try again later).
* :func:`stop_on_signals` -- SIGTERM / SIGUSR1 raise ``Preempted`` while it is active (the evaluators).
* :func:`disk_full` / :func:`no_space_error` -- recognise ENOSPC anywhere in an exception's chain (torch and
  safetensors wrap it) and say which directory is full.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
from pathlib import Path

EXIT_ERROR = 2  # an expected failure: fix the input and run again
EXIT_PREEMPTED = 75  # os.EX_TEMPFAIL: stopped by a signal after saving its state; run the same command again
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class UserError(Exception):
    """An expected failure, reported as one line naming the file or value and the fix; exit status 2."""


class Preempted(BaseException):  # noqa: N818  (like KeyboardInterrupt: a request, not an error)
    """Stopped by a signal (SIGTERM / SIGUSR1); whatever was finished is saved. Exit status 75."""

    def __init__(self, signum: int, detail: str = ""):
        self.signum = signum
        self.detail = detail
        super().__init__(f"stopped by {signal_name(signum)}" + (f"; {detail}" if detail else ""))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def one_line(err: BaseException | str) -> str:
    """The message on one line (a multi-line message's lines joined with ' | ')."""
    text = str(err).strip() or (type(err).__name__ if isinstance(err, BaseException) else "")
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


_TORCH_WRITE_FAILED = ("PytorchStreamWriter", "inline_container", "iostream error", "file write failed")


def disk_full(err: BaseException, directory: str | Path | None = None) -> bool:
    """Whether ``err`` (or an exception it was raised from) is ENOSPC / EDQUOT. safetensors says so in its own
    error's message; torch.save does not (``RuntimeError: [enforce fail at inline_container.cc] ... iostream
    error``), so with ``directory`` a failed torch write counts when that directory's filesystem is (nearly) full."""
    chain = list(_chain(err))
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e) for text in _NO_SPACE_TEXT):
            return True
    if directory is not None and any(text in str(e) for e in chain for text in _TORCH_WRITE_FAILED):
        import shutil

        try:
            usage = shutil.disk_usage(directory)
        except OSError:
            return False
        return usage.free < max(64 << 20, usage.total // 50)
    return False


def no_space_error(directory: str | Path, what: str, after: str = "") -> UserError:
    """The one-line error for a full disk while writing ``what`` into ``directory``."""
    return UserError(f"no space left on the device holding {directory}: {what} could not be written"
                     + (f"; {after}" if after else "") + ". Free space there (or choose another directory) and "
                     "run the same command again.")


@contextlib.contextmanager
def stop_on_signals(signals=STOP_SIGNALS, detail: str = ""):
    """While active, SIGTERM / SIGUSR1 raise :class:`Preempted` in the main thread (outside it: no-op)."""
    def handler(signum, frame):
        raise Preempted(signum, detail)

    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def one_line_usage(parser):
    """Make ``parser`` report a bad command line as one line (``prog: error: ...; see --help``), exit status 2,
    instead of argparse's usage block followed by the error. Returns the parser."""
    def error(message):
        print(f"{parser.prog}: error: {one_line(message)} (see {parser.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)

    parser.error = error
    return parser


def report(prog: str, err: BaseException | str) -> None:
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)


def run_main(main, prog: str, argv=None, exit: bool = True):
    """Run ``main(argv)`` as an entry point: expected failures become one line and exit status 2, a preemption
    one line and exit status 75. With ``exit`` (the default) ``sys.exit`` with main's return value (0 for a
    non-int); without it, return that value (used by in-process callers, which get ``SystemExit`` on failure)."""
    try:
        result = main(argv)
    except UserError as err:
        report(prog, err)
        raise SystemExit(EXIT_ERROR) from None
    except Preempted as err:
        print(f"{prog}: {one_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_PREEMPTED) from None
    except OSError as err:
        if not disk_full(err):
            raise
        where = getattr(err, "filename", None)
        report(prog, no_space_error(Path(where).parent if where else "the output directory",
                                    Path(where).name if where else "a file"))
        raise SystemExit(EXIT_ERROR) from None
    if not exit:
        return result
    raise SystemExit(result if isinstance(result, int) else 0)
