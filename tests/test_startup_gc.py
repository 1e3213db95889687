"""The `tusk` command keeps the cyclic collector off while it loads (tusk.gcpause).

Loading the CLI, SQLAlchemy and the store made the collector walk the new objects ~125 times
in `tusk list repo` (50-70 ms, finding nothing). Each check runs the real entry point in a
fresh interpreter and counts collections with ``gc.callbacks``; the time is not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tusk

PROBE = """
import gc, json, sys
seen = []
gc.callbacks.append(lambda phase, info: phase == "stop" and seen.append(info["generation"]))
{body}
print("GC=" + json.dumps({{"collections": len(seen), "enabled": gc.isenabled(),
                          "frozen": gc.get_freeze_count()}}))
"""

CLI = """
from tusk.cli.main import main
del seen[:]  # count from the command's start
sys.argv = ["tusk", *{argv!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def run(body: str, tmp_path: Path) -> dict[str, int | bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(tmp_path / "none.yaml")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("GC="))
    result: dict[str, int | bool] = json.loads(line[len("GC=") :])
    return result


def test_a_command_loads_without_collections_then_collects_as_usual(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("images")
    gc = run(CLI.format(argv=["--home", str(home), "list", "repo"]), tmp_path)
    # Before: ~125 collections while SQLAlchemy and the store loaded; now none until the
    # store is open (a query's own allocations may make one or two after that).
    assert gc["collections"] <= 2
    # Opening the store ended the pause: what loaded is frozen, the collector is back on.
    assert gc["enabled"] is True
    assert isinstance(gc["frozen"], int) and gc["frozen"] > 10_000


def test_a_command_that_opens_nothing_leaves_the_collector_on(tmp_path: Path) -> None:
    gc = run(CLI.format(argv=["version"]), tmp_path)
    assert gc["enabled"] is True


def test_a_program_using_the_sdk_keeps_its_collector_as_it_was(tmp_path: Path) -> None:
    body = f"""
import tusk
with tusk.Client({str(tmp_path / "home")!r}) as c:
    c.create_repo("images")
"""
    gc = run(body, tmp_path)
    assert gc["enabled"] is True
    assert gc["frozen"] == 0  # nothing frozen: only the `tusk` command pauses and freezes
    assert isinstance(gc["collections"], int) and gc["collections"] > 20
