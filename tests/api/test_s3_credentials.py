"""S3 credentials: ``tusk auth create-token --s3`` makes a token that is also an S3 key pair,
and ``AuthService.s3_token`` gives the gateway the token of an active S3 key id only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from apihelpers import Live
from test_auth_cli import Tusk, _activate

from tusk.auth.service import ROOT, AuthService, Caller
from tusk.errors import InvalidArgument
from tusk.storage.meta import schema

ENGINES = ("sqlite", "postgresql")
ADMIN = Caller(ROOT, cluster_roles=frozenset({"clusterAdmin"}))


@pytest.fixture
def tusk(live: Live, tmp_path: Path) -> Tusk:
    return Tusk(live, tmp_path / "config.yaml")


def test_s3_tokens(tusk: Tusk, live: Live) -> None:
    root = _activate(tusk)
    r = tusk("auth", "create-token", "--s3", "--user", "user:alice", "-d", "s3", token=root)
    token, key_line, secret_line = r.stdout.splitlines()
    assert "S3 keys" in r.stderr and "not shown again" in r.stderr
    _, key_id, secret = token.split("_", 2)
    assert key_line == f"aws_access_key_id = {key_id}"
    assert secret_line == f"aws_secret_access_key = {secret}"
    out = json.loads(tusk("auth", "create-token", "--s3", "-o", "json", token=token).stdout)
    assert out["s3"]["access_key_id"] == out["info"]["id"] and "s3" not in out["info"]
    assert out["token"] == f"tusk_{out['info']['id']}_{out['s3']['secret_access_key']}"
    plain = tusk("auth", "create-token", token=root).stdout.strip()  # not for S3

    # The gateway's view (a service of its own: the key comes from the home, as the API's).
    home = live.services.home
    auth = AuthService(live.services.pfs.meta, key_dir=home)
    assert auth.s3_token(key_id) == token
    assert auth.s3_token(out["info"]["id"]) == out["token"]
    assert auth.s3_token(plain.split("_")[1]) is None
    for bad in ("0123456789abcdef", "", "ZZZZ", key_id.upper(), token):
        assert auth.s3_token(bad) is None
    assert stat.S_IMODE((home / "secrets.key").stat().st_mode) == 0o600

    # The store keeps the secret sealed, never in clear.
    meta = live.services.pfs.meta
    with meta.read() as tx:
        sealed = tx.get_token(key_id).sealed  # type: ignore[union-attr]
        assert tx.get_token(plain.split("_")[1]).sealed is None  # type: ignore[union-attr]
    assert sealed is not None and sealed.startswith(b"TS1")
    assert secret.encode() not in sealed and key_id.encode() not in sealed

    # Revoked or expired: no longer a key.
    tusk("auth", "revoke", key_id, token=root)
    assert auth.s3_token(key_id) is None
    other = out["info"]["id"]
    with meta.write() as tx:
        c = schema.auth_tokens.c
        tx.conn.execute(sa.update(schema.auth_tokens).where(c.id == other).values(expires_at=1.0))
    assert auth.s3_token(other) is None


def test_s3_keys_need_a_key_for_sealing(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a home or $TUSK_SECRET_KEY, no S3 token is made (and nothing is stored)."""
    monkeypatch.delenv("TUSK_SECRET_KEY", raising=False)
    auth = AuthService(live.services.pfs.meta)
    auth.activate()
    with pytest.raises(InvalidArgument, match="TUSK_SECRET_KEY"):
        auth.create_token(ADMIN, s3=True)
    assert len(auth.list_tokens(ADMIN)) == 1  # the root token only
