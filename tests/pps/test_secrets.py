"""Secrets (``tusk create secret``, ``transform.secrets``) in-process: the SDK and the CLI.

A secret is stored encrypted under a key outside the metadata store; a pipeline that names
it gets its values as environment variables or files, and the values appear nowhere Tusk
keeps or shows anything: logs, datum and job records, lineage, ``inspect pipeline``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from clihelpers import Tusk

import tusk
from tusk.errors import (
    AlreadyExists,
    CommitNotFound,
    InvalidArgument,
    SecretNotFound,
    SourceError,
)
from tusk.pps.executor import bwrap_works

ENGINES = ("sqlite", "postgresql")

PASSWORD = "correct-horse-battery-staple-7f3a9c"
USER = "svc-ingest-4711"


def manifest(name: str = "creds", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
        "stringData": {"user": USER},
        **extra,
    }


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> tusk.Client:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    monkeypatch.delenv("TUSK_SECRET_KEY", raising=False)
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    c.put_files("in@master", [("/a.txt", b"alpha\n")])
    yield c
    c.close()


# Storing


def test_create_list_inspect_delete(client: tusk.Client, tmp_path: Path) -> None:
    info = client.create_secret(manifest())
    assert info.name == "creds" and info.keys == ["password", "user"]
    assert [s.name for s in client.list_secrets()] == ["creds"]
    assert client.inspect_secret("creds").keys == ["password", "user"]
    shown = json.dumps([info.to_dict(), *[s.to_dict() for s in client.list_secrets()]])
    assert PASSWORD not in shown and USER not in shown
    assert base64.b64encode(PASSWORD.encode()).decode() not in shown

    # The key is outside the metadata store, private to its owner.
    key = client.home / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The stored row holds no value in clear.
    pps = client._pps
    with pps.meta.read() as tx:
        record = tx.get_secret("creds")
    assert record is not None and record.keys == ["password", "user"]
    assert PASSWORD.encode() not in record.ciphertext and USER.encode() not in record.ciphertext
    assert pps.secrets.values_for("creds") == {
        "password": PASSWORD.encode(),
        "user": USER.encode(),
    }

    # As Pachyderm (Kubernetes create): an existing name is refused, nothing changes.
    with pytest.raises(AlreadyExists, match="secret creds already exists"):
        client.create_secret(manifest(stringData={"user": "other"}))
    assert pps.secrets.values_for("creds")["user"] == USER.encode()

    client.delete_secret("creds")
    assert client.list_secrets() == []
    with pytest.raises(SecretNotFound, match="secret creds not found"):
        client.delete_secret("creds")
    with pytest.raises(SecretNotFound):
        client.inspect_secret("creds")


def test_manifest_text_yaml_file_and_stringdata_wins(client: tusk.Client, tmp_path: Path) -> None:
    text = json.dumps(manifest("from-json"))
    assert client.create_secret(text).name == "from-json"
    path = tmp_path / "s.yaml"
    doc = manifest("from-yaml")
    doc["data"]["user"] = base64.b64encode(b"overridden").decode()
    path.write_text(yaml.safe_dump(doc))
    assert client.create_secret(path).keys == ["password", "user"]
    assert client._pps.secrets.values_for("from-yaml")["user"] == USER.encode()


def test_create_from_a_path_string_conflicts_as_any(client: tusk.Client, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(manifest("p")))
    client.create_secret(str(path))
    with pytest.raises(AlreadyExists):
        client.create_secret(str(path))
    with pytest.raises(SourceError, match="no such secret manifest file"):
        client.create_secret(str(tmp_path / "nope.json"))


BAD = [
    (
        {**manifest(), "data": {"password": "not*base64!"}},
        "data.password is not valid base64",
    ),
    ({**manifest(), "metadata": {}}, "no metadata.name"),
    ({k: v for k, v in manifest().items() if k != "metadata"}, "no metadata.name"),
    ({**manifest(), "kind": "Pod"}, "not a Kubernetes Secret manifest (kind: 'Pod')"),
    ("- just\n- a list\n", "not a Kubernetes Secret manifest"),
    ("kind: Secret\nmetadata: {name: x\n", "not valid JSON or YAML"),
    ({**manifest(), "metadata": {"name": "Bad Name!"}}, "invalid secret name"),
    ({**manifest(), "stringData": {"../x": "v"}}, "invalid key '../x'"),
    ({**manifest(), "data": ["x"]}, "data and stringData must be mappings"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_manifests(client: tusk.Client, bad: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        client.create_secret(bad)
    assert message in err.value.message
    assert "\n" not in err.value.message
    assert client.list_secrets() == []


def test_a_wrong_key_refuses_to_decrypt(
    client: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.create_secret(manifest())
    from tusk.errors import StorageError
    from tusk.pps.secrets import SecretService

    monkeypatch.setenv("TUSK_SECRET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    other = SecretService(client._pps.meta, client.home)
    with pytest.raises(StorageError, match="cannot be decrypted with the key in"):
        other.values_for("creds")
    monkeypatch.setenv("TUSK_SECRET_KEY", "short")
    with pytest.raises(InvalidArgument, match="TUSK_SECRET_KEY is not a secret key"):
        SecretService(client._pps.meta, client.home).values_for("creds")


# Use in jobs

# Proves the datum got the values (hashes into /pfs/out), prints them on both streams (which
# must be scrubbed), and checks the files are private.
USE = r"""
set -e
out="$TUSK_PFS/out"
printf %s "$PW" | sha256sum | cut -c1-64 > "$out/env.sha"
sha256sum < "$TUSK_SECRETS/creds/password" | cut -c1-64 > "$out/file.sha"
sha256sum < "$TUSK_SECRETS/creds/user" | cut -c1-64 > "$out/user.sha"
if [ -n "$MOUNTED" ]; then sha256sum < "$MOUNTED/password" | cut -c1-64 > "$out/mounted.sha"; fi
stat -c %a "$TUSK_SECRETS/creds/password" > "$out/mode"
echo "the password is $PW"
echo "to stderr: $PW and $(cat "$TUSK_SECRETS/creds/user")" >&2
"""


def secret_spec(name: str, cmd: str, secrets: list[dict[str, str]], **env: str) -> dict:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
        "transform": {
            "cmd": ["sh", "-c", cmd],
            "env": env,
            "secrets": secrets,
            "image_pull_secrets": ["regcred"],
        },
    }


USES = [
    {"name": "creds", "key": "password", "env_var": "PW"},
    {"name": "creds", "mount_path": "/etc/tusk-test-creds"},
]


def everything_shown(client: tusk.Client, pipeline: str) -> str:
    """JSON of every record and answer about a pipeline's jobs: what must hold no value."""
    shown: list[Any] = [client.inspect_pipeline(pipeline, history=True).to_dict()]
    shown += [p.to_dict() for p in client.list_pipelines()]
    for job in client.list_jobs(pipeline):
        shown.append(job.to_dict())
        shown.append(client.inspect_job(f"{pipeline}@{job.id}").to_dict())
        for d in client.list_datums(f"{pipeline}@{job.id}"):
            shown.append(d.to_dict())
            shown.append(client.inspect_datum(f"{pipeline}@{job.id}", d.id).to_dict())
    shown += [line.to_dict() for line in client.logs(pipeline)]
    shown += [s.to_dict() for s in client.list_secrets()]
    try:
        outputs = client.glob_files(f"{pipeline}@master:/**")
    except CommitNotFound:  # its only job failed
        outputs = []
    for f in outputs:
        if f.type == "file":
            shown.append(client.lineage(f"{pipeline}@master:{f.path}").to_dict())
    return json.dumps(shown, default=str)


def assert_no_value(text: str) -> None:
    for value in (PASSWORD, USER, base64.b64encode(PASSWORD.encode()).decode()):
        assert value not in text


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_a_secret_as_env_var_and_files(
    client: tusk.Client, monkeypatch: pytest.MonkeyPatch, sandbox: str
) -> None:
    if sandbox == "bwrap" and not bwrap_works():
        pytest.skip("bubblewrap does not work here")
    monkeypatch.setenv("TUSK_SANDBOX", sandbox)
    client.create_secret(manifest())
    env = {"MOUNTED": "/etc/tusk-test-creds"} if sandbox == "bwrap" else {}
    client.create_pipeline(secret_spec("use", USE, USES, **env))
    client.run_scheduler(once=True)
    [job] = client.list_jobs("use")
    assert job.state == "success", job.reason
    out = {f.path: client.get_file(f"use@master:{f.path}").decode().strip()
           for f in client.glob_files("use@master:/*")}  # fmt: skip
    assert out["/env.sha"] == sha(PASSWORD)
    assert out["/file.sha"] == sha(PASSWORD)
    assert out["/user.sha"] == sha(USER)
    assert out["/mode"] == "600"
    if sandbox == "bwrap":
        assert out["/mounted.sha"] == sha(PASSWORD)

    logs = [line.line for line in client.logs("use")]
    assert "the password is ***" in logs, logs
    assert "to stderr: *** and ***" in logs, logs
    [datum] = client.list_datums(f"use@{job.id}")
    assert "to stderr: *** and ***" in datum.to_dict().get("stderr_tail", "")
    assert_no_value(everything_shown(client, "use"))
    spec = client.inspect_pipeline("use").to_dict()
    assert "creds" in json.dumps(spec) and "regcred" in json.dumps(spec)

    # Files exist only while their datum runs.
    leftovers = [p for p in client.home.rglob("*.secrets")]
    assert leftovers == []
    # The metadata store holds no value in clear (SQLite: its files).
    if not os.environ.get("TUSK_METADATA_URL"):
        for db in client.home.glob("tusk.db*"):
            data = db.read_bytes()
            assert PASSWORD.encode() not in data and USER.encode() not in data


def test_a_failing_datum_scrubs_its_stderr_from_the_job_reason(client: tusk.Client) -> None:
    client.create_secret(manifest())
    cmd = 'echo "bad password $PW" >&2; exit 3'
    client.create_pipeline(secret_spec("leak", cmd, USES[:1]))
    client.run_scheduler(once=True)
    [job] = client.list_jobs("leak")
    assert job.state == "failure"
    assert "stderr: bad password ***" in job.reason, job.reason
    assert_no_value(everything_shown(client, "leak"))


@pytest.mark.parametrize(
    ("uses", "named"),
    [
        ([{"name": "nosuch", "key": "password", "env_var": "PW"}], "secret nosuch does not exist"),
        ([{"name": "creds", "key": "pin", "env_var": "PIN"}], "secret creds has no key pin"),
        ([{"name": "gone", "mount_path": "/etc/gone"}], "secret gone does not exist"),
    ],
)
def test_a_missing_secret_or_key_fails_the_job_before_any_datum(
    client: tusk.Client, uses: list[dict[str, str]], named: str
) -> None:
    client.create_secret(manifest())
    client.create_pipeline(secret_spec("miss", "touch $TUSK_PFS/out/ran", uses))
    client.run_scheduler(once=True)
    [job] = client.list_jobs("miss")
    assert job.state == "failure"
    assert named in job.reason, job.reason
    assert job.datums_total == 0 and client.list_datums(f"miss@{job.id}") == []


def test_a_secret_deleted_then_recreated(client: tusk.Client) -> None:
    client.create_secret(manifest())
    client.create_pipeline(secret_spec("use", USE, USES))
    client.run_scheduler(once=True)
    assert client.list_jobs("use")[0].state == "success"
    client.delete_secret("creds")
    client.put_files("in@master", [("/b.txt", b"beta\n")])
    client.run_scheduler(once=True)
    latest = client.list_jobs("use")[0]
    assert latest.state == "failure" and "secret creds does not exist" in latest.reason


# The CLI


def test_cli(client: tusk.Client, tmp_path: Path) -> None:
    cli = Tusk(client.home)
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(manifest()))
    r = cli("create", "secret", "-f", str(path))
    assert "created secret creds" in r.stdout
    assert cli.json("list", "secret")[0]["keys"] == ["password", "user"]
    table = cli("list", "secrets").stdout
    assert "creds" in table and "password, user" in table
    shown = cli("inspect", "secret", "creds").stdout
    shown += json.dumps(cli.json("inspect", "secret", "creds"))
    assert_no_value(shown + table)
    assert "already exists" in cli.fails("create", "secret", "-f", str(path), code=4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**manifest("b"), "data": {"token": "%%%"}}))
    assert "data.token is not valid base64" in cli.fails("create", "secret", "-f", str(bad), code=2)
    bad.write_text(json.dumps({"kind": "Secret", "data": {}}))
    assert "no metadata.name" in cli.fails("create", "secret", "-f", str(bad), code=2)
    r = cli("create", "secret", "-f", "-", input=json.dumps(manifest("stdin")))
    assert "created secret stdin" in r.stdout

    cli.json("create", "pipeline", "-f", "-", input=json.dumps(secret_spec("use", USE, USES)))
    client.run_scheduler(once=True)
    assert_no_value(cli("inspect", "pipeline", "use").stdout)
    assert_no_value(cli("logs", "-p", "use").stdout)
    assert_no_value(json.dumps(cli.json("list", "job")))

    cli("delete", "secret", "creds")
    assert "secret creds not found" in cli.fails("delete", "secret", "creds", code=3)
    assert "secret creds not found" in cli.fails("inspect", "secret", "creds", code=3)
