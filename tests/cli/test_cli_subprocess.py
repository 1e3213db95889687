"""The installed ``tusk`` script, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tusk as tusk_package

BIN = Path(sys.executable).parent / "tusk"
SRC = Path(tusk_package.__file__).parent

pytestmark = pytest.mark.skipif(not BIN.exists(), reason="the tusk script is not installed")


def run(home: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("TUSK_DEBUG", "TUSK_HOME")}
    return subprocess.run(
        [str(BIN), "--home", str(home), *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=120,
    )


def test_round_trip_through_pipes(home: Path) -> None:
    assert run(home, "create", "repo", "r").returncode == 0
    data = os.urandom(300_000)
    put = run(home, "put", "file", "r@master:/blob", "-f", "-", input=data)
    assert put.returncode == 0, put.stderr
    assert put.stderr == b""  # no progress bar when stderr is not a terminal
    got = run(home, "get", "file", "r@master:/blob")
    assert got.returncode == 0 and got.stdout == data
    listed = json.loads(run(home, "-o", "json", "list", "file", "r@master").stdout)
    assert listed[0]["path"] == "/blob" and listed[0]["size"] == len(data)


def test_errors_are_one_line_with_exit_codes(home: Path) -> None:
    run(home, "create", "repo", "r")
    cases = [
        (("create", "repo", "bad name"), 2),
        (("inspect", "repo", "nope"), 3),
        (("create", "repo", "r"), 4),
        (("get", "file", "r@master:/../etc/passwd"), 2),
        (("put", "file", "r@master:/x", "-f", "/no/such/file"), 6),
    ]
    for args, code in cases:
        p = run(home, *args)
        assert p.returncode == code, (args, p.stderr)
        lines = p.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, p.stderr)


def test_help_does_not_load_the_sdk() -> None:
    """The CLI modules import only click; the SDK and rich load inside commands.

    ``tusk/__init__.py`` is replaced by an empty package here, so this checks the CLI's own
    imports whatever the package's ``__init__`` does.
    """
    code = f"""
import sys, types
pkg = types.ModuleType("tusk")
pkg.__path__ = [{str(SRC)!r}]
sys.modules["tusk"] = pkg
from tusk.cli.main import main
for argv in (["--help"], ["put", "file", "--help"], ["list", "--help"]):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
heavy = ("sqlalchemy", "alembic", "rich", "httpx", "tusk.sdk", "tusk.pfs", "tusk.storage")
print(sorted(m for m in heavy if m in sys.modules))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_tusk_help_is_fast() -> None:
    probe = "import sys, tusk; print('sqlalchemy' in sys.modules)"
    eager = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert eager.stdout.strip() == "False", "import tusk must not load the storage stack"
    code = (
        "import sys\n"
        "from tusk.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('sqlalchemy' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_the_command_exits_with_its_output_written_and_its_code(tmp_path: Path) -> None:
    """The entry point leaves with os._exit once a command is done (tusk.cli.entry): what it
    printed and the files it wrote are all there, and its exit code is the command's."""
    tusk = [sys.executable, "-m", "tusk.cli.main", "--home", str(tmp_path / "home")]
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3 << 20))

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*tusk, *args], capture_output=True, timeout=120)

    assert run("create", "repo", "r").returncode == 0
    assert run("put", "file", "r@master:/data.bin", "-f", str(data)).returncode == 0
    out = tmp_path / "out.bin"
    got = run("get", "file", "r@master:/data.bin", "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == data.read_bytes()
    streamed = run("get", "file", "r@master:/data.bin")  # 3 MiB through a pipe, all of it
    assert streamed.returncode == 0 and streamed.stdout == data.read_bytes()
    listed = run("list", "file", "r@master:/", "-o", "json")
    assert [f["path"] for f in json.loads(listed.stdout)] == ["/data.bin"]
    missing = run("inspect", "repo", "nope")
    assert missing.returncode not in (0, 1) and b"repo nope not found" in missing.stderr
    assert missing.stdout == b""
