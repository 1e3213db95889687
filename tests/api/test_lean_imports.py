"""A command imports only what it uses (issue 15): the import graph, not the time; and it
loads without cyclic garbage collections (tusk.gcpause).

Each check runs the real entry point (``tusk.cli.main.main``) or the SDK in a fresh
interpreter and reads ``sys.modules`` at the end. Against a server, the CLI and the SDK must
not load the storage layer (SQLAlchemy, the chunker, compressors of the chunk store, object
store clients), pydantic or the web framework; ``tusk --help`` loads neither the storage
layer nor httpx; an embedded read loads no HTTP client, pydantic or server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from apihelpers import Live, start_live, stop_live

import tusk

STORAGE = {
    "sqlalchemy",
    "psycopg",
    "pyfastcdc",
    "blake3",
    "boto3",
    "botocore",
    "tusk.storage",
    "tusk.pfs.service",
    "tusk.pfs.sources",
    "tusk.pfs.tree",
}
SERVER = {"fastapi", "starlette", "uvicorn", "tusk.api.app", "tusk.server"}
PIPELINES = {"pydantic", "yaml", "tusk.pps.spec", "tusk.pps.service", "distributed"}

PROBE = """
import json, sys
{body}
print("MODULES=" + json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
"""

CLI = """
from tusk.cli.main import main
sys.argv = ["tusk", *{argv!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def run_probe(code: str, env: dict[str, str], marker: str) -> Any:
    """Run ``code`` in a fresh interpreter; the JSON it printed after ``MARKER=``."""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith(marker + "="))
    return json.loads(line[len(marker) + 1 :])


def loaded(body: str, env: dict[str, str]) -> set[str]:
    """The modules (and their top-level packages' prefixes) a fresh interpreter loaded."""
    return set(run_probe(PROBE.format(body=body), env, "MODULES"))


def offenders(modules: set[str], banned: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, dict[str, str]]]:
    home = tmp_path_factory.mktemp("lean") / "home"
    with tusk.Client(home) as c:
        c.create_repo("images")
        c.put_file("images@master:/a/b.txt", b"hello\n")
    live = start_live(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(home.parent / "none.yaml")
    yield live, {**env, "TUSK_ADDRESS": live.url}
    stop_live(live)


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "repo"],
        ["inspect", "repo", "images"],
        ["list", "commit", "images@master"],
        ["list", "file", "images@master:/a"],
        ["get", "file", "images@master:/a/b.txt"],
        ["diff", "file", "images@master"],
        ["list", "image"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_a_read_command_against_a_server_loads_no_storage_pipelines_or_server(
    served: tuple[Live, dict[str, str]], argv: list[str]
) -> None:
    _, env = served
    modules = loaded(CLI.format(argv=argv), env)
    assert "httpx" in modules  # the command did talk to the server
    assert offenders(modules, STORAGE | SERVER | PIPELINES) == []
    # httpx's own command line (and the rich.progress, pygments under it) stays out; so do
    # rich's tables (plain tables are written directly) and, for file and repo commands, the
    # pipeline layer's result types.
    assert offenders(modules, {"httpx._main", "pygments", "rich.progress", "rich.table"}) == []
    if argv[1] != "image":
        assert offenders(modules, {"tusk.pps"}) == []


def test_the_sdk_against_a_server_loads_no_storage(served: tuple[Live, dict[str, str]]) -> None:
    live, env = served
    body = f"""
import tusk.sdk.remote
import tusk
with tusk.Client(address={live.url!r}) as c:
    assert c.get_file("images@master:/a/b.txt") == b"hello\\n"
    assert [r.name for r in c.list_repos()] == ["images"]
"""
    assert offenders(loaded(body, env), STORAGE | SERVER | PIPELINES) == []


def test_a_remote_worker_loads_no_storage_or_server(served: tuple[Live, dict[str, str]]) -> None:
    """``tusk worker --address`` (a Kubernetes worker pod without store credentials): the
    worker's whole path up to its first claim, which the server answers 404 (no pipeline)."""
    _, env = served
    body = """
from tusk.cli.main import main
sys.argv = ["tusk", "worker", "--pipeline", "nosuch", "--once", "--sandbox", "none"]
try:
    main()
except SystemExit as exc:
    assert exc.code == 3, exc.code  # not found: it did ask the server
"""
    modules = loaded(body, env)
    assert "httpx" in modules and "tusk.pps.remote_worker" in modules
    assert offenders(modules, STORAGE | SERVER | PIPELINES) == []


def test_help_loads_neither_storage_nor_http(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    modules = loaded(CLI.format(argv=["--help"]), env)
    assert offenders(modules, STORAGE | SERVER | PIPELINES | {"httpx", "httpcore"}) == []
    # The verbs and commands are listed from main.py's registry, no command module loaded.
    assert offenders(modules, {"tusk.cli.commands"}) == []


def test_an_embedded_read_loads_no_http_client_pipelines_or_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("images")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(tmp_path / "none.yaml")
    modules = loaded(CLI.format(argv=["--home", str(home), "list", "repo"]), env)
    assert "sqlalchemy" in modules  # it did open the store
    assert offenders(modules, SERVER | PIPELINES | {"httpx", "httpcore", "boto3"}) == []
    assert offenders(modules, {"tusk.cli.commands"}) == [
        "tusk.cli.commands",
        "tusk.cli.commands.repo",
    ]


# The `tusk` command keeps the cyclic collector off while it loads (tusk.gcpause): loading the
# CLI, SQLAlchemy and the store made it walk the new objects ~125 times in `tusk list repo`
# (50-70 ms, finding nothing). Collections are counted with gc.callbacks, from main()'s start.
GC_PROBE = """
import gc, json, sys
seen = []
gc.callbacks.append(lambda phase, info: phase == "stop" and seen.append(info["generation"]))
{body}
print("GC=" + json.dumps({{"collections": len(seen), "enabled": gc.isenabled(),
                          "frozen": gc.get_freeze_count()}}))
"""


def collections(body: str, tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(tmp_path / "none.yaml")
    result: dict[str, Any] = run_probe(GC_PROBE.format(body=body), env, "GC")
    return result


def test_a_command_loads_without_collections_then_collects_as_usual(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("images")
    argv = ["--home", str(home), "list", "repo"]
    gc = collections(CLI.replace("sys.argv =", "del seen[:]\nsys.argv =").format(argv=argv),
                     tmp_path)  # fmt: skip
    # None until the store is open (a query's own allocations may make one or two after).
    assert gc["collections"] <= 2
    # Opening the store ended the pause: what loaded is frozen, the collector is back on.
    assert gc["enabled"] is True and gc["frozen"] > 10_000


def test_the_entry_point_pauses_before_the_cli_loads(tmp_path: Path) -> None:
    """The `tusk` script (tusk.cli.entry) pauses before click and the CLI load, too: counted
    from the entry's call, loading click, the CLI, the SDK and the store makes no collection
    (at most the query's one or two)."""
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("images")
    # The entry leaves with os._exit after the exit handlers: the counts are printed by one.
    start = (
        "import atexit\n"
        "atexit.register(lambda: print('GC=' + json.dumps({{'collections': len(seen),"
        " 'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}}), flush=True))\n"
        'assert "click" not in sys.modules\ndel seen[:]\nsys.argv ='
    )
    body = CLI.replace("tusk.cli.main", "tusk.cli.entry").replace("sys.argv =", start)
    body = body.format(argv=["--home", str(home), "list", "repo"])
    gc = collections(body, tmp_path)
    assert gc["collections"] <= 2
    assert gc["enabled"] is True and gc["frozen"] > 10_000
    [script] = entry_points(group="console_scripts", name="tusk")
    assert script.value == "tusk.cli.entry:main"


def test_a_command_that_opens_nothing_leaves_the_collector_on(tmp_path: Path) -> None:
    assert collections(CLI.format(argv=["version"]), tmp_path)["enabled"] is True


def test_a_program_using_the_sdk_keeps_its_collector_as_it_was(tmp_path: Path) -> None:
    body = f"""
import tusk
with tusk.Client({str(tmp_path / "home")!r}) as c:
    c.create_repo("images")
"""
    gc = collections(body, tmp_path)
    assert gc["enabled"] is True
    assert gc["frozen"] == 0  # nothing frozen: only the `tusk` command pauses and freezes
    assert gc["collections"] > 20
