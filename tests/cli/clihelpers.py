"""Helpers for CLI tests: a CliRunner bound to a home, and assertions on error output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tusk.cli.main import cli

Write = Callable[[str, bytes | str], Path]
"""The ``write`` fixture: write a local file under tmp_path/src and return its path."""


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Tusk:
    """Runs ``tusk --home HOME ...`` in-process with click's CliRunner."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()
        self.target = ["--home", str(home)]  # or ["--address", URL] to test against a server

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        code: int | None = 0,
        env: dict[str, str] | None = None,
    ) -> Result:
        r = self.runner.invoke(
            cli, [*self.target, *args], input=input, env=env, catch_exceptions=False
        )
        result = Result(r.exit_code, r.stdout, r.stderr, r.stdout_bytes)
        if code is not None:
            assert result.exit_code == code, (
                f"tusk {' '.join(args)} exited {result.exit_code}, wanted {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, input: str | bytes | None = None) -> Any:
        return self(*args, "-o", "json", input=input).json()

    def fails(self, *args: str, code: int, input: str | bytes | None = None) -> str:
        """Run a command that must fail with ``code`` and exactly one ``error:`` line."""
        r = self(*args, input=input, code=code)
        assert_one_error(r.stderr)
        assert "Traceback" not in r.stderr
        return r.stderr.strip()[len("error: ") :]

    def state(self) -> dict[str, Any]:
        """Everything list commands show, to check that a failed command changed nothing."""
        repos = self.json("list", "repo", "--all-projects")
        out: dict[str, Any] = {"repos": repos, "projects": self.json("list", "project")}
        for repo in repos:
            name = repo["name"]
            out[f"{name}/commits"] = self.json("list", "commit", name)
            out[f"{name}/branches"] = self.json("list", "branch", name)
            heads = [b["name"] for b in out[f"{name}/branches"] if b["head"]]
            for branch in heads:
                finished = self.json("inspect", "commit", f"{name}@{branch}")["state"]
                if finished == "finished":
                    out[f"{name}@{branch}/files"] = self.json(
                        "glob", "file", f"{name}@{branch}:/**"
                    )
        return out


def assert_one_error(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"wanted one error line, got: {stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
