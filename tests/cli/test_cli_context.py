"""``tusk context``: named servers in the config file; the active one decides where commands go."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tusk.cli.main import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TUSK_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("TUSK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUSK_ADDRESS", raising=False)

    def _run(*args: str, code: int = 0) -> str:
        r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert r.exit_code == code, (r.stdout, r.stderr)
        return r.stdout if code == 0 else r.stderr

    return _run


def test_contexts_choose_where_commands_go(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("create", "repo", "here")  # no context: the home, in-process
    run("context", "set", "away", "--address", "http://127.0.0.1:1")
    run("context", "set", "local")
    run("context", "use", "away")
    assert "* away" in run("context", "list")
    # The active context's server is down: one clear line, the storage exit code.
    message = run("list", "repo", code=7)
    assert message.count("\n") == 1 and "127.0.0.1:1" in message
    # An explicit home still means in-process, whatever the context.
    assert "here" in run("--home", str(tmp_path / "home"), "list", "repo")
    run("context", "use", "local")
    assert "here" in run("list", "repo")
    assert "no context 'nope'" in run("context", "use", "nope", code=2)
    run("context", "delete", "away")
    assert "away" not in run("context", "list")


def test_a_context_may_name_a_project(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("create", "project", "research")
    run("context", "set", "lab", "--project", "research")
    run("context", "use", "lab")
    run("create", "repo", "images")  # a bare name: the context's project
    assert "research/images" in run("list", "repo", "--all-projects")
    assert "invalid project name" in run("context", "set", "x", "--project", "a b", code=2)
    assert "x" not in run("context", "list").split()
