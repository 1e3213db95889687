"""Cron specs as Pachyderm takes them (robfig/cron ``ParseStandard``): five fields
(``*/10 * * * *``), a descriptor (``@hourly``, ``@daily``...) or ``@every <Go duration>``.

A leaf: branch triggers (tusk.pfs) and pipeline specs (tusk.pps) both read them. Times are epoch
seconds, evaluated in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
HINT = (
    "use 5 fields (minute hour day-of-month month day-of-week) like '*/10 * * * *', "
    "a descriptor like '@hourly', or '@every 10s'"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration(text: str, hint: str) -> float:
    """Seconds of a Go duration string (``1h30m``, ``500ms``, ``10s``); ValueError with
    ``hint`` if it is none. Also pipeline specs' ``datum_timeout`` and ``job_timeout``."""
    total, pos = 0.0, 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration; {hint}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError(f"empty duration; {hint}")
    return total


def _every_seconds(text: str) -> float:
    """The interval of ``@every 1h30m`` in seconds (> 0); ValueError if it is not one."""
    every = text[len("@every") :].strip()
    try:
        total = go_duration(every, "write e.g. '@every 1h30m'")
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if total <= 0:
        raise ValueError(f"{text!r}: the interval must be positive, e.g. '@every 10s'")
    return total


def check_cron(value: str) -> str:
    """``value`` as a cron spec, whitespace and descriptor case normalised; ValueError with a
    one-line reason if it is none."""
    text = " ".join(str(value).split())
    if text.startswith("@every ") or text == "@every":
        _every_seconds(text)
        return text
    if text.startswith("@"):
        if text.lower() not in DESCRIPTORS:
            raise ValueError(f"{value!r} is not a cron descriptor; {HINT}")
        return text.lower()
    from croniter import croniter  # loads with a cron spec, not with every command

    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(f"{value!r} is not a cron expression; {HINT}")
    return text


def next_tick(spec: str, after: float) -> float:
    """When the cron ``spec`` (as :func:`check_cron` returns it) fires next after ``after``."""
    if spec.startswith("@every"):
        return after + _every_seconds(spec)
    from croniter import croniter

    return float(croniter(spec, datetime.fromtimestamp(after, UTC)).get_next(float))
