"""Pachyderm's beginner tutorial (edges + montage) in an image, as Pachyderm runs it.

The image is this machine's Python with NumPy and Pillow (``imagekit.python_image``) and the
tutorial's two scripts in ``/app``, its WorkingDir: the code lives in the image. The specs are
``examples/edges``'s, unchanged but for ``transform.image``; the outputs must be the bytes the
host executor makes from the same specs without an image. Pachyderm's tutorial also feeds its
montage to ``sh`` through ``transform.stdin``, and images often carry their command as an
Entrypoint that a spec without ``cmd`` runs: both forms are compared with the host too. Skips
here without skopeo, umoci, busybox-static or bubblewrap; fails in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from imagekit import python_image

import tusk
from tusk.pps.executor import bwrap_works

EDGES = Path(__file__).resolve().parents[2] / "examples" / "edges"
SCRIPTS = {"/app/edges.py": EDGES / "edges.py", "/app/montage.py": EDGES / "montage.py"}
READY = bool(shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox"))
pytestmark = pytest.mark.skipif(
    not (READY and bwrap_works()) and os.environ.get("CI") != "true",
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout folder every image of this module is built in (they share the base)."""
    if not READY:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    return tmp_path_factory.mktemp("img")


@pytest.fixture(scope="module")
def image(images_dir: Path) -> str:
    """The tutorial's image: Python, NumPy, Pillow and the two scripts in /app (WorkingDir)."""
    return python_image(images_dir, "tutorial", files=SCRIPTS)


def generate(folder: Path, count: int = 3, seed: int | None = None) -> Path:
    """``count`` pictures ``shapes-<i>.png`` from the tutorial's generator in ``folder``."""
    args = [sys.executable, str(EDGES / "generate.py"), str(folder), "--count", str(count)]
    args += ["--seed", str(seed)] if seed is not None else []
    subprocess.run(args, check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("pictures"))


def spec(name: str, image: str | None, **transform: Any) -> dict[str, Any]:
    """``examples/edges/<name>.yaml`` with ``transform.image`` (else, on the host, the scripts
    found in the spec's folder: working_dir, as apply does) and ``transform`` items replaced;
    one set to None is removed."""
    data: dict[str, Any] = yaml.safe_load((EDGES / f"{name}.yaml").read_text())
    data["transform"].update({"image": image} if image else {"working_dir": str(EDGES)})
    data["transform"].update(transform)
    data["transform"] = {k: v for k, v in data["transform"].items() if v is not None}
    return data


def run(
    home: Path, inputs: dict[str, Path], specs: list[dict[str, Any]], in_image: bool
) -> dict[str, bytes]:
    """Every output file of ``specs`` over the repos ``inputs`` (name -> folder put in it), by
    ``<pipeline>/<path>``: in the specs' images (executor ``local``), or on the host (executor
    ``host``), both under bubblewrap so that ``/pfs`` is where Pachyderm has it."""
    with tusk.Client(home) as c:
        for repo, folder in inputs.items():
            c.create_repo(repo)
            c.put_dir(f"{repo}@master:/", folder)
        for data in specs:
            assert ("image" in data["transform"]) == in_image
            c.create_pipeline(data)
        c.run_scheduler(once=True, executor="local" if in_image else "host", sandbox="bwrap")
        jobs = {j.pipeline: j for j in c.list_jobs()}
        assert sorted(jobs) == sorted(s["pipeline"]["name"] for s in specs)
        for job in jobs.values():
            assert job.state == "success", f"{job.pipeline}: {job.reason}"
            assert bool(job.image_digest) == in_image
        out = {}
        for repo in jobs:
            for f in c.glob_files(f"{repo}@master:/**"):
                if f.type == "file":
                    out[f"{repo}{f.path}"] = c.get_file(f"{repo}@master:{f.path}")
        return out


def test_edges_and_montage_in_an_image_match_the_host(
    tmp_path: Path, image: str, pictures: Path
) -> None:
    def tutorial(image: str | None) -> list[dict[str, Any]]:
        return [spec("edges", image), spec("montage", image)]

    in_image = run(tmp_path / "image-home", {"images": pictures}, tutorial(image), True)
    on_host = run(tmp_path / "host-home", {"images": pictures}, tutorial(None), False)
    assert (
        sorted(in_image)
        == sorted(on_host)
        == sorted([f"edges/{p.name}" for p in pictures.iterdir()] + ["montage/montage.png"])
    )
    assert in_image == on_host  # the same bytes: the same code and libraries, in the image


# Pachyderm's montage spec is `cmd: [sh]` with a shell script in `stdin`; this one lists the
# datum's files with find and sort (the host's on the host, busybox's in the image) besides
# the montage, whose stdout is kept too.
MONTAGE_STDIN = [
    "set -e",
    "find /pfs/images /pfs/edges -type f | LC_ALL=C sort > /pfs/out/inputs.txt",
    "python3 montage.py > /pfs/out/montage.log",
]


def test_a_stdin_spec_in_an_image_matches_the_host(
    tmp_path: Path, image: str, pictures: Path
) -> None:
    # The montage's cross input over two plain repos (other pictures stand in for the edges),
    # so one datum is all that runs.
    inputs = {"images": pictures, "edges": generate(tmp_path / "edges", seed=7)}

    def montage(image: str | None) -> list[dict[str, Any]]:
        return [spec("montage", image, cmd=["sh"], stdin=MONTAGE_STDIN)]

    in_image = run(tmp_path / "image-home", inputs, montage(image), True)
    on_host = run(tmp_path / "host-home", inputs, montage(None), False)
    names = sorted(p.name for p in pictures.iterdir())
    assert sorted(in_image) == ["montage/inputs.txt", "montage/montage.log", "montage/montage.png"]
    assert in_image["montage/inputs.txt"].decode().split() == [
        f"/pfs/{repo}/{name}" for repo in ("edges", "images") for name in names
    ]
    assert in_image["montage/montage.log"].startswith(b"montage of 3 images (3 edge images)")
    assert in_image == on_host  # the montage, the file list and the log, byte for byte


def test_an_entrypoint_only_image_matches_the_host(
    tmp_path: Path, images_dir: Path, pictures: Path
) -> None:
    # The image's Entrypoint is the host's cmd; the spec in the image gives no cmd at all.
    argv = spec("edges", None)["transform"]["cmd"]
    entry = python_image(images_dir, "edges-entry", files=SCRIPTS, entrypoint=argv)
    in_spec = spec("edges", entry, cmd=None)
    assert "cmd" not in in_spec["transform"] and "stdin" not in in_spec["transform"]
    in_image = run(tmp_path / "image-home", {"images": pictures}, [in_spec], True)
    on_host = run(tmp_path / "host-home", {"images": pictures}, [spec("edges", None)], False)
    assert sorted(in_image) == sorted(f"edges/{p.name}" for p in pictures.iterdir())
    assert in_image == on_host  # the same edge images, byte for byte
