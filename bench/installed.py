"""The agent's code as a gateway runs it: with its bytecode compiled.

`pip install` compiles every module it installs; a checkout run through PYTHONPATH compiles each
module at every start instead when bytecode may not be written (PYTHONDONTWRITEBYTECODE, a
read-only tree), which adds about 0.1 s and 1 MB to a start here. The benchmarks compile the
code they run first, into its __pycache__ directories (ignored by git), so that they measure
the agent, not the compiler.
"""

from __future__ import annotations

import compileall
from pathlib import Path

__all__ = ["compile_code"]

PACKAGES = ("agent", "drivers")


def compile_code(root: Path) -> None:
    """Compile the agent's packages under ``root`` (only what is missing or stale)."""
    for package in PACKAGES:
        if not compileall.compile_dir(root / package, quiet=2):
            raise RuntimeError(f"{root / package} does not compile")
