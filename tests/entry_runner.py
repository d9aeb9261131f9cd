"""Run many command-line entry points cheaply: one process imports the heavy libraries once, then forks a fresh
child per command, which runs the module or script as ``__main__`` (``runpy``, as ``python -m`` / ``python
script.py`` do) with its own argv, working directory, stdout and stderr files, and exits with its status. An
uncaught exception prints Python's own traceback and exits with 1, exactly as in a fresh interpreter.

Protocol (one JSON object per line on stdin, one answer per line on stdout):
    {"target": "eval.mmlu.run_eval" | "mmlu_summarize.py", "argv": [...], "cwd": DIR, "out": FILE, "err": FILE}
    -> {"rc": N}
"""

import json
import os
import runpy
import sys
import traceback

import pandas  # noqa: F401  (imported once here, inherited by every child)
import peft  # noqa: F401
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import transformers  # noqa: F401

torch.set_num_threads(1)


def child(job: dict) -> int:
    os.chdir(job["cwd"])
    for fd, path in ((1, job["out"]), (2, job["err"])):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    target = job["target"]
    sys.argv = [target, *job["argv"]]
    try:
        if target.endswith(".py"):
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (what the interpreter does with an uncaught exception)
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(job)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
