"""Sizes for people: ``512 B``, ``1.2 KiB``, ``3.4 GiB`` (the CLI's tables and the reports)."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int | None) -> str:
    """``0 B``, ``512 B``, ``1.2 KiB``, ``3.4 GiB``; ``-`` for unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
