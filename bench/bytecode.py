"""Tusk's modules compiled to bytecode before a benchmark times whole processes.

An installed Tusk runs from bytecode: pip compiles a wheel's modules when it installs them,
and Python writes the cache of a source checkout on its first import. Where
``PYTHONDONTWRITEBYTECODE`` is set (these machines' shells set it) nothing is written, and
every ``tusk`` process would compile each module it imports whose cache is missing or older
than its source: 0.05-0.1 s of a command's start-up measured here, which no user pays. So
the benchmarks that time whole ``tusk`` processes compile Tusk's package first, as
``pip install`` would.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import tusk


def compile_tusk() -> None:
    """Write the bytecode cache of every module of the ``tusk`` package this Python runs."""
    compile_tree(Path(tusk.__file__).resolve().parent)


def compile_tree(folder: Path) -> None:
    """Write the bytecode cache of every module below ``folder`` (another version's ``src``)."""
    if not compileall.compile_dir(folder, quiet=1):
        raise SystemExit(f"cannot compile {folder}")
