"""Secrets over HTTP with auth on: clusterAdmin only, and no answer ever holds a value.

A live server (auth activated): a user without cluster roles is refused (403) on every secret
route and changes nothing; root (clusterAdmin) creates, lists, inspects and deletes through
the SDK over HTTP. A pipeline that names the secret runs on the server; every answer the API
gives about it (pipeline, jobs, datums, logs, lineage, secrets, the audit log) is read raw and
searched for the values.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Live, start_live, stop_live

from tusk.errors import AlreadyExists, InvalidArgument, PermissionDenied, SecretNotFound
from tusk.sdk.remote import RemoteClient

ENGINES = ("sqlite", "postgresql")
API = "/api/v1"
PASSWORD = "remote-pw-0c1d2e3f4a5b"
USER = "svc-remote-9911"


def manifest(name: str = "creds") -> dict[str, Any]:
    return {
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
        "stringData": {"user": USER},
    }


@pytest.fixture
def live(tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    monkeypatch.delenv("TUSK_ADDRESS", raising=False)
    monkeypatch.delenv("TUSK_TOKEN", raising=False)
    monkeypatch.delenv("TUSK_SECRET_KEY", raising=False)
    live = start_live(tmp_path / "home")
    yield live
    stop_live(live)


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    return resp.json() if resp.content else None


def test_secret_routes_are_for_cluster_admins(live: Live) -> None:
    http = httpx.Client(base_url=live.url, timeout=30)
    root_token = _ok(http.post(f"{API}/auth/activate"), 201)["token"]
    root = {"Authorization": f"Bearer {root_token}"}
    alice_token = _ok(
        http.post(f"{API}/auth/tokens", json={"principal": "user:alice"}, headers=root), 201
    )["token"]
    admin = RemoteClient(live.url, root_token)
    alice = RemoteClient(live.url, alice_token)
    try:
        admin.create_secret(manifest())
        for call in (
            lambda: alice.create_secret(manifest("mine")),
            alice.list_secrets,
            lambda: alice.inspect_secret("creds"),
            lambda: alice.delete_secret("creds"),
            lambda: alice.inspect_secret("nosuch"),  # no leak of what exists
        ):
            with pytest.raises(PermissionDenied, match="user:alice"):
                call()
        anon = httpx.get(f"{live.url}{API}/secrets")
        assert anon.status_code == 401
        assert [s.name for s in admin.list_secrets()] == ["creds"]
        assert admin.inspect_secret("creds").keys == ["password", "user"]
        assert admin.inspect_secret("creds").created_by == "user:root"
        with pytest.raises(AlreadyExists):
            admin.create_secret(manifest())
        with pytest.raises(InvalidArgument, match=r"data\.password is not valid base64"):
            admin.create_secret({**manifest("b"), "data": {"password": "@@"}})
        yaml_text = "kind: Secret\nmetadata:\n  name: from-yaml\nstringData:\n  k: v\n"
        assert admin.create_secret(yaml_text).keys == ["k"]
        admin.delete_secret("from-yaml")
        with pytest.raises(SecretNotFound):
            admin.delete_secret("from-yaml")
        # Denied calls are audited; none changed anything.
        audit = _ok(http.get(f"{API}/audit", params={"user": "user:alice"}, headers=root))
        refused = {e["operation"] for e in audit if not e["allowed"]}
        assert {"create_secret", "list_secrets", "inspect_secret", "delete_secret"} <= refused
        assert [s.name for s in admin.list_secrets()] == ["creds"]
    finally:
        admin.close()
        alice.close()
        http.close()


USE = r"""
set -e
printf %s "$PW" | sha256sum | cut -c1-64 > "$TUSK_PFS/out/env.sha"
sha256sum < "$TUSK_SECRETS/creds/user" | cut -c1-64 > "$TUSK_PFS/out/user.sha"
echo "pw=$PW user=$(cat "$TUSK_SECRETS/creds/user")"
echo "err pw=$PW" >&2
"""


def test_no_api_answer_about_the_job_holds_a_value(live: Live) -> None:
    http = httpx.Client(base_url=live.url, timeout=30)
    root_token = _ok(http.post(f"{API}/auth/activate"), 201)["token"]
    root = {"Authorization": f"Bearer {root_token}"}
    admin = RemoteClient(live.url, root_token)
    try:
        admin.create_secret(manifest())
        admin.create_repo("in")
        admin.put_file("in@master:/a.txt", b"alpha\n")
        spec = {
            "pipeline": {"name": "use"},
            "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
            "transform": {
                "cmd": ["sh", "-c", USE],
                "secrets": [
                    {"name": "creds", "key": "password", "env_var": "PW"},
                    {"name": "creds", "mount_path": "/var/secrets/creds"},
                ],
            },
        }
        admin.create_pipeline(spec)
        live.client().run_scheduler(once=True)
        [job] = admin.list_jobs("use")
        assert job.state == "success", job.reason
        got = admin.get_file("use@master:/env.sha").decode().strip()
        assert got == hashlib.sha256(PASSWORD.encode()).hexdigest()
        got = admin.get_file("use@master:/user.sha").decode().strip()
        assert got == hashlib.sha256(USER.encode()).hexdigest()

        jid = job.id
        datums = _ok(http.get(f"{API}/pipelines/use/jobs/{jid}/datums", headers=root))
        urls = [
            "/pipelines",
            "/pipelines/use",
            "/pipelines/use?history=true",
            "/jobs",
            f"/jobs/{jid}",
            f"/pipelines/use/jobs/{jid}",
            f"/pipelines/use/jobs/{jid}/datums",
            *[f"/pipelines/use/jobs/{jid}/datums/{d['id']}" for d in datums],
            "/pipelines/use/logs",
            "/repos/use/commits/master/lineage/env.sha",
            "/repos/use/commits/master/lineage/user.sha",
            "/secrets",
            "/secrets/creds",
            "/audit",
        ]
        answers = []
        for url in urls:
            resp = http.get(f"{API}{url}", headers=root)
            assert resp.status_code == 200, (url, resp.text[:300])
            answers.append(resp.text)
        text = "\n".join(answers)
        assert "pw=*** user=***" in text and "err pw=***" in text
        for value in (PASSWORD, USER, base64.b64encode(PASSWORD.encode()).decode()):
            assert value not in text
        assert json.loads(answers[1])["name"] == "use"
    finally:
        admin.close()
        http.close()
