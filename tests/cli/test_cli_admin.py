"""fsck, gc, init, version, --home / TUSK_HOME, and how failures are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelpers import Tusk, Write, assert_one_error

from tusk.sdk.client import Client


def test_init_creates_home(tusk: Tusk, home: Path) -> None:
    assert not home.exists()
    out = tusk("init").stdout.strip()
    assert Path(out) == home.resolve() or Path(out) == home
    assert home.is_dir()
    assert tusk.json("init") == {"home": out}


def test_home_from_env(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tusk.cli.main import cli

    env_home = tmp_path / "from-env"
    runner = CliRunner()
    r = runner.invoke(cli, ["init"], env={"TUSK_HOME": str(env_home)})
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.strip()) == env_home.resolve()
    r = runner.invoke(cli, ["create", "repo", "r"], env={"TUSK_HOME": str(env_home)})
    assert r.exit_code == 0
    # --home wins over the environment.
    other = tmp_path / "other"
    r = runner.invoke(
        cli, ["--home", str(other), "-o", "json", "list", "repo"], env={"TUSK_HOME": str(env_home)}
    )
    assert r.exit_code == 0 and r.stdout.strip() == "[]"


def test_version(tusk: Tusk) -> None:
    import tusk as pkg

    assert tusk.json("version") == {"tusk": pkg.__version__}
    assert pkg.__version__ in tusk("version").stdout


def test_fsck_ok(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "x" * 1000)))
    r = tusk("fsck")
    assert r.stdout.startswith("ok")
    report = tusk.json("fsck")
    assert report["ok"] is True and report["problems"] == []


def _packs(home: Path) -> list[Path]:
    return [p for p in (home / "objects").rglob("*") if p.is_file()]


def test_fsck_damaged(tusk: Tusk, home: Path, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", bytes(range(256)) * 64)))
    packs = _packs(home)
    assert packs, "no pack objects found to damage"
    for pack in packs:
        data = bytearray(pack.read_bytes())
        data[10] ^= 0xFF
        pack.write_bytes(bytes(data))
    r = tusk("fsck", code=1)
    assert any(line.startswith("problem: ") for line in r.lines)
    assert_one_error(r.stderr)
    report = tusk("fsck", "-o", "json", code=1).json()
    assert report["ok"] is False and report["problems"]


def test_fsck_notes_go_to_stderr(tusk: Tusk, home: Path, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "data")))
    pack = _packs(home)[0]
    stray = pack.parent / ("f" * len(pack.name))
    stray.write_bytes(b"left over")
    r = tusk("fsck")
    assert r.stdout.startswith("ok")
    assert r.stderr.startswith("note: ")


def test_gc(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", bytes(range(256)) * 1000)))
    tusk("delete", "repo", "r")
    dry = tusk.json("gc", "--grace", "0", "--dry-run")
    assert dry["dry_run"] is True and dry["chunks_deleted"] >= 1
    assert "Would free" in tusk("gc", "--grace", "0", "--dry-run").stdout
    kept = tusk.json("gc")  # within the default 1h grace nothing goes
    assert kept["chunks_deleted"] == 0
    done = tusk.json("gc", "--grace", "0")
    assert done["dry_run"] is False and done["chunks_deleted"] == dry["chunks_deleted"]
    assert done["bytes_freed"] > 0
    assert tusk.json("gc", "--grace", "0")["chunks_deleted"] == 0
    assert "Freed" in tusk("gc", "--grace", "30m").stdout
    assert tusk("fsck").stdout.startswith("ok")


@pytest.mark.parametrize("bad", ["soon", "1x", "-1h", "h"])
def test_gc_bad_grace(tusk: Tusk, bad: str) -> None:
    r = tusk("gc", "--grace", bad, code=2)
    assert "duration" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_keep_click_exit_code(tusk: Tusk) -> None:
    r = tusk("create", "repo", code=2)
    assert "Missing argument" in r.stderr
    assert tusk("frobnicate", code=2).stderr
    assert tusk("list", "repo", "-o", "yaml", code=2).stderr
    assert tusk("list", "nouns", code=2).stderr


def test_internal_error_is_one_line(tusk: Tusk, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Client) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Client, "list_repos", boom)
    r = tusk("list", "repo", code=1)
    assert r.stderr == "error: internal error: RuntimeError('boom')\n"
    r = tusk("list", "repo", code=1, env={"TUSK_DEBUG": "1"})
    assert "Traceback" in r.stderr
    assert r.stderr.rstrip().endswith("error: internal error: RuntimeError('boom')")


def test_debug_shows_traceback_for_tusk_errors(tusk: Tusk) -> None:
    r = tusk("inspect", "repo", "nope", code=3, env={"TUSK_DEBUG": "1"})
    assert "Traceback" in r.stderr and "error: repo nope not found" in r.stderr
    r = tusk("inspect", "repo", "nope", code=3, env={"TUSK_DEBUG": "0"})
    assert_one_error(r.stderr)


def test_help(tusk: Tusk) -> None:
    out = tusk("--help").stdout
    for verb in ("create", "list", "put", "get", "fsck", "gc", "version"):
        assert verb in out
    assert "REPO@BRANCH" in tusk("put", "file", "--help").stdout
    assert "-h" in tusk("list", "-h").stdout
