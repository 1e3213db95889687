"""Sizes for people: ``512 B``, ``1.2 KiB``, ``3.4 GiB`` (the CLI's tables and the reports), and
back (``100MB``, as branch triggers take them)."""

from __future__ import annotations

import re

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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str | int) -> int:
    """``"100MB"`` -> 100_000_000, ``"1.5GiB"``, ``"512 KiB"``, ``"10k"``, ``4096`` -> bytes.

    As Pachyderm's trigger sizes (go-units): decimal prefixes (KB, MB, K, M...), case ignored;
    unlike it, ``KiB``/``Ki``... are binary (1024). Raises ValueError with a one-line reason.
    """
    hint = "use a size like '100MB', '1.5GiB', '512KiB' or a number of bytes"
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size; {hint}")
    if isinstance(text, int):
        number: float = text
    else:
        m = _SIZE.match(str(text))
        if m is None or (m.group(3) and not m.group(2)):
            raise ValueError(f"{text!r} is not a size; {hint}")
        base = 1024 if m.group(3) else 1000
        number = float(m.group(1)) * base ** _SIZE_POWERS[m.group(2).lower()]
    if number < 1:
        raise ValueError(f"{text!r}: a size must be at least one byte; {hint}")
    return int(number)


def human_duration(seconds: float) -> str:
    """``30d``, ``12h``, ``1d12h``, ``90s``: the largest units that say it exactly (to the
    second)."""
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"
