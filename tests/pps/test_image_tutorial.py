"""Pachyderm's beginner tutorial (edges + montage) in an image, as Pachyderm runs it.

The image is this machine's Python with NumPy and Pillow (``imagekit.python_image``) and the
tutorial's two scripts in ``/app``, its WorkingDir: the code lives in the image. The specs are
``examples/edges``'s, unchanged but for ``transform.image``; the outputs must be the bytes the
host executor makes from the same specs without an image. Skips here without skopeo, umoci,
busybox-static or bubblewrap; fails in CI (CI=true).
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
READY = bool(shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox"))
pytestmark = pytest.mark.skipif(
    not (READY and bwrap_works()) and os.environ.get("CI") != "true",
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)


def spec(name: str, image: str | None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EDGES / f"{name}.yaml").read_text())
    if image is not None:
        data["transform"]["image"] = image
    return data


def run_tutorial(home: Path, pictures: Path, image: str | None) -> dict[str, bytes]:
    """Both pipelines over ``pictures``; every output file of edges and montage."""
    with tusk.Client(home) as c:
        c.create_repo("images")
        c.put_dir("images@master:/", pictures)
        # On the host the scripts are found in the spec's folder (working_dir, as apply does).
        where = {} if image else {"working_dir": str(EDGES)}
        for name in ("edges", "montage"):
            data = spec(name, image)
            data["transform"].update(where)
            c.create_pipeline(data)
        c.run_scheduler(once=True, executor=None if image else "host")
        jobs = {j.pipeline: j for j in c.list_jobs()}
        for job in jobs.values():
            assert job.state == "success", f"{job.pipeline}: {job.reason}"
        if image:
            assert all(j.image_digest for j in jobs.values())
        out = {}
        for repo in ("edges", "montage"):
            for f in c.glob_files(f"{repo}@master:/**"):
                if f.type == "file":
                    out[f"{repo}{f.path}"] = c.get_file(f"{repo}@master:{f.path}")
        return out


def test_edges_and_montage_in_an_image_match_the_host(tmp_path: Path) -> None:
    if not READY:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    pictures = tmp_path / "pictures"
    subprocess.run(
        [sys.executable, str(EDGES / "generate.py"), str(pictures), "--count", "3"],
        check=True,
        capture_output=True,
    )
    image = python_image(
        tmp_path / "img",
        "tutorial",
        files={"/app/edges.py": EDGES / "edges.py", "/app/montage.py": EDGES / "montage.py"},
    )
    in_image = run_tutorial(tmp_path / "image-home", pictures, image)
    on_host = run_tutorial(tmp_path / "host-home", pictures, None)
    assert (
        sorted(in_image)
        == sorted(on_host)
        == sorted([f"edges/{p.name}" for p in pictures.iterdir()] + ["montage/montage.png"])
    )
    assert in_image == on_host  # the same bytes: the same code and libraries, in the image
