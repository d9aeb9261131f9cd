"""The stack's versions, and the 4-bit (QLoRA) check of every method, which lives in tests/test_gpu_qlora.py.

Part of ``bench/gpu_check.sh``:

    python bench/gpu_qlora_check.py --versions    # print the versions of the stack and the GPU
    python bench/gpu_qlora_check.py               # python -m pytest -m gpu tests/test_gpu_qlora.py
"""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "deepspeed", "safetensors"):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report anything that stops an import
            out[name] = f"not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    out["torch.version.cuda"] = str(torch.version.cuda)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}"
        out["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    else:
        out["gpu"] = "none (torch.cuda.is_available() is False)"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", action="store_true", help="only print versions")
    args = ap.parse_args(argv)
    if args.versions:
        for k, v in versions().items():
            print(f"  {k:<20}{v}")
        return 0
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu",
           str(REPO / "tests" / "test_gpu_qlora.py")]
    rc = subprocess.call(cmd, cwd=REPO)
    print("QLORA_CHECK " + ("PASS" if rc == 0 else "FAIL"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
