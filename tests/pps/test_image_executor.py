"""Pipelines run in their spec's image (issue 14): pinned by digest, sandboxed, Pachyderm's rules.

The images are busybox FROM scratch, built offline by ``imagekit``; the datums run through the
public SDK (an embedded store, the scheduler run until idle) under bubblewrap. Without skopeo,
umoci, busybox-static or a working bubblewrap these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imagekit import busybox_image

import tusk
from tusk.pps.executor import bwrap_works

CI = os.environ.get("CI") == "true"
READY = bool(shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox"))
pytestmark = pytest.mark.skipif(
    not (READY and bwrap_works()) and not CI,
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)

# Everything a datum sees, one fact per line, written to /pfs/out/<input file name>.
PROBE = r"""
f=$(ls /pfs/in)
{
  echo "content=$(cat /pfs/in/$f)"
  echo "mark=$MARK"
  echo "datum=${PACH_DATUM_ID:+set}"
  echo "input=$in"
  echo "host_env=${HOST_ONLY:-absent}"
  echo "pwd=$(pwd)"
  echo "uid=$(id -u):$(id -g)"
  echo "home=$HOME"
} > /pfs/out/$f
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not READY:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("imgs")
    return {
        "a": busybox_image(base, "a", env=["MARK=from-a"], workdir="/work"),
        "b": busybox_image(base, "b", env=["MARK=from-b"]),
        "c": busybox_image(base, "c", env=["MARK=from-c"]),  # b's layer, another config
        "entry": busybox_image(
            base, "entry", entrypoint=["/bin/sh", "-c", "cp -r /pfs/in/. /pfs/out/"]
        ),
        "stdin": busybox_image(base, "stdin", entrypoint=["/bin/sh"]),
        "user": busybox_image(base, "user", user="1000:1000"),  # Docker's USER 1000:1000
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tusk.Client]:
    monkeypatch.setenv("HOST_ONLY", "leaked")
    monkeypatch.delenv("TUSK_EXECUTOR", raising=False)
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    c.put_files("in@master", [("/a.txt", b"alpha"), ("/b.txt", b"beta")])
    yield c
    c.close()


def pipeline(name: str, image: str | None, cmd: list[str] | None = None, **transform: Any) -> dict:
    t: dict[str, Any] = {**transform}
    if image is not None:
        t["image"] = image
    if cmd is not None:
        t["cmd"] = cmd
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": t,
    }


def outputs(c: tusk.Client, repo: str) -> dict[str, str]:
    found = c.glob_files(f"{repo}@master:/**")
    return {
        f.path: c.get_file(f"{repo}@master:{f.path}").decode() for f in found if f.type == "file"
    }


def facts(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_datums_run_in_the_image_pinned_by_digest(client: tusk.Client, images: dict) -> None:
    client.create_pipeline(pipeline("probe", images["a"], ["sh", "-c", PROBE]))
    client.run_scheduler(once=True)
    [job] = client.list_jobs("probe")
    assert job.state == "success", job.reason
    assert job.image_digest and job.image_digest.startswith("sha256:")
    got = {path: facts(text) for path, text in outputs(client, "probe").items()}
    assert got["/a.txt"] == {
        "content": "alpha",
        "mark": "from-a",  # the image's Env
        "datum": "set",
        "input": "/pfs/in/a.txt",
        "host_env": "absent",  # nothing of the host's environment
        "pwd": "/work",  # the image's WorkingDir
        "uid": "0:0",  # no User in the image: root inside its user namespace
        "home": "/root",
    }
    notes = [x.line for x in client.logs("probe", job.id) if x.stream == "system"]
    assert any(f"pinned as {job.image_digest}" in n for n in notes)
    lineage = client.lineage("probe@master:/a.txt")
    assert lineage.image == images["a"] and lineage.image_digest == job.image_digest


def test_the_same_spec_gives_the_same_outputs_on_the_host_executor(
    client: tusk.Client, images: dict, tmp_path: Path
) -> None:
    copy = 'for f in /pfs/in/*; do tr a-z A-Z < "$f" > "/pfs/out/$(basename "$f")"; done'
    client.create_pipeline(pipeline("upper", images["b"], ["sh", "-c", copy]))
    client.run_scheduler(once=True)
    in_image = outputs(client, "upper")
    other = tusk.Client(tmp_path / "host-home")
    try:
        other.create_repo("in")
        other.put_files("in@master", [("/a.txt", b"alpha"), ("/b.txt", b"beta")])
        host_cmd = copy.replace("/pfs", "$TUSK_PFS")
        other.create_pipeline(pipeline("upper", images["b"], ["sh", "-c", host_cmd]))
        other.run_scheduler(once=True, executor="host")
        assert outputs(other, "upper") == in_image == {"/a.txt": "ALPHA", "/b.txt": "BETA"}
        assert other.list_jobs("upper")[0].image_digest is None  # recorded, not run
    finally:
        other.close()


def test_a_datum_sees_nothing_of_the_host_and_cannot_write_its_inputs(
    client: tusk.Client, images: dict, tmp_path: Path
) -> None:
    marker = tmp_path / "host-marker"
    marker.write_text("host")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[bool] = []

    def accept() -> None:
        server.settimeout(20)
        try:
            while True:
                conn, _ = server.accept()
                accepted.append(True)
                conn.close()
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    probe = (
        f"test -e {marker} && echo host-file-visible; "
        "test -e /usr/bin/python3 && echo host-usr-visible; "
        "ls /home /root 2>/dev/null | grep -q . && echo home-not-empty; "
        "echo x > /pfs/in/$(ls /pfs/in) 2>/dev/null && echo wrote-input; "
        "echo x > /etc/new 2>/dev/null && echo wrote-rootfs; "
        f"nc -w 2 127.0.0.1 {port} </dev/null 2>/dev/null && echo reached-loopback; "
        "echo done > /pfs/out/$(ls /pfs/in)"
    )
    client.create_pipeline(pipeline("closed", images["a"], ["sh", "-c", probe]))
    net = f"nc -w 2 127.0.0.1 {port} </dev/null && echo reached > /pfs/out/$(ls /pfs/in)"
    client.create_pipeline(pipeline("open", images["b"], ["sh", "-c", net], network=True))
    client.run_scheduler(once=True)
    server.close()
    jobs = {j.pipeline: j for j in client.list_jobs()}
    assert jobs["closed"].state == "success", jobs["closed"].reason
    assert set(outputs(client, "closed").values()) == {"done\n"}  # none of the probes printed
    assert client.get_file("in@master:/a.txt") == b"alpha"
    # network: true shares the host's network; both datums reached the listener
    assert jobs["open"].state == "success", jobs["open"].reason
    assert set(outputs(client, "open").values()) == {"reached\n"} and len(accepted) == 2


def test_two_pipelines_with_different_images_run_side_by_side(
    client: tusk.Client, images: dict
) -> None:
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("one", images["a"], ["sh", "-c", show]))
    client.create_pipeline(pipeline("two", images["b"], ["sh", "-c", show]))
    client.run_scheduler(once=True)
    assert set(outputs(client, "one").values()) == {"from-a\n"}
    assert set(outputs(client, "two").values()) == {"from-b\n"}
    one, two = client.list_jobs("one")[0], client.list_jobs("two")[0]
    assert one.image_digest != two.image_digest


def test_entrypoint_only_image_and_stdin(client: tusk.Client, images: dict) -> None:
    client.create_pipeline(pipeline("entry", images["entry"]))  # no cmd: the Entrypoint runs
    script = ["for f in /pfs/in/*; do wc -c < $f > /pfs/out/$(basename $f); done"]
    client.create_pipeline(pipeline("fed", images["stdin"], ["sh"], stdin=script))
    client.run_scheduler(once=True)
    assert outputs(client, "entry") == {"/a.txt": "alpha", "/b.txt": "beta"}
    assert {k: v.strip() for k, v in outputs(client, "fed").items()} == {
        "/a.txt": "5",
        "/b.txt": "4",
    }


def test_user_runs_as_the_spec_says(client: tusk.Client, images: dict) -> None:
    cmd = ["sh", "-c", 'id -u > /pfs/out/$(ls /pfs/in); echo "$HOME" >> /pfs/out/$(ls /pfs/in)']
    client.create_pipeline(pipeline("as-nobody", images["a"], cmd, user="nobody"))
    client.create_pipeline(pipeline("as-1234", images["a"], cmd, user="1234:1234"))
    client.create_pipeline(pipeline("as-ghost", images["a"], cmd, user="ghost"))
    client.run_scheduler(once=True)
    assert set(outputs(client, "as-nobody").values()) == {"65534\n/nonexistent\n"}
    assert {v.split()[0] for v in outputs(client, "as-1234").values()} == {"1234"}
    ghost = client.list_jobs("as-ghost")[0]
    assert ghost.state == "failure"
    [datum] = [d for d in client.list_datums(f"as-ghost@{ghost.id}") if d.state == "failed"][:1]
    assert "user 'ghost' is not in /etc/passwd of image" in datum.error


def test_the_images_own_user_runs_unless_the_spec_names_one(
    client: tusk.Client, images: dict
) -> None:
    cmd = ["sh", "-c", 'echo "$(id -u):$(id -g)" > /pfs/out/$(ls /pfs/in)']
    client.create_pipeline(pipeline("image-user", images["user"], cmd))
    client.create_pipeline(pipeline("spec-user", images["user"], cmd, user="nobody"))
    client.run_scheduler(once=True)
    assert set(outputs(client, "image-user").values()) == {"1000:1000\n"}  # the config's User
    assert set(outputs(client, "spec-user").values()) == {"65534:65534\n"}  # transform.user


def test_a_command_missing_from_the_image_is_named(client: tusk.Client, images: dict) -> None:
    client.create_pipeline(pipeline("py", images["a"], ["python3", "main.py"]))
    client.run_scheduler(once=True)
    job = client.list_jobs("py")[0]
    assert job.state == "failure"
    errors = {d.error for d in client.list_datums(f"py@{job.id}") if d.state == "failed"}
    assert errors == {f"python3: not found in image {images['a']}"}


def test_a_version_keeps_its_digest_when_the_tag_moves(
    client: tusk.Client, images: dict, tmp_path: Path
) -> None:
    layout = tmp_path / "moving"
    ref = busybox_image(layout, "latest", env=["MARK=first"])
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("pinned", ref, ["sh", "-c", show]))
    client.run_scheduler(once=True)
    first = client.list_jobs("pinned")[0].image_digest
    shutil.rmtree(layout)
    assert busybox_image(layout, "latest", env=["MARK=second"]) == ref
    client.put_file("in@master:/c.txt", b"gamma")  # a new job of the same version
    client.run_scheduler(once=True)
    jobs = client.list_jobs("pinned")
    assert {j.image_digest for j in jobs} == {first}
    assert outputs(client, "pinned")["/c.txt"] == "first\n"
    client.update_pipeline(pipeline("pinned", ref, ["sh", "-c", show + " # v2"]), reprocess=True)
    client.run_scheduler(once=True)
    latest = client.list_jobs("pinned")[0]
    assert latest.version == 2 and latest.image_digest not in (None, first)
    assert set(outputs(client, "pinned").values()) == {"second\n"}


def test_shared_layers_are_stored_once_and_gc_reclaims_unpinned_images(
    client: tusk.Client, images: dict
) -> None:
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("one", images["c"], ["sh", "-c", show]))
    client.create_pipeline(pipeline("two", images["b"], ["sh", "-c", show]))
    client.run_scheduler(once=True)
    cache = client.home / "images"
    a, b = (client.list_jobs(p)[0].image_digest[7:] for p in ("one", "two"))
    busybox_a = (cache / "rootfs" / a / "bin" / "busybox").stat()
    busybox_b = (cache / "rootfs" / b / "bin" / "busybox").stat()
    assert busybox_a.st_ino == busybox_b.st_ino  # one file on disk for both images
    blobs_a = {p.name: p.stat().st_ino for p in (cache / "oci" / a / "blobs" / "sha256").iterdir()}
    blobs_b = {p.name: p.stat().st_ino for p in (cache / "oci" / b / "blobs" / "sha256").iterdir()}
    shared = set(blobs_a) & set(blobs_b)
    assert len(shared) == 1 and all(blobs_a[h] == blobs_b[h] for h in shared)  # the layer

    dry = client.gc(grace=0, dry_run=True)
    assert dry.images_deleted == 0  # both pinned by their pipeline versions
    client.delete_pipeline("one")
    dry = client.gc(grace=0, dry_run=True)
    assert dry.images_deleted == 1 and (cache / "oci" / a).is_dir()
    report = client.gc(grace=0)
    assert report.images_deleted == 1 and report.image_bytes_freed == dry.image_bytes_freed
    # only image a's own blobs and files went: busybox is still b's
    assert report.image_bytes_freed < busybox_a.st_size
    assert not (cache / "oci" / a).exists() and not (cache / "rootfs" / a).exists()
    assert (cache / "rootfs" / b / "bin" / "busybox").stat().st_ino == busybox_b.st_ino
    client.put_file("in@master:/c.txt", b"gamma")
    client.run_scheduler(once=True)  # the kept image still runs
    assert outputs(client, "two")["/c.txt"] == "from-b\n"
    client.delete_pipeline("two")
    report = client.gc(grace=0)
    assert report.images_deleted == 1 and report.image_bytes_freed >= busybox_b.st_size
    for pool in ("oci", "rootfs", "blobs", "files"):
        assert list((cache / pool).iterdir()) == [], pool


def test_a_loaded_tarball_is_named_by_its_tags_and_held_from_gc(
    client: tusk.Client, images: dict, tmp_path: Path
) -> None:
    import subprocess

    archive = tmp_path / "tool.tar"
    subprocess.run(
        ["skopeo", "copy", "--quiet", images["b"], f"docker-archive:{archive}:example/tool:1.0"],
        check=True,
    )
    info = client._pps.images.load(archive)
    assert "example/tool:1.0" in info.references
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("tool", "example/tool:1.0", ["sh", "-c", show]))
    client.run_scheduler(once=True)  # no registry: the loaded image answers the tag
    assert client.list_jobs("tool")[0].image_digest == info.digest
    assert set(outputs(client, "tool").values()) == {"from-b\n"}
    client.delete_pipeline("tool")
    assert client.gc(grace=0).images_deleted == 0  # held by the load
    assert client._pps.images.release(info.digest)
    assert client.gc(grace=0).images_deleted == 1


def test_a_datum_over_its_memory_limit_is_stopped_and_says_so(
    client: tusk.Client, images: dict
) -> None:
    grow = 'x=$(head -c "$(cat /pfs/in/*)" /dev/zero | tr "\\0" a); echo ${#x} > /pfs/out/n'
    spec = pipeline("grow", images["b"], ["sh", "-c", grow])
    spec["input"]["pfs"]["glob"] = "/"
    spec["resource_limits"] = {"memory": "64Mi"}
    client.put_files("in@master", [("/a.txt", b"1000000"), ("/b.txt", b"")])
    client.create_pipeline(spec)
    client.run_scheduler(once=True)
    assert client.get_file("grow@master:/n") == b"1000000\n"  # 1 MB fits under 64Mi
    client.put_file("in@master:/a.txt", b"200000000")
    client.run_scheduler(once=True)
    job = client.list_jobs("grow")[0]
    assert job.state == "failure"
    [datum] = client.list_datums(f"grow@{job.id}")
    assert datum.error.startswith("exceeded resource_limits.memory 64Mi (RLIMIT_DATA): sh")


def test_secrets_reach_a_datum_in_an_image_and_never_its_logs(
    client: tusk.Client, images: dict
) -> None:
    password = "s3cret-horse-4711"
    client.create_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": password},
        }
    )
    use = (
        'f=$(ls /pfs/in); [ "$(cat /var/run/creds/password)" = "$PASS" ] '
        '&& echo ok > /pfs/out/$f; echo "leak $PASS"'
    )
    spec = pipeline("secretive", images["b"], ["sh", "-c", use])
    spec["transform"]["secrets"] = [
        {"name": "creds", "key": "password", "env_var": "PASS"},
        {"name": "creds", "mount_path": "/var/run/creds"},  # not in the image: made for it
    ]
    client.create_pipeline(spec)
    client.run_scheduler(once=True)
    job = client.list_jobs("secretive")[0]
    assert job.state == "success", job.reason
    assert set(outputs(client, "secretive").values()) == {"ok\n"}
    logs = [x.line for x in client.logs("secretive", job.id)]
    assert "leak ***" in logs and not any(password in line for line in logs)


def test_an_image_over_the_cache_quota_is_refused_and_leaves_the_cache_as_it_was(
    client: tusk.Client, images: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tusk.pps.images import ImageCache

    probe = ImageCache(tmp_path / "probe")  # how big the image is, copied and unpacked
    info = probe.resolve(images["b"])
    copied = probe.usage()
    probe.rootfs(info)
    unpacked = probe.usage() - copied
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("big", images["b"], ["sh", "-c", show]))
    cache = client.home / "images"

    monkeypatch.setenv("TUSK_IMAGE_CACHE_QUOTA", str(copied // 2))  # not even the copy fits
    client.run_scheduler(once=True)
    [job] = client.list_jobs("big")
    assert job.state == "failure" and "over its quota" in job.reason and images["b"] in job.reason
    assert not (cache / "oci").exists() or list((cache / "oci").iterdir()) == []

    # the copy fits, the unpacked rootfs does not: each datum fails, saying so
    monkeypatch.setenv("TUSK_IMAGE_CACHE_QUOTA", str(copied + unpacked // 2))
    client.put_file("in@master:/c.txt", b"gamma")
    client.run_scheduler(once=True)
    job = client.list_jobs("big")[0]
    assert job.state == "failure"
    errors = {d.error for d in client.list_datums(f"big@{job.id}") if d.state == "failed"}
    assert len(errors) == 1 and "the rootfs of image" in errors.pop()
    assert list((cache / "rootfs").iterdir()) == [] and list((cache / "tmp").iterdir()) == []

    monkeypatch.setenv("TUSK_IMAGE_CACHE_QUOTA", "1Gi")
    client.put_file("in@master:/d.txt", b"delta")
    client.run_scheduler(once=True)
    assert client.list_jobs("big")[0].state == "success"
    monkeypatch.setenv("TUSK_IMAGE_CACHE_QUOTA", "a lot")
    with pytest.raises(tusk.errors.InvalidArgument, match="image_cache_quota"):
        client.gc(grace=0)


def test_a_slow_pull_does_not_hold_up_other_pipelines(
    client: tusk.Client, images: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tusk.pps.service import PpsService

    release = threading.Event()
    real = PpsService.resolve_image

    def slow(self: PpsService, spec: Any) -> str:
        release.wait(30)  # a registry taking its time
        return real(self, spec)

    monkeypatch.setattr(PpsService, "resolve_image", slow)
    show = 'echo "$MARK" > /pfs/out/$(ls /pfs/in)'
    client.create_pipeline(pipeline("pulled", images["b"], ["sh", "-c", show]))
    client.create_pipeline(pipeline("plain", None, ["sh", "-c", 'cp "$in" "$TUSK_PFS/out/"']))
    stop = threading.Event()
    loop = threading.Thread(target=client.run_scheduler, kwargs={"stop": stop}, daemon=True)
    loop.start()
    from tusk.polling import poll_until

    def finished(name: str) -> tusk.JobInfo:
        def check() -> tuple[bool, list[tusk.JobInfo]]:
            jobs = client.list_jobs(name)
            return bool(jobs) and jobs[0].done, jobs

        return poll_until(check, 30, lambda jobs: f"{name}: {jobs}")[0]

    try:
        assert finished("plain").state == "success"  # while the other image is still coming
        assert client.list_jobs("pulled")[0].state == "created"
        release.set()
        pulled = finished("pulled")
        assert pulled.state == "success" and pulled.image_digest
    finally:
        release.set()
        stop.set()
        loop.join(30)
