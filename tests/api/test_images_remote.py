"""The image cache through a server: ``POST``/``GET /api/v1/images`` and ``DELETE
/api/v1/images/{name}``, the SDK and the CLI.

One live server for the module, auth on: root (clusterAdmin) loads a ``docker save`` tarball
built offline (tests/imagebuild.py) with the CLI and the SDK; the server's cache then holds
the image the same tarball makes in-process, known by the tag it carries (never by the
server's temporary file), and no upload is left behind. A user without cluster roles may
list but not load or delete (403, audited, nothing changed); a damaged tarball sent raw is a
400 of one line that never names the server's temporary file. Root cannot delete an image a
pipeline's job pins (409, naming it), can once the pipeline is gone; an unknown name is a 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Live, start_live, stop_live
from click.testing import CliRunner, Result

import tusk
from imagebuild import Built, build, needs_tools
from tusk.cli.main import cli
from tusk.errors import ImageNotFound, InvalidArgument, InvalidImage, PermissionDenied
from tusk.sdk.remote import RemoteClient

pytestmark = needs_tools
API = "/api/v1"


@dataclass
class Server:
    live: Live
    http: httpx.Client
    root: str  # clusterAdmin's token
    alice: str  # a token with no roles
    built: Built

    @property
    def cache(self) -> Path:
        return self.live.services.pps.images.root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    built = build(tmp_path_factory.mktemp("images"))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("TUSK_METADATA_URL", "TUSK_ADDRESS", "TUSK_TOKEN", "TUSK_SECRET_KEY"):
            mp.delenv(name, raising=False)
        # A JSON body limit below the tarball's size: uploads are exempt from it.
        home = tmp_path_factory.mktemp("images-server") / "home"
        live = start_live(home, max_body=built.archive.stat().st_size // 2)
        http = httpx.Client(base_url=live.url, timeout=60)
        try:
            root = _ok(http.post(f"{API}/auth/activate"), 201)["token"]
            body = {"principal": "user:alice"}
            alice = _ok(http.post(f"{API}/auth/tokens", json=body, headers=_bearer(root)), 201)
            yield Server(live, http, root, alice["token"], built)
        finally:
            http.close()
            stop_live(live)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    return resp.json()


def run(server: Server, token: str, *args: str, code: int = 0) -> Result:
    env = {"TUSK_TOKEN": token, "TUSK_CONFIG": str(server.built.archive.parent / "none.yaml")}
    r = CliRunner().invoke(
        cli, ["--address", server.live.url, *args], env=env, catch_exceptions=False
    )
    assert r.exit_code == code, f"tusk {' '.join(args)} -> {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r


def _state(server: Server) -> tuple[list[dict[str, Any]], list[str], list[Path]]:
    images = _ok(server.http.get(f"{API}/images", headers=_bearer(server.root)))
    tmp = server.cache / "tmp"
    leftovers = sorted(tmp.iterdir()) if tmp.is_dir() else []
    return images, sorted(p.name for p in (server.cache / "oci").iterdir()), leftovers


def test_root_loads_and_anyone_lists(server: Server, tmp_path: Path) -> None:
    archive = server.built.archive
    with tusk.Client(tmp_path / "here") as here:  # what the same tarball makes in-process
        made = here.load_image(archive)
    expected = {**made.to_dict(), "references": ["busybox:v1"]}

    out = run(server, server.root, "image", "load", str(archive)).stdout.strip()
    assert out == f"loaded image {made.digest} (busybox:v1)"
    listed = json.loads(run(server, server.alice, "list", "image", "-o", "json").stdout)
    assert listed == [expected]
    row = run(server, server.alice, "list", "image").stdout.splitlines()[1].split()
    assert row[:2] == [made.short, "busybox:v1"]
    for name in (made.short, "busybox:v1"):
        inspected = run(server, server.alice, "inspect", "image", name, "-o", "json")
        assert json.loads(inspected.stdout) == expected

    with RemoteClient(server.live.url, server.root) as admin:
        again = admin.load_image(f"docker-archive:{archive}")
        assert again.to_dict() == expected
        assert [i.to_dict() for i in admin.list_images()] == [expected]
        with pytest.raises(InvalidArgument, match="tusk image load takes a tarball"):
            admin.load_image(f"oci:{server.built.layout}:v1")
    # The server's own cache holds it, under its tag; the upload is gone.
    images = server.live.services.pps.images
    assert [i.digest for i in images.list()] == [made.digest]
    assert images.resolve("busybox:v1").digest == made.digest
    assert _state(server)[2] == []


def test_loading_is_for_cluster_admins(server: Server) -> None:
    with RemoteClient(server.live.url, server.root) as admin:
        admin.load_image(server.built.archive)
    before = _state(server)
    with RemoteClient(server.live.url, server.alice) as alice:
        with pytest.raises(PermissionDenied, match="user:alice"):
            alice.load_image(server.built.archive)
        assert [i.digest for i in alice.list_images()] == [i["digest"] for i in before[0]]
    error = run(server, server.alice, "image", "load", str(server.built.archive), code=9).stderr
    assert error.count("\n") == 1 and error.startswith("error: ") and "user:alice" in error
    anonymous = server.http.get(f"{API}/images")
    assert anonymous.status_code == 401, anonymous.text
    raw = server.http.post(
        f"{API}/images", content=server.built.archive.read_bytes(), headers=_bearer(server.alice)
    )
    assert raw.status_code == 403 and raw.json()["error"]["code"] == "permission_denied"
    assert _state(server) == before
    audit = _ok(
        server.http.get(f"{API}/audit", params={"user": "user:alice"}, headers=_bearer(server.root))
    )
    assert any(e["operation"] == "load_image" and not e["allowed"] for e in audit)


def test_a_bad_tarball_is_a_400_of_one_line(server: Server) -> None:
    with RemoteClient(server.live.url, server.root) as admin:
        admin.load_image(server.built.archive)
    before = _state(server)
    root = _bearer(server.root)
    for name, code, phrase in [
        ("junk", "invalid_image", "is not a tar archive"),
        ("cut", "invalid_image", "is a damaged tar archive"),
        ("empty", "invalid_image", "is empty"),
        ("plain", "invalid_image", "has no manifest.json"),
        ("flipped", "invalid_image", "a blob's digest does not match"),
    ]:
        body = server.built.bad[name].read_bytes()
        resp = server.http.post(
            f"{API}/images", content=body, params={"name": f"/x/{name}.tar"}, headers=root
        )
        assert resp.status_code == 400, (name, resp.text)
        error = resp.json()["error"]
        assert error["code"] == code and phrase in error["message"], (name, error)
        assert f"/x/{name}.tar" in error["message"] and "\n" not in error["message"], error
        assert "upload-" not in error["message"] and str(server.cache) not in error["message"]
        assert _state(server) == before, name
    # The SDK and the CLI refuse it before sending a byte, naming the local file.
    with (
        RemoteClient(server.live.url, server.root) as admin,
        pytest.raises(InvalidImage, match=r"junk\.tar is not a tar archive"),
    ):
        admin.load_image(server.built.bad["junk"])
    flipped = str(server.built.bad["flipped"])
    error = run(server, server.root, "image", "load", flipped, code=2).stderr
    assert error.count("\n") == 1 and f"docker-archive:{flipped}: a blob's digest" in error
    body = server.built.archive.read_bytes()
    params = {"name": "a\x1bb"}
    bad_name = server.http.post(f"{API}/images", content=body, params=params, headers=root)
    assert bad_name.status_code == 400 and "unprintable" in bad_name.text, bad_name.text
    assert _state(server) == before


def test_deleting_is_for_cluster_admins(server: Server) -> None:
    with RemoteClient(server.live.url, server.root) as admin:
        digest = admin.load_image(server.built.archive).digest
    before = _state(server), sorted(p.name for p in (server.cache / "refs").iterdir())
    with (
        RemoteClient(server.live.url, server.alice) as alice,
        pytest.raises(PermissionDenied, match="user:alice"),
    ):
        alice.delete_image("busybox:v1")
    error = run(server, server.alice, "delete", "image", "busybox:v1", code=9).stderr
    assert error.count("\n") == 1 and error.startswith("error: ") and "user:alice" in error
    raw = server.http.delete(f"{API}/images/{digest}", headers=_bearer(server.alice))
    assert raw.status_code == 403 and raw.json()["error"]["code"] == "permission_denied"
    assert (_state(server), sorted(p.name for p in (server.cache / "refs").iterdir())) == before
    audit = _ok(
        server.http.get(f"{API}/audit", params={"user": "user:alice"}, headers=_bearer(server.root))
    )
    assert sum(e["operation"] == "delete_image" and not e["allowed"] for e in audit) == 3

    # A pipeline's job pins it: 409, naming the pipeline; then root deletes it by tag.
    with RemoteClient(server.live.url, server.root) as admin:
        admin.create_repo("in")
        admin.put_files("in@master", [("/a.txt", b"alpha")])
        spec = {
            "pipeline": {"name": "edges"},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": {"image": "busybox:v1", "cmd": ["true"]},
        }
        admin.create_pipeline(spec)
        server.live.client().run_scheduler(once=True)
        pinned = server.http.delete(f"{API}/images/busybox:v1", headers=_bearer(server.root))
        assert pinned.status_code == 409, pinned.text
        message = pinned.json()["error"]["message"]
        assert pinned.json()["error"]["code"] == "in_use" and "pipeline edges v1" in message
        admin.delete_pipeline("edges")
        admin.delete_repo("in")
        out = run(server, server.root, "delete", "image", "busybox:v1").stdout
        assert out == f"deleted image {digest} (busybox:v1)\n"
        assert admin.list_images() == []
        # A name with '/' and ':' reaches the route whole; one that names nothing is a 404.
        with pytest.raises(ImageNotFound, match=r"no image 'myorg/tool:1\.2'"):
            admin.delete_image("myorg/tool:1.2")
    assert not (server.cache / "oci" / digest[7:]).exists()
    assert list((server.cache / "refs").iterdir()) == []
    missing = server.http.delete(f"{API}/images/{digest}", headers=_bearer(server.root))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "image_not_found"
    audit = _ok(
        server.http.get(f"{API}/audit", params={"user": "user:root"}, headers=_bearer(server.root))
    )
    assert any(e["operation"] == "delete_image" and e["allowed"] for e in audit)
