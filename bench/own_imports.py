#!/usr/bin/env python3
"""Milliseconds Tusk's own modules take to import, with the libraries they stand on loaded.

A diagnostic beside ``bench_startup.py`` (which times whole commands): it loads click,
SQLAlchemy with its SQLite dialect and the stdlib modules Tusk uses first, with the cyclic
collector off as the ``tusk`` command has it, then imports each module named on the command
line in turn and prints the time each added. The default is the path of ``tusk list repo`` on
a home. Run it a few times; compile the bytecode first (``bench/bytecode.py``)::

    .venv/bin/python bench/own_imports.py [MODULE ...]
"""

from __future__ import annotations

import gc
import importlib
import sys
import time

DEFAULT = ["tusk.cli.main", "tusk.sdk.local"]


def main(modules: list[str]) -> None:
    gc.disable()
    import click  # noqa: F401
    import sqlalchemy
    import sqlalchemy.dialects.sqlite  # noqa: F401

    parts = []
    for name in modules:
        start = time.perf_counter()
        importlib.import_module(name)
        parts.append(f"{name}={1000 * (time.perf_counter() - start):.1f} ms")
    print("  ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
