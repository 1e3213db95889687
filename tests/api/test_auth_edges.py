"""Auth on a real ``tusk up``: jobs run as their pipeline, no open door, TLS."""

from __future__ import annotations

import os
import shlex
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import spawn

from tusk.server import Server, Services

API = "/api/v1"


@pytest.fixture
def up(home: Path) -> Iterator[tuple[httpx.Client, str]]:
    """A ``tusk up`` process with auth on: an HTTP client and the root token."""
    proc, url = spawn(home, "up", "--port", "0", env={"TUSK_SANDBOX": "none"})
    try:
        with httpx.Client(base_url=url, timeout=60) as web:
            activated = web.post(f"{API}/auth/activate")
            assert activated.status_code == 201, activated.text
            yield web, activated.json()["token"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def call(web: httpx.Client, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return web.request(method, f"{API}{path}", headers=bearer(token), **kw)


def test_a_pipeline_runs_as_itself_and_may_not_write_elsewhere(
    up: tuple[httpx.Client, str],
) -> None:
    web, root = up
    for repo in ("r", "other"):
        assert call(web, root, "POST", "/repos", json={"name": repo}).status_code == 201
    put = call(web, root, "PUT", "/repos/r/commits/master/files/a", content=b"alpha")
    assert put.status_code == 200, put.text
    tusk = f"{shlex.quote(sys.executable)} -m tusk.cli.main"
    code = (
        f'{tusk} get file r@master:/a > "$TUSK_PFS/out/a" || {{ echo READ FAILED >&2; exit 7; }}; '
        f"echo x | {tusk} put file other@master:/x -f -"
    )
    spec = {
        "pipeline": {"name": "p"},
        "input": {"pfs": {"repo": "r", "glob": "/*"}},
        "transform": {"cmd": ["sh", "-c", code]},
    }
    created = call(web, root, "POST", "/pipelines", json={"spec": spec})
    assert created.status_code == 201, created.text
    waited = call(web, root, "GET", "/repos/p/commits/master/wait", params={"timeout": 30})
    assert waited.status_code == 409, waited.text  # the job failed: its commit was dropped
    message = waited.json()["error"]["message"]
    assert "READ FAILED" not in message  # it read its input through the API
    assert "pipeline:p may not put_file on repo other" in message and "repoWriter" in message
    audit = call(web, root, "GET", "/audit", params={"user": "pipeline:p"}).json()
    # Each of its datum_tries (3) tried, was refused and audited.
    assert [(e["operation"], e["resource"], e["allowed"]) for e in audit] == [
        ("put_file", "other", False)
    ] * 3
    tokens = call(web, root, "GET", "/auth/tokens").json()
    job_tokens = [t for t in tokens if t["principal"] == "pipeline:p"]
    assert job_tokens and {t["state"] for t in job_tokens} == {"revoked"}  # ended with the job
    assert call(web, root, "GET", "/repos/other/commits").json() == []  # nothing written


def test_no_open_door_without_auth(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TUSK_ADDRESS", "TUSK_DEBUG")}
    # Refused before any socket is bound: nothing listens beyond loopback.
    refused = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "serve", "--host",
         "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "auth off" in lines[0] and "--insecure" in lines[0]
    services = Services.open(home)
    try:
        assert Server(services, host="10.9.8.7", insecure=True)._check_exposure() is None
        from tusk.auth.service import AuthService

        AuthService(services.pfs.meta).activate()
        assert Server(services, host="10.9.8.7")._check_exposure() is None  # auth is on now
    finally:
        services.close()


def test_tls(home: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    proc, url = spawn(home, "serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trust, timeout=30) as web:
            assert web.get(f"{API}/health").status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served there
            httpx.get(url.replace("https://", "http://") + f"{API}/health", timeout=5)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_bad_credentials_and_bad_role_requests_change_nothing(home: Path) -> None:
    from apihelpers import start_live, stop_live

    live = start_live(home)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as web:
            root = web.post(f"{API}/auth/activate").json()["token"]
            assert call(web, root, "POST", "/repos", json={"name": "r"}).status_code == 201

            def state() -> Any:
                return (
                    call(web, root, "GET", "/auth/repos/r/roles").json(),
                    call(web, root, "GET", "/auth/cluster/roles").json(),
                    [t["id"] for t in call(web, root, "GET", "/auth/tokens").json()],
                    call(web, root, "GET", "/repos").json(),
                )

            before = state()
            headers = [
                "Bearer",
                "Basic dXNlcjpwYXNz",
                "Token " + root,
                "Bearer tusk_0123456789abcdef_short",
                "Bearer " + root[:-1] + ("A" if root[-1] != "A" else "B"),  # a wrong secret
                "Bearer " + "A" * 200_000,  # a huge header
            ]
            for header in headers:
                got = web.post(
                    f"{API}/repos", json={"name": "x"}, headers={"authorization": header}
                )
                assert got.status_code == 401, (header[:40], got.text)
                message = got.json()["error"]["message"]
                assert "\n" not in message and len(message) < 300
            bad_roles = [
                ("/auth/repos/r/roles", {"principal": "user:a", "roles": ["repoAdmin"]}, 400),
                ("/auth/repos/r/roles", {"principal": "alice", "roles": ["repoReader"]}, 400),
                ("/auth/repos/r/roles", {"principal": "user:a b", "roles": ["repoReader"]}, 400),
                ("/auth/repos/nope/roles", {"principal": "user:a", "roles": ["repoReader"]}, 404),
                ("/auth/repos/r/roles", {"principal": "user:a", "roles": ["x"] * 9}, 400),
                ("/auth/cluster/roles", {"principal": "user:a", "roles": ["repoReader"]}, 400),
                ("/auth/cluster/roles", {"principal": "user:root", "roles": []}, 400),
            ]
            for path, body, status in bad_roles:
                got = call(web, root, "PUT", path, json=body)
                assert got.status_code == status, (path, body, got.text)
            for body in ({"principal": "user:a", "ttl": -5}, {"principal": "nobody"}):
                assert call(web, root, "POST", "/auth/tokens", json=body).status_code == 400
            assert call(web, root, "DELETE", "/auth/tokens/not-a-token").status_code == 404
            assert call(web, root, "POST", "/auth/activate").status_code == 409
            assert state() == before
    finally:
        stop_live(live)
