"""Run untrusted, model-written Python programs one at a time in a sandbox.

Every program gets its own process tree, started through Debian's bubblewrap (``bwrap``):

* ``--unshare-all``: no network (own, empty network namespace), own PID/IPC/UTS namespaces, so every process
  the program starts dies with it (``--die-with-parent``; the PID namespace's init is killed last);
* a read-only view of the system (``/usr``, ``/lib*``, ``/bin`` and the interpreter's prefix); the only
  writable places are a fresh, size-limited in-memory working directory (``/sandbox``, holding a read-only
  copy of the program) and a private, size-limited ``/tmp``, both gone when it ends: nothing on the host
  can be written or deleted, and the disk cannot be filled;
* a clean environment (``--clearenv``; only PATH, HOME, LANG and PYTHON* settings that keep Python quiet);
* resource limits set with util-linux ``prlimit``: CPU seconds, address space (memory), processes, file
  size; run as root, each program also runs under an unprivileged user id of its own (taken in turn from a
  range of 4096), so the process limit counts only that program's processes (the kernel releases the
  count of a finished sandbox a little later, so ids are not reused at once);
* a wall-clock limit: past it the whole process group is killed.

A program passes only when it exits with status 0 **and** its last line of output is a random sentinel that
the harness prints after the tests; so ``sys.exit(0)`` / ``os._exit(0)`` before the tests ran is a failure.
(The sentinel is in the program text, so code that reads its own source could forge it; the sandbox guards
against accidents and crude attacks of model-written code, not an adversary that targets this harness.)

Without a working ``bwrap`` the evaluator refuses to run code, unless ``weak=True`` (``--allow_weak_sandbox``):
then programs run with the same limits, temporary directory, clean environment and wall clock, but **without**
filesystem or network isolation.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`), or pass "
                "--allow_weak_sandbox to run model-written code with resource limits only (no filesystem or "
                "network isolation)")
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/etc/alternatives")
UNPRIVILEGED_UID_BASE, UNPRIVILEGED_UIDS = 61000, 4096  # run as root: programs take uids 61000.. in turn


class SandboxUnavailable(RuntimeError):
    """No working sandbox tool; the message says how to get one."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0          # wall-clock seconds per program
    memory_mb: int = 2048         # address space
    max_processes: int = 32       # processes/threads of this program (root: its own uid)
    max_file_mb: int = 64         # largest file it may write
    disk_mb: int = 128            # size of each of its in-memory /sandbox and /tmp


@dataclass(frozen=True)
class Outcome:
    passed: bool
    result: str                   # "passed", "timed out", or "failed: <reason>"


def sandbox_python() -> str:
    """The interpreter used inside the sandbox: the system's python3 when there is one (readable by any
    user), else this interpreter."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return os.path.realpath(sys.executable)


class Sandbox:
    """Runs programs under bwrap (or, with ``weak=True`` and no bwrap, under rlimits only)."""

    def __init__(self, limits: Limits = Limits(), weak: bool = False, python: str | None = None):
        self.limits = limits
        self.python = python or sandbox_python()
        self.bwrap = shutil.which("bwrap")
        self.prlimit = shutil.which("prlimit")
        if self.prlimit is None:
            raise SandboxUnavailable("the `prlimit` command (util-linux) is needed to limit CPU, memory and "
                                     "processes; install util-linux")
        self.as_root = os.geteuid() == 0
        self._uids = itertools.count(secrets.randbelow(UNPRIVILEGED_UIDS))
        problem = self._probe() if self.bwrap else "bubblewrap (bwrap) is not installed"
        if problem:
            if not weak:
                raise SandboxUnavailable(f"cannot sandbox model-written code: {problem}; {INSTALL_HINT}.")
            print(f"[warning] {problem}; --allow_weak_sandbox: running model-written code with resource limits, "
                  "a temporary directory and a clean environment only (NO filesystem or network isolation).",
                  file=sys.stderr)
            self.bwrap = None
        self.kind = "bubblewrap" if self.bwrap else "weak (rlimits only)"

    # ------------------------------------------------------------------------------------------- commands

    def _bwrap_args(self, workdir: str) -> list[str]:
        size = str(self.limits.disk_mb << 20)
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--proc", "/proc",
                "--dev", "/dev", "--size", size, "--tmpfs", "/tmp"]
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(self.python)))  # e.g. /usr, /opt/python3.11
        for path in dict.fromkeys((*SYSTEM_DIRS, prefix)):
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--size", size, "--tmpfs", "/sandbox", "--ro-bind", os.path.join(workdir, "program.py"),
                 "/sandbox/program.py", "--chdir", "/sandbox", "--clearenv"]
        for key, value in self._env("/sandbox").items():
            args += ["--setenv", key, value]
        return args

    @staticmethod
    def _env(home: str) -> dict:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}

    def _limit_args(self, nproc: int) -> list[str]:
        lim = self.limits
        cpu = max(1, int(lim.timeout) + 1)
        return [self.prlimit, f"--cpu={cpu}", f"--as={lim.memory_mb << 20}", f"--nproc={nproc}",
                f"--fsize={lim.max_file_mb << 20}", "--core=0", "--"]

    def _nproc(self) -> int:
        if self.as_root:
            return self.limits.max_processes
        # Not root: the limit counts all processes of this user, so allow what runs now plus the sample's own.
        try:
            mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and p.stat().st_uid == os.getuid())
        except OSError:
            mine = 256
        return mine + self.limits.max_processes

    def _probe(self) -> str | None:
        """Check that bwrap can start a program here (user namespaces may be disabled)."""
        outcome = self.run("pass", probe=True)
        return None if outcome.passed else f"bubblewrap does not work on this machine ({outcome.result})"

    # ------------------------------------------------------------------------------------------- running

    def run(self, program: str, probe: bool = False) -> Outcome:
        """Run ``program`` (Python source) and report whether it passed."""
        sentinel = "__passed__" + secrets.token_hex(16)
        source = program + f"\n\nprint({sentinel!r}, flush=True)\n"
        workdir = tempfile.mkdtemp(prefix="humaneval_")
        uid = UNPRIVILEGED_UID_BASE + next(self._uids) % UNPRIVILEGED_UIDS if self.as_root else None
        try:
            Path(workdir, "program.py").write_text(source, encoding="utf-8")
            if uid is not None:
                os.chown(workdir, uid, uid)
                os.chown(Path(workdir, "program.py"), uid, uid)
            if self.bwrap:
                cmd = self._limit_args(self._nproc()) + self._bwrap_args(workdir) + [self.python, "program.py"]
                env, cwd = {"PATH": "/usr/bin:/bin"}, workdir
            else:
                cmd = self._limit_args(self._nproc()) + [self.python, "-I", "program.py"]
                env, cwd = self._env(workdir), workdir
            kwargs = dict(user=uid, group=uid, extra_groups=[]) if uid is not None else {}
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, **kwargs)
            try:
                out, err = proc.communicate(timeout=self.limits.timeout + (5 if probe else 0))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                return Outcome(False, "timed out")
            finally:
                _kill_group(proc)  # nothing may outlive the sample (weak mode: leftover children of the group)
            lines = out.decode("utf-8", "replace").strip().splitlines()
            if proc.returncode == 0 and lines and lines[-1] == sentinel:
                return Outcome(True, "passed")
            return Outcome(False, "failed: " + _reason(proc.returncode, err.decode("utf-8", "replace")))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reason(returncode: int, stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if lines:
        return lines[-1][:300]
    if returncode == 0:
        return "exited before the tests finished (no completion sentinel)"
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"
