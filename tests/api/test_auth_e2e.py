"""Auth end to end: a real ``tusk up`` on PostgreSQL + S3, driven by the ``tusk`` CLI.

No mocks and no in-process server: metadata lives in a PostgreSQL database of the session's
server (tests/pgserver.py), objects in a bucket of the moto S3 endpoint (tests/s3server.py),
and every step is a ``tusk`` subprocess with its own identity (a config file written by
``tusk auth login``, or ``$TUSK_TOKEN``). Both services are the shared fixtures: missing,
they skip on a laptop and fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apihelpers import spawn

import s3server
from pgserver import PgServer

# The moto S3 endpoint's fixtures: one server per session, a fresh bucket per test.
s3_server = s3server.s3_server
s3_url = s3server.s3_url

TUSK = [sys.executable, "-m", "tusk.cli.main"]
# Copies each input file to the output, upper-cased (inputs at $TUSK_PFS/<input name>).
UPPER = 'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'


class Cli:
    """``tusk`` as a subprocess against one server, as one identity.

    ``token``: sent as ``$TUSK_TOKEN``; else the one ``tusk auth login`` stored in this
    identity's own config file (``$TUSK_CONFIG``).
    """

    def __init__(self, url: str, tmp: Path, who: str, token: str | None = None) -> None:
        self.url = url
        self.who = who
        self.config = tmp / f"config-{who.replace(':', '-')}.yaml"
        self.token = token

    def env(self) -> dict[str, str]:
        drop = ("TUSK_ADDRESS", "TUSK_TOKEN", "TUSK_CONFIG", "TUSK_DEBUG", "TUSK_METADATA_URL",
                "TUSK_STORAGE_URL")  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update({"TUSK_ADDRESS": self.url, "TUSK_CONFIG": str(self.config)})
        if self.token is not None:
            env["TUSK_TOKEN"] = self.token
        return env

    def start(self, *args: str, code: int = 0, input: str = "") -> Run:
        proc = subprocess.Popen(
            [*TUSK, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )
        return Run(self.who, args, code, proc, input)

    def __call__(self, *args: str, code: int = 0, input: str = "") -> Run:
        return self.start(*args, code=code, input=input).finish()

    def json(self, *args: str) -> Any:
        return self(*args, "-o", "json").json()


class Run:
    """One ``tusk`` process; ``finish`` waits for it and checks its exit code.

    A failure is one ``error:`` line on stderr.
    """

    def __init__(
        self, who: str, args: tuple[str, ...], code: int, proc: subprocess.Popen, input: str
    ) -> None:
        self.who, self.args, self.code, self.proc, self.input = who, args, code, proc, input
        self.stdout = self.stderr = ""

    def finish(self) -> Run:
        self.stdout, self.stderr = self.proc.communicate(self.input, timeout=60)
        assert self.proc.returncode == self.code, (
            f"[{self.who}] tusk {' '.join(self.args)} -> {self.proc.returncode} "
            f"(wanted {self.code})\n{self.stdout}\n{self.stderr}"
        )
        if self.code:
            lines = self.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


def together(*runs: Run) -> list[Run]:
    """Independent commands run at once (each is a process: this keeps the module quick)."""
    try:
        return [r.finish() for r in runs]
    finally:
        for r in runs:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.communicate()


@pytest.fixture
def server(home: Path, pg_server: PgServer, s3_url: str) -> Iterator[str]:
    """A ``tusk up`` process on a fresh PostgreSQL database and S3 bucket: its URL.

    ``s3_url`` put moto's dummy AWS credentials in the environment, which ``spawn`` passes on.
    The server's stderr is drained meanwhile (a full pipe would stall it).
    """
    env = {
        "TUSK_METADATA_URL": pg_server.new_database(),
        "TUSK_STORAGE_URL": s3_url,
        "TUSK_SANDBOX": "none",
    }
    proc, url = spawn(home, "up", "--port", "0", env=env)
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        drain.join(10)


def first_job(cli: Cli, pipeline: str) -> str:
    """The id of the pipeline's one job (the scheduler makes it soon after the pipeline)."""
    deadline = time.monotonic() + 20
    while not (jobs := cli.json("list", "job", "-p", pipeline)):
        assert time.monotonic() < deadline, f"no job of {pipeline}"
        time.sleep(0.2)
    (job,) = jobs
    return str(job["id"])


def spec_file(tmp: Path, name: str, cmd: str, **extra: Any) -> str:
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "images", "glob": "/*", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_auth_story_on_postgres_and_s3(server: str, tmp_path: Path) -> None:
    # Root turns auth on, lets alice create pipelines, makes tokens for alice, bob and CI.
    root_token = Cli(server, tmp_path, "anyone")("auth", "activate").stdout.strip()
    assert root_token.startswith("tusk_")
    root = Cli(server, tmp_path, "user:root", root_token)
    who = ("user:alice", "user:bob", "robot:ci")
    _, *made = together(
        root.start("auth", "set", "cluster", "pipelineCreator", "user:alice"),
        *(root.start("auth", "create-token", "--user", p, "-o", "json") for p in who),
    )
    tokens = dict(zip(who, (m.json() for m in made), strict=True))
    assert {p: t["info"]["principal"] for p, t in tokens.items()} == {p: p for p in who}
    alice = Cli(server, tmp_path, "user:alice")  # logs in: its token is in its config file
    assert "user:alice" in alice("auth", "login", input=tokens["user:alice"]["token"]).stdout
    bob = Cli(server, tmp_path, "user:bob", tokens["user:bob"]["token"])
    ci = Cli(server, tmp_path, "robot:ci", tokens["robot:ci"]["token"])

    # Alice: a repo, files, a pipeline (bob may not read her repo yet).
    alice("create", "repo", "images")
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.txt").write_text("beta\n")
    alice("put", "file", "images@master:/", "-f", str(tmp_path / "a.txt"), "-f",
          str(tmp_path / "b.txt"))  # fmt: skip
    together(
        alice.start("create", "pipeline", "-f", spec_file(tmp_path, "edges", UPPER)),
        bob.start("get", "file", "images@master:/a.txt", code=9),
    )
    # A second pipeline whose code tries to write to its input, as pipeline:sneaky.
    tusk = " ".join(shlex.quote(a) for a in TUSK)
    code = f"echo y | {tusk} put file images@master:/y -f -"
    sneaky_spec = spec_file(tmp_path, "sneaky", code, datum_tries=1)
    waited, _, _, sneaky = together(
        alice.start("wait", "commit", "edges@master", "--timeout", "30s", "-o", "json"),
        alice.start("auth", "set", "repo", "edges", "repoReader", "user:bob"),
        alice.start("auth", "set", "repo", "images", "repoReader", "user:bob"),
        alice.start("create", "pipeline", "-f", sneaky_spec, "-o", "json"),
    )
    assert waited.json()["repo"] == "edges"  # its job succeeded (else exit 1)

    # Bob reads what alice lets him read, and may not write; the jobs ran as their pipelines.
    assert [p["name"] for p in sneaky.json()] == ["sneaky"]
    sneaky_job = f"sneaky@{first_job(alice, 'sneaky')}"
    got, lineage, denied, failed, _, listed = together(
        bob.start("get", "file", "edges@master:/b.txt"),
        bob.start("lineage", "edges@master:/b.txt", "-o", "json"),
        bob.start("put", "file", "images@master:/x", "-f", "-", input="x", code=9),
        alice.start("wait", "job", sneaky_job, "--timeout", "30s", code=1),
        root.start("auth", "set", "repo", "images", "repoWriter", "robot:ci"),
        root.start("auth", "list-tokens", "-o", "json"),
    )
    assert got.stdout == "BETA\n"
    step = lineage.json()
    assert step["pipeline"] == "edges" and step["job"]
    assert [(i["repo"], i["path"]) for i in step["inputs"]] == [("images", "/b.txt")]
    assert "user:bob may not put_file on repo images" in denied.stderr
    assert "repoWriter" in denied.stderr
    assert "failed" in failed.stderr
    assert "pipeline:sneaky may not put_file on repo images" in failed.stderr
    assert "repoWriter" in failed.stderr
    edges_tokens = [t for t in listed.json() if t["principal"] == "pipeline:edges"]
    assert edges_tokens and {t["state"] for t in edges_tokens} == {"revoked"}  # with its job

    # The CI robot, a repoWriter now, puts a file; revoked, its very next command is refused.
    ci("put", "file", "images@master:/ci.txt", "-f", "-", input="from ci")
    ci_id = tokens["robot:ci"]["info"]["id"]
    revoke, refused = together(
        root.start("auth", "revoke", ci_id, "-o", "json"),
        bob.start("audit", code=9),  # the audit log is clusterAdmin's
    )
    assert revoke.json()["state"] == "revoked"
    assert "clusterAdmin" in refused.stderr
    gone = ci("put", "file", "images@master:/late.txt", "-f", "-", input="late", code=8)
    assert f"token {ci_id} was revoked" in gone.stderr

    # The audit log has each of these, bob's try to read it too.
    log = root("audit", "-o", "json")
    entries = log.json()
    seen = {(e["principal"], e["operation"], e["resource"], e["allowed"]) for e in entries}
    for entry in (
        ("user:root", "auth_activate", "", True),
        ("user:root", "auth_set_cluster_roles", "", True),
        ("user:alice", "create_repo", "images", True),
        ("user:alice", "put_tar", "images", True),  # several -f go up as one tar
        ("user:alice", "auth_set_repo_roles", "edges", True),
        ("user:bob", "get_file", "images", False),
        ("user:bob", "put_file", "images", False),
        ("pipeline:sneaky", "put_file", "images", False),
        ("user:root", "auth_set_repo_roles", "images", True),
        ("robot:ci", "put_file", "images", True),
        ("user:root", "auth_revoke_token", ci_id, True),
        ("anonymous", "put_file", "images", False),  # the revoked token's try
        ("user:bob", "audit", "", False),
    ):
        assert entry in seen, (entry, sorted(seen))
    (bob_put,) = [
        e for e in entries if e["principal"] == "user:bob" and e["operation"] == "put_file"
    ]
    assert "repoWriter" in bob_put["detail"]
    (revoked,) = [e for e in entries if e["operation"] == "auth_revoke_token"]
    assert revoked["resource_type"] == "token" and revoked["detail"] == "of robot:ci"
    assert [e for e in entries if e["principal"] == "pipeline:edges"] == []  # no denial
