"""The example pipelines run end to end (examples/*/run.sh) and make what they say they make.

Each script runs with this Python's bin folder first on PATH (so ``tusk`` and ``python3`` are
this environment's) on a fresh ``TUSK_HOME``; the results are then read through the SDK.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tusk

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TILE = 96  # examples/edges/montage.py


def run_example(name: str, home: Path, sandbox: str | None) -> str:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["TUSK_HOME"] = str(home)
    env.pop("TUSK_SANDBOX", None)
    if sandbox is not None:
        env["TUSK_SANDBOX"] = sandbox
    r = subprocess.run(
        ["bash", str(EXAMPLES / name / "run.sh")],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{name}/run.sh exited {r.returncode}:\n{out[-4000:]}"
    return out


def test_edges_example(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    home = tmp_path / "home"
    out = run_example("edges", home, sandbox=None)  # the default: bubblewrap where it works
    assert "processed 1 new datum and skipped the 6 unchanged ones" in out
    with tusk.Client(home) as c:
        edges = sorted(f.path for f in c.list_files("edges@master:/"))
        assert edges == [f"/shapes-{i}.png" for i in range(7)]
        montage = image.open(io.BytesIO(c.get_file("montage@master:/montage.png")))
        montage.load()
        assert montage.format == "PNG" and montage.size == (2 * TILE, 7 * TILE)
        # The right half (edges) is mostly black with some bright edge pixels.
        right = montage.convert("L").crop((TILE, 0, 2 * TILE, 7 * TILE))
        histogram = right.histogram()
        assert sum(histogram[:32]) > 0.5 * sum(histogram) and sum(histogram[128:]) > 0
        newest, first = c.list_jobs("edges")
        assert (first.state, first.processed, first.skipped) == ("success", 6, 0)
        assert (newest.state, newest.processed, newest.skipped) == ("success", 1, 6)
        states = sorted(d.state for d in c.list_datums(f"edges@{newest.id}"))
        assert states == ["skipped"] * 6 + ["success"]
        # The montage of the second change read all 7 images and 7 edge images.
        last = c.list_jobs("montage")[0]
        assert last.id == newest.id and (last.state, last.processed) == ("success", 1)
        lineage = c.lineage("montage@master:/montage.png")
        assert lineage.pipeline == "montage" and lineage.job == newest.id
        assert sorted({s.repo for s in lineage.inputs}) == ["edges", "images"]
        assert len(lineage.inputs) == 14


def test_ml_example(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    home = tmp_path / "home"
    run_example("ml", home, sandbox="none")
    with tusk.Client(home) as c:
        report = json.loads(c.get_file("report@master:/metrics.json"))
        assert 0.0 <= report["accuracy"] <= 1.0 and report["accuracy"] > 0.7
        assert report["rows"] == 6 * 80 and len(report["days"]) == 6
        day3 = json.loads(c.get_file("evaluate@master:/day-03/metrics.json"))
        assert 0.0 <= day3["accuracy"] <= 1.0 and day3["rows"] == 80
        model = json.loads(c.get_file("train@master:/model.json"))
        assert model["train_rows"] == 6 * 320 and len(model["coef"]) == 4

        def runs(pipeline: str) -> list[tuple[int, int]]:
            jobs = c.list_jobs(pipeline)
            assert all(j.state == "success" for j in jobs)
            return [(j.processed, j.skipped) for j in reversed(jobs)]  # oldest first

        # First run, then relabelled test rows of day 3, then a new day (see the README).
        assert runs("split") == [(5, 0), (1, 4), (1, 5)]
        assert runs("train") == [(1, 0), (0, 1), (1, 0)]
        assert runs("evaluate") == [(5, 0), (1, 4), (6, 0)]
        assert runs("report") == [(1, 0), (1, 0), (1, 0)]
