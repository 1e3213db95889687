"""The Dask executor: the example pipelines on a LocalCluster with 2 worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tusk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    import distributed  # in the test extra: a missing Dask fails here, never skips

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as c:
        yield c.scheduler_address.replace("tcp://", "dask://")


def test_edges_example_on_dask(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    images = tmp_path / "images"
    subprocess.run(
        [sys.executable, str(EXAMPLES / "edges" / "generate.py"), str(images), "--count", "4"],
        check=True,
        capture_output=True,
    )
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("images")
        c.put_dir("images@master:/", images)
        c.create_pipelines_from(str(EXAMPLES / "edges" / "edges.yaml"))
        c.create_pipelines_from(str(EXAMPLES / "edges" / "montage.yaml"))
        c.run_scheduler(once=True, executor=cluster)
        jobs = {j.pipeline: j for j in c.list_jobs()}
        assert jobs["edges"].state == "success" and jobs["edges"].processed == 4
        assert jobs["montage"].state == "success"
        names = sorted(f.path for f in c.list_files("edges@master:/"))
        assert names == sorted(f"/{p.name}" for p in images.iterdir())
        png = c.get_file("montage@master:/montage.png")
        assert png.startswith(b"\x89PNG")
        # Incremental on Dask too: one new image, one datum.
        subprocess.run(
            [sys.executable, str(EXAMPLES / "edges" / "generate.py"), str(tmp_path / "more"),
             "--start", "4", "--count", "1"],
            check=True, capture_output=True,
        )  # fmt: skip
        c.put_dir("images@master:/", tmp_path / "more")
        c.run_scheduler(once=True, executor=cluster)
        edges = c.list_jobs("edges")[0]
        assert (edges.processed, edges.skipped) == (1, 4)
        assert c.fsck().ok


def test_unreachable_dask_scheduler(tmp_path: Path) -> None:
    with tusk.Client(tmp_path / "home") as c, pytest.raises(tusk.errors.Unavailable):
        c.run_scheduler(once=True, executor="dask://127.0.0.1:1")


def test_an_image_pipeline_on_dask_fetches_the_pinned_image_where_it_runs(
    cluster: str, tmp_path: Path
) -> None:
    import shutil

    from imagekit import busybox_image

    if not (shutil.which("skopeo") and shutil.which("umoci")):
        pytest.fail("skopeo and umoci are needed (./dev.sh installs them)")
    ref = busybox_image(tmp_path / "img", "v1", env=["MARK=in-image"])
    show = 'echo "$MARK $(cat /pfs/in/*)" > /pfs/out/$(ls /pfs/in)'
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        c.put_files("in@master", [("/a", b"1"), ("/b", b"2")])
        c.create_pipeline(
            {
                "pipeline": {"name": "show"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {"image": ref, "cmd": ["sh", "-c", show]},
            }
        )
        c.run_scheduler(once=True, executor=cluster)
        first = c.list_jobs("show")[0]
        assert first.state == "success", first.reason
        assert c.get_file("show@master:/a") == b"in-image 1\n"
        # A worker whose cache lacks the image fetches exactly the pinned digest again.
        shutil.rmtree(c.home / "images")
        c.put_file("in@master:/c", b"3")
        c.run_scheduler(once=True, executor=cluster)
        second = c.list_jobs("show")[0]
        assert second.state == "success" and second.image_digest == first.image_digest
        assert c.get_file("show@master:/c") == b"in-image 3\n"


def test_a_spout_runs_beside_a_dask_scheduler(cluster: str, tmp_path: Path) -> None:
    import threading
    import time

    code = (
        "import os, tusk; c = tusk.Client(); r = os.environ['TUSK_OUTPUT_REPO']\n"
        "for i in range(3): c.put_file(f'{r}@master:/n{i}', b'x')\n"
        "import time; time.sleep(60)"
    )
    with tusk.Client(tmp_path / "home") as c:
        c.create_pipeline(
            {"pipeline": {"name": "feed"}, "spout": {},
             "transform": {"cmd": [sys.executable, "-c", code]}}
        )  # fmt: skip
        stop = threading.Event()
        kwargs = {"stop": stop, "executor": cluster}
        loop = threading.Thread(target=c.run_scheduler, kwargs=kwargs, daemon=True)
        loop.start()
        try:
            deadline = time.monotonic() + 30
            while len(c.list_commits("feed@master")) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(c.list_commits("feed@master")) == 3
            assert c.inspect_pipeline("feed").process_state == "running"
        finally:
            stop.set()
            loop.join(30)


def test_datum_batching_on_dask(cluster: str, tmp_path: Path) -> None:
    """One process per batch on the Dask worker, calling tusk next datum there."""
    loop = (
        "import os, pathlib, sys\n"
        "from tusk.sdk.batching import next_datum\n"
        "print('start', file=sys.stderr, flush=True)\n"
        "pfs = pathlib.Path(os.environ['TUSK_PFS'])\n"
        "while True:\n"
        "    next_datum()\n"
        "    for f in (pfs / 'in').iterdir():\n"
        "        (pfs / 'out' / f.name).write_text(f.read_text().upper())\n"
    )
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        c.put_files("in@master", [(f"/f{i:02d}", b"v%d" % i) for i in range(20)])
        c.create_pipeline(
            {
                "pipeline": {"name": "up"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {"cmd": [sys.executable, "-c", loop], "datum_batching": True},
            }
        )
        c.run_scheduler(once=True, executor=cluster)
        job = c.list_jobs("up")[0]
        assert job.state == "success", job.reason
        assert c.get_file("up@master:/f07") == b"V7"
        assert len(c.list_files("up@master:/")) == 20
        starts = [x for x in c.logs("up", job.id) if x.stream == "stderr" and x.line == "start"]
        assert 1 <= len(starts) <= 10  # a process per batch, not per datum
