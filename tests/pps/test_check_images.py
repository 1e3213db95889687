"""Checks in an image (issue 22): a ``kind: check`` with ``image:`` runs in that image under
bubblewrap and reads the candidate commit at ``/pfs/<repo>``, and nothing else of the store
or of the host.

The image is busybox FROM scratch, built offline by tests/imagebuild.py and named by its
``docker-archive:`` tarball (skopeo's syntax); applying the check pins its digest. The checks
run through an embedded :class:`tusk.Client`. Without skopeo, umoci, busybox-static or a
working bubblewrap these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagebuild import CI, Built, build, needs_tools
from tusk import Client
from tusk.errors import CheckFailed
from tusk.pps.executor import bwrap_works

pytestmark = needs_tools


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not bwrap_works():
        if CI:
            pytest.fail("bubblewrap is needed to run images (./dev.sh installs it)")
        pytest.skip("bubblewrap does not work here")
    built: Built = build(tmp_path_factory.mktemp("check-image"))
    return f"docker-archive:{built.archive}"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for name in ("TUSK_EXECUTOR", "TUSK_SANDBOX", "TUSK_ADDRESS", "TUSK_METADATA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOST_ONLY", "leaked")
    with Client(tmp_path / "home") as c:
        yield c


def check(image: str, name: str, script: str, **more: Any) -> dict[str, Any]:
    return {
        "kind": "check",
        "name": name,
        "repo": "data",
        "branch": "master",
        "on": ["commit"],
        "image": image,
        "timeout": "60s",
        "cmd": ["sh", "-c", script],
        **more,
    }


def test_a_check_in_an_image_reads_the_candidate_and_nothing_else(
    image: str, client: Client, tmp_path: Path
) -> None:
    c = client
    home = tmp_path / "home"
    host_file = tmp_path / "on-the-host.txt"
    host_file.write_text("host only\n")
    c.create_repo("data")
    c.create_repo("secret")
    c.put_file("secret@master:/key", b"do not read\n")
    absent = [
        "/pfs/secret",  # another repo
        "/etc/hostname",  # the host's files
        "/usr",
        str(host_file),
        str(home),  # the store itself
        str(home / "tusk.db"),
    ]
    look = (
        "ls /pfs; cat /pfs/data/rows.csv; ls /pfs/out | wc -l; "
        + "".join(f"test ! -e {p} || {{ echo 'sees {p}'; exit 1; }}; " for p in absent)
        + 'echo "env=${HOST_ONLY:-absent} check=$TUSK_CHECK repo=$TUSK_CHECK_REPO"; '
        "{ echo > /pfs/data/rows.csv; } 2>/dev/null || echo read-only"
    )
    applied = c.apply([check(image, "sees", look)])
    assert [(ch.kind, ch.action) for ch in applied.changes] == [("check", "create")]
    [info] = c.list_checks("data")
    assert info.image == image and (info.image_digest or "").startswith("sha256:")

    landed = c.put_file("data@master:/rows.csv", b"id\n1\n").commit
    [run] = c.check_runs("data@master")
    assert run.state == "passed", run.log
    assert (run.name, run.trigger, run.exit_code, run.commit) == ("sees", "commit", 0, landed.id)
    assert run.log.splitlines() == [
        "data",  # the candidate's repo only, and the output folder every datum has
        "out",
        "id",
        "1",
        "0",  # /pfs/out is there, empty
        "env=absent check=sees repo=data",
        "read-only",
    ]
    assert c.get_file("data@master:/rows.csv") == b"id\n1\n"
    assert c.fsck().ok


def test_a_check_that_fails_in_its_image_leaves_the_branch(image: str, client: Client) -> None:
    c = client
    c.create_repo("data")
    c.put_file("data@master:/rows.csv", b"id\n1\n")
    head = c.inspect_branch("data@master").head
    script = 'test -s /pfs/data/rows.csv || { echo "rows.csv is empty" >&2; exit 1; }'
    c.apply([check(image, "not-empty", script)])

    with pytest.raises(CheckFailed) as e:
        c.put_file("data@master:/rows.csv", b"")
    message = str(e.value)
    assert "check not-empty (failed, exit code 1) failed on a commit to data@master" in message
    assert "data@master did not move" in message
    assert "    rows.csv is empty" in message.splitlines()
    assert c.inspect_branch("data@master").head == head
    assert c.get_file("data@master:/rows.csv") == b"id\n1\n"
    candidate = message.split("data@master (", 1)[1].split(")")[0]
    [run] = c.check_runs(f"data@{candidate}")
    assert (run.state, run.exit_code, run.trigger) == ("failed", 1, "commit")
    assert "rows.csv is empty" in run.log

    c.put_file("data@master:/rows.csv", b"id\n2\n")  # fixed: the next commit passes
    [run] = c.check_runs("data@master")
    assert run.state == "passed"
    assert c.inspect_branch("data@master").head != head
    assert c.fsck().ok


def test_the_image_is_pinned_when_the_check_is_applied(image: str, client: Client) -> None:
    """The digest is fixed when the check is applied; the same document again keeps it."""
    c = client
    c.create_repo("data")
    c.apply([check(image, "pinned", "test -e /pfs/data/a && test -x /bin/busybox")])
    digest = c.list_checks("data")[0].image_digest
    assert digest and digest.startswith("sha256:")
    c.apply([check(image, "pinned", "test -e /pfs/data/a && test -x /bin/busybox")])
    assert c.list_checks("data")[0].image_digest == digest  # unchanged: same image
    c.put_file("data@master:/a", b"a")
    assert [r.state for r in c.check_runs("data@master")] == ["passed"]
