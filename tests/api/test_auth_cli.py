"""``tusk auth ...`` and ``tusk audit`` against a live server, driven in-process (CliRunner)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from apihelpers import Live
from click.testing import CliRunner, Result

from tusk import Client
from tusk.cli.main import cli
from tusk.errors import InvalidArgument


class Tusk:
    """Runs ``tusk`` with a config file of its own and no token or address from outside."""

    def __init__(self, live: Live, config: Path) -> None:
        self.address = ("--address", live.url)
        self.config = config
        self.runner = CliRunner()

    def __call__(
        self,
        *args: str,
        code: int = 0,
        token: str | None = None,
        input: str | None = None,
        remote: bool = True,
    ) -> Result:
        env = {"TUSK_CONFIG": str(self.config), "TUSK_TOKEN": token, "TUSK_ADDRESS": None}
        argv = [*self.address, *args] if remote else list(args)
        r = self.runner.invoke(cli, argv, input=input, env=env, catch_exceptions=False)
        assert r.exit_code == code, (
            f"tusk {' '.join(args)} -> {r.exit_code}\n{r.stdout}\n{r.stderr}"
        )
        if code:
            assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        return r


@pytest.fixture
def tusk(live: Live, tmp_path: Path) -> Tusk:
    return Tusk(live, tmp_path / "config.yaml")


def _activate(tusk: Tusk) -> str:
    r = tusk("auth", "activate")
    token = r.stdout.strip()
    assert token.startswith("tusk_") and "\n" not in token
    assert "not shown again" in r.stderr
    return token


def test_activate_login_logout_and_no_token(tusk: Tusk, live: Live, tmp_path: Path) -> None:
    # Before auth is on, everything is allowed and whoami says so.
    assert "not active" in tusk("auth", "whoami").stdout
    root = _activate(tusk)
    tusk("auth", "activate", code=4)
    # Without a token, every command is one line and exit 8.
    for args in (
        ("auth", "whoami"),
        ("auth", "list-tokens"),
        ("auth", "create-token", "--user", "user:alice"),
        ("auth", "revoke", "0123456789abcdef"),
        ("auth", "set", "repo", "data", "repoReader", "user:bob"),
        ("auth", "get", "repo", "data"),
        ("auth", "check", "repo", "data"),
        ("auth", "set", "cluster", "clusterAdmin", "user:bob"),
        ("auth", "get", "cluster"),
        ("auth", "deactivate"),
        ("audit",),
        ("list", "repo"),
    ):
        assert "needs a token" in tusk(*args, code=8).stderr
    # A bad token: exit 8, nothing stored.
    bad = root[:-4] + ("AAAA" if not root.endswith("AAAA") else "BBBB")
    tusk("auth", "login", input=bad + "\n", code=8)
    assert not tusk.config.exists()
    # Login reads stdin's first line, checks it, stores it 0600 at the top level.
    r = tusk("auth", "login", input=root + "\nignored\n")
    assert "user:root" in r.stdout
    assert stat.S_IMODE(tusk.config.stat().st_mode) == 0o600
    assert yaml.safe_load(tusk.config.read_text())["token"] == root
    r = tusk("auth", "whoami")
    assert "user:root" in r.stdout and "clusterAdmin" in r.stdout
    me = json.loads(tusk("auth", "whoami", "-o", "json").stdout)
    assert me["principal"] == "user:root" and me["cluster_roles"] == ["clusterAdmin"]
    # Logout removes it; the next command has no token again.
    assert "logged out" in tusk("auth", "logout").stdout
    assert "token" not in (yaml.safe_load(tusk.config.read_text()) or {})
    tusk("auth", "whoami", code=8)
    # Login from $TUSK_TOKEN into the active context (the context gives the address).
    tusk("context", "set", "prod", "--address", live.url, remote=False)
    tusk("context", "use", "prod", remote=False)
    tusk("auth", "login", token=root, remote=False)
    data = yaml.safe_load(tusk.config.read_text())
    assert data["contexts"]["prod"]["token"] == root and "token" not in data
    assert stat.S_IMODE(tusk.config.stat().st_mode) == 0o600
    assert "user:root" in tusk("auth", "whoami", remote=False).stdout
    # The SDK: the token passes through tusk.Client; in-process there is no auth.
    with Client(address=live.url, token=root) as c:
        assert c.whoami()["principal"] == "user:root"
    with Client(tmp_path / "embedded") as c, pytest.raises(InvalidArgument, match="server"):
        c.whoami()
    r = tusk("--home", str(tmp_path / "embedded"), "auth", "whoami", code=2, remote=False)
    assert "talks to a server" in r.stderr
    # Deactivate (root): then no token is needed.
    tusk("auth", "deactivate", token=root)
    assert "not active" in tusk("auth", "whoami").stdout


def test_tokens_roles_and_audit(tusk: Tusk, tmp_path: Path) -> None:
    root = _activate(tusk)
    alice = tusk("auth", "create-token", "--user", "user:alice", "-d", "alice", token=root)
    alice_token = alice.stdout.strip()
    assert alice_token.startswith("tusk_") and "user:alice" in alice.stderr
    out = json.loads(
        tusk("auth", "create-token", "--user", "user:bob", "--ttl", "30d", "-o", "json",
             token=root).stdout
    )  # fmt: skip
    bob, bob_id = out["token"], out["info"]["id"]
    assert out["info"]["principal"] == "user:bob" and out["info"]["expires_at"] is not None
    # Alice creates a repo and owns it; bob may not write to it.
    tusk("create", "repo", "data", token=alice_token)
    local = tmp_path / "x.csv"
    local.write_bytes(b"a,b\n")
    put = ("put", "file", "data@master:/x.csv", "-f", str(local))
    r = tusk(*put, token=bob, code=9)
    assert "repoWriter" in r.stderr and "user:bob" in r.stderr
    access = json.loads(tusk("auth", "check", "repo", "data", "-o", "json", token=bob).stdout)
    assert access["roles"] == [] and access["permissions"] == []
    # The audit log shows the denial (clusterAdmin only).
    entries = json.loads(tusk("audit", "--user", "user:bob", "-o", "json", token=root).stdout)
    denied = [e for e in entries if e["operation"] == "put_file"]
    assert denied and denied[0]["allowed"] is False and denied[0]["resource"] == "data"
    table = tusk("audit", "--repo", "data", "--since", "1h", token=root).stdout
    assert "TIME" in table and "ALLOWED" in table and "put_file" in table
    assert "clusterAdmin" in tusk("audit", token=bob, code=9).stderr
    # Alice (repoOwner) makes bob a writer; then his put works.
    tusk("auth", "set", "repo", "data", "repoWriter", "user:bob", token=alice_token)
    tusk(*put, token=bob)
    r = tusk("auth", "check", "repo", "data", token=bob)
    assert "repoWriter" in r.stdout and "repo.write" in r.stdout
    roles = json.loads(tusk("auth", "get", "repo", "data", "-o", "json", token=root).stdout)
    assert roles == {"user:alice": ["repoOwner"], "user:bob": ["repoWriter"]}
    # Bad input changes nothing.
    r = tusk("auth", "set", "repo", "data", "repoWriter,repoBoss", "user:bob", token=root, code=2)
    assert "repoBoss" in r.stderr
    after = json.loads(tusk("auth", "get", "repo", "data", "-o", "json", token=root).stdout)
    assert after == roles
    tusk("auth", "set", "repo", "nope", "repoReader", "user:bob", token=root, code=3)
    r = tusk("auth", "set", "repo", "data", "repoReader", "bob", token=root, code=2)
    assert "user:NAME" in r.stderr
    tusk("auth", "create-token", "--user", "bob", token=root, code=2)
    tusk("auth", "revoke", "0123456789abcdef", token=root, code=3)
    tusk("auth", "revoke", "nope", token=root, code=3)
    # Cluster roles.
    tusk("auth", "set", "cluster", "pipelineCreator", "robot:ci", token=root)
    cluster = json.loads(tusk("auth", "get", "cluster", "-o", "json", token=root).stdout)
    assert cluster == {"user:root": ["clusterAdmin"], "robot:ci": ["pipelineCreator"]}
    tusk("auth", "get", "cluster", token=bob, code=9)
    # Token listings never show a secret; bob sees only his own.
    listing = tusk("auth", "list-tokens", token=root).stdout
    assert "ID" in listing and bob_id in listing and "user:alice" in listing
    as_json = tusk("auth", "list-tokens", "-o", "json", token=root).stdout
    for secret in (root, alice_token, bob):
        tail = secret[len("tusk_") + 17 :]  # the secret after "tusk_<16 hex>_" (it may hold "_")
        assert len(tail) == 43
        assert tail not in listing and tail not in as_json
    mine = json.loads(tusk("auth", "list-tokens", "-o", "json", token=bob).stdout)
    assert [t["principal"] for t in mine] == ["user:bob"]
    # Revoked: refused on its very next command.
    assert "revoked" in tusk("auth", "revoke", bob_id, token=root).stdout
    assert "revoked" in tusk("auth", "whoami", token=bob, code=8).stderr
    tusk(*put, token=bob, code=8)
