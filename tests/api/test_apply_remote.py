"""The ``tusk apply`` suite (tests/cli/test_cli_apply.py) again, against a server.

The CLI runs with ``--address`` on a live server on SQLite and on PostgreSQL, so the plan,
the single transaction and the git facts all cross HTTP; ``tusk up --once`` becomes a
scheduler pass on the server's own services.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from apihelpers import Live

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
import test_cli_apply as shared
from clihelpers import Result, Tusk

ENGINES = ("sqlite", "postgresql")

globals().update({k: v for k, v in vars(shared).items() if k.startswith("test_") and callable(v)})
project = shared.project
no_sandbox = shared.no_sandbox


class RemoteTusk(Tusk):
    def __init__(self, live: Live) -> None:
        super().__init__(live.services.home)
        self.live = live
        self.target = ["--address", live.url]

    def __call__(self, *args: str, **kw: Any) -> Result:
        if args[:2] == ("up", "--once"):
            self.live.client().run_scheduler(once=True)
            return Result(0, "", "", b"")
        return super().__call__(*args, **kw)


@pytest.fixture
def tusk(live: Live) -> Tusk:
    return RemoteTusk(live)
