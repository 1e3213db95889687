"""The offline image builders of imagekit.py, checked with the real tools that read them.

skopeo inspects what the builders wrote, umoci unpacks it rootless and bubblewrap runs it as
``/`` with nothing of the host visible: the python image must import numpy and Pillow and run
the edges example on a PNG. Without skopeo, umoci, busybox-static or a working bubblewrap
these tests skip here, and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imagekit import busybox_image, layer_digests, python_image

from tusk.pps.executor import bwrap_works
from tusk.pps.images import host_architecture

CI = os.environ.get("CI") == "true"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "edges"
HAVE_TOOLS = all(shutil.which(t) for t in ("skopeo", "umoci", "ldd")) and os.path.exists(
    "/bin/busybox"
)
needs_tools = pytest.mark.skipif(
    not HAVE_TOOLS and not CI, reason="skopeo, umoci or busybox-static is not installed"
)
needs_bwrap = pytest.mark.skipif(
    not (HAVE_TOOLS and bwrap_works()) and not CI, reason="bubblewrap does not work here"
)


@dataclass
class Built:
    busybox: str
    edges: str  # python image with /app/edges.py
    montage: str  # python image with /app/montage.py, in another layout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if not HAVE_TOOLS:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")
    base = tmp_path_factory.mktemp("imagekit")
    return Built(
        busybox_image(base / "bb", env=["FOO=bar"], workdir="/work", cmd=["echo", "hi"]),
        python_image(base / "one", files={"/app/edges.py": EXAMPLES / "edges.py"}),
        python_image(base / "two", tag="m", files={"/app/montage.py": EXAMPLES / "montage.py"}),
    )


def _inspect(ref: str, *extra: str) -> dict[str, Any]:
    r = subprocess.run(["skopeo", "inspect", *extra, ref], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


@needs_tools
def test_skopeo_reads_both_images(built: Built) -> None:
    for ref in (built.busybox, built.edges, built.montage):
        info = _inspect(ref)
        assert (info["Architecture"], info["Os"]) == (host_architecture(), "linux")
        assert "PATH=/usr/local/bin:/usr/bin:/bin" in info["Env"]
    config = _inspect(built.busybox, "--config")["config"]
    assert config == {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "FOO=bar"],
        "Cmd": ["echo", "hi"],
        "WorkingDir": "/work",
    }
    assert _inspect(built.edges, "--config")["config"]["WorkingDir"] == "/app"


@needs_tools
def test_python_images_share_the_base_layer(built: Built) -> None:
    edges, montage = layer_digests(built.edges), layer_digests(built.montage)
    assert len(edges) == len(montage) == 2
    assert edges[0] == montage[0]  # the base, copied between layouts as one blob
    assert edges[1] != montage[1]  # the files


@needs_bwrap
def test_python_image_runs_numpy_and_edges(built: Built, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pil = pytest.importorskip("PIL")
    from PIL import Image

    layout, _, tag = built.edges.removeprefix("oci:").rpartition(":")
    root = tmp_path / "rootfs"
    r = subprocess.run(
        ["umoci", "raw", "unpack", "--rootless", "--image", f"{layout}:{tag}", str(root)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[8:24, 8:24] = 255
    Image.fromarray(pixels, "L").save(inp / "square.png")
    sandbox = [
        "bwrap", "--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--tmpfs", "/pfs", "--ro-bind", str(inp), "/pfs/images",
        "--bind", str(out), "/pfs/out", "--unshare-all", "--die-with-parent", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--chdir", "/app", "--",
    ]  # fmt: skip
    script = "import numpy, PIL, sys; print(numpy.__version__, PIL.__version__, sys.prefix)"
    r = subprocess.run([*sandbox, "python3", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [np.__version__, pil.__version__, sys.base_prefix]
    r = subprocess.run([*sandbox, "sh", "-c", "python3 edges.py"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "square.png -> square.png\n"
    with Image.open(out / "square.png") as img:
        edges = np.asarray(img)
    assert edges.shape == (32, 32) and edges.max() == 255 and edges[16, 16] == 0
