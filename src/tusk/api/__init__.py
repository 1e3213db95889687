"""The REST API edge (FastAPI): ``create_app(pfs, pps)``; see ``tusk.api.app``.

``tusk.api.wire`` (errors, result objects and tar framing shared with the SDK's HTTP client)
imports no web framework, so this package loads FastAPI only when ``create_app`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tusk.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tusk.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
