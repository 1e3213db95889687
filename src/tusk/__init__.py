"""Tusk: version control and pipelines for data.

``tusk.Client`` is imported on first use, so ``import tusk.cli`` (and ``tusk --help``) stays
fast and does not load the storage stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tusk._version import __version__

__all__ = ["Client", "CommitHandle", "__version__", "errors"]

if TYPE_CHECKING:
    from tusk import errors
    from tusk.sdk import Client, CommitHandle


def __getattr__(name: str) -> Any:
    if name in ("Client", "CommitHandle"):
        from tusk import sdk

        return getattr(sdk, name)
    if name == "errors":
        import importlib

        return importlib.import_module("tusk.errors")
    raise AttributeError(f"module 'tusk' has no attribute {name!r}")
