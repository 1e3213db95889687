"""The S3 gateway with auth on: SigV4 against Tusk tokens, through the one permission gate.

A real ``tusk up`` for the module; auth is activated through the REST API, S3 key pairs are
made with ``create_token(s3=True)`` (what ``tusk auth create-token --s3`` prints), and boto3
signs every request as users' code does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import tusk
from gateway import Gateway, s3_client, start_gateway
from tusk.auth.permissions import RULES
from tusk.s3.app import Gateway as S3Handlers


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("s3auth") / "home"
    g = start_gateway(home)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def root(gw: Gateway) -> Iterator[tusk.Client]:
    with tusk.Client(address=gw.api) as anon:
        token = anon.auth_activate()
    c = tusk.Client(address=gw.api, token=token)
    yield c
    c.close()


def keys(root: tusk.Client, principal: str | None = None, ttl: float | None = None) -> Any:
    info, _token = root.create_token(principal, ttl=ttl, s3=True)
    return info["id"], info["s3"]["access_key_id"], info["s3"]["secret_access_key"]


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_every_s3_operation_has_a_rule() -> None:
    """A handler without a rule would be refused by the gate: this names it first."""
    handlers = {n for n in dir(S3Handlers) if n[:1].isupper() and callable(getattr(S3Handlers, n))}
    rules = {name.split(".", 1)[1] for name in RULES if name.startswith("s3.")}
    assert handlers == rules


def test_signed_requests_with_s3_keys_pass_the_gate(gw: Gateway, root: tusk.Client) -> None:
    _id, key, secret = keys(root)
    s3 = s3_client(gw, key, secret)
    s3.create_bucket(Bucket="master.secure")
    s3.put_object(Bucket="master.secure", Key="a.txt", Body=b"secret data")
    assert s3.get_object(Bucket="master.secure", Key="a.txt")["Body"].read() == b"secret data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="master.secure")["Contents"]] == ["a.txt"]
    assert root.get_file("secure@master:/a.txt") == b"secret data"
    # The audit log names the identity and the S3 operation.
    entries = root.audit(repo="secure")
    assert any(e["edge"] == "s3" and e["operation"] == "PutObject" for e in entries)
    assert all(e["principal"] == "user:root" for e in entries if e["edge"] == "s3")


def test_anonymous_wrong_and_unknown_keys_are_refused(gw: Gateway, root: tusk.Client) -> None:
    _id, key, secret = keys(root)
    s3_client(gw, key, secret).create_bucket(Bucket="master.locked")
    r = httpx.get(f"{gw.s3}/master.locked")
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    r = httpx.put(f"{gw.s3}/master.locked/x", content=b"x")
    assert r.status_code == 403
    with pytest.raises(ClientError) as exc:
        s3_client(gw, key, secret + "x").list_objects_v2(Bucket="master.locked")
    assert code_of(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        s3_client(gw, "0123456789abcdef", secret).list_objects_v2(Bucket="master.locked")
    assert code_of(exc) == "InvalidAccessKeyId"
    # A token made without --s3 has no S3 secret.
    info, token = root.create_token()
    with pytest.raises(ClientError) as exc:
        s3_client(gw, info["id"], token.split("_", 2)[2]).list_buckets()
    assert code_of(exc) == "InvalidAccessKeyId"
    assert root.list_commits("locked@master") == []


def test_roles_decide_what_a_user_may_do(gw: Gateway, root: tusk.Client) -> None:
    _id, key, secret = keys(root)
    admin = s3_client(gw, key, secret)
    admin.create_bucket(Bucket="master.shared")
    admin.put_object(Bucket="master.shared", Key="f", Body=b"f")
    admin.create_bucket(Bucket="master.private")
    _uid, ukey, usecret = keys(root, "user:alice")
    alice = s3_client(gw, ukey, usecret)
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == []
    with pytest.raises(ClientError) as exc:
        alice.get_object(Bucket="master.shared", Key="f")
    assert code_of(exc) == "AccessDenied"
    root.set_repo_roles("shared", "user:alice", ["repoReader"])
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["master.shared"]
    assert alice.get_object(Bucket="master.shared", Key="f")["Body"].read() == b"f"
    with pytest.raises(ClientError) as exc:
        alice.put_object(Bucket="master.shared", Key="g", Body=b"g")
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        alice.copy_object(
            Bucket="master.private", Key="c", CopySource={"Bucket": "master.shared", "Key": "f"}
        )
    assert code_of(exc) == "AccessDenied"
    root.set_repo_roles("shared", "user:alice", ["repoWriter"])
    alice.put_object(Bucket="master.shared", Key="g", Body=b"g")
    # Copying out of a readable repo into one without write: refused; into her own: fine.
    alice.create_bucket(Bucket="master.alices")
    alice.copy_object(
        Bucket="master.alices", Key="c", CopySource={"Bucket": "master.shared", "Key": "f"}
    )
    assert root.get_file("alices@master:/c") == b"f"


def test_presigned_urls_expire_and_revoked_tokens_stop(gw: Gateway, root: tusk.Client) -> None:
    token_id, key, secret = keys(root)
    # boto3 presigns with Signature Version 2 unless told s3v4: V2 is refused, and says so.
    v2 = boto3.client(
        "s3", endpoint_url=gw.s3, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    r = httpx.get(v2.generate_presigned_url("get_object", Params={"Bucket": "x.y", "Key": "p"}))
    assert r.status_code == 400 and b"Version 4" in r.content
    s3 = s3_client(gw, key, secret)
    s3.create_bucket(Bucket="master.pre")
    s3.put_object(Bucket="master.pre", Key="p", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "master.pre", "Key": "p"})
    assert httpx.get(url).content == b"presigned"
    put = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "master.pre", "Key": "q"}, ExpiresIn=60
    )
    assert httpx.put(put, content=b"q").status_code == 200
    assert root.get_file("pre@master:/q") == b"q"
    short = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "master.pre", "Key": "p"}, ExpiresIn=1
    )
    time.sleep(2.1)
    r = httpx.get(short)
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    assert b"expired" in r.content
    tampered = url.replace("Key=p", "Key=q") if "Key=p" in url else url.replace("/p?", "/q?")
    assert httpx.get(tampered).status_code == 403
    root.revoke_token(token_id)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="master.pre")
    assert code_of(exc) in ("InvalidAccessKeyId", "AccessDenied")
