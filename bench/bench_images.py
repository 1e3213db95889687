#!/usr/bin/env python3
"""Image executor: what running datums in an OCI image costs, next to running them on the host.

Everything runs in this process through the SDK (``tusk.Client(home)``, an embedded store in a
temporary ``TUSK_HOME``; ``Client.run_scheduler(once=True)``), on images built offline by
``tests/pps/imagekit.py`` (busybox FROM scratch; this machine's own Python with numpy and
Pillow, ~160 MB unpacked).

(a) Per-datum cost. 1,000 tiny files (``/fNNNN``, 16 bytes) in repo ``in``, one datum each
    (glob ``/*``), the step ``cp "$in" "$TUSK_PFS/out/"``, ``parallelism_spec: {constant: 2}``.
    Three pipelines a round, created anew each round (rotating which runs first):
    ``host``: no image, ``TUSK_EXECUTOR=host`` (the default sandbox: bubblewrap where it works);
    ``image``: the same spec with ``transform.image: <busybox ref>`` under the default executor;
    ``bare`` (a reference): ``TUSK_EXECUTOR=host`` and ``TUSK_SANDBOX=none``. A job is timed
    over its own wall time (``started_at`` to ``finished_at``); ms/datum is wall / N, and
    wall x parallelism / N, the cost of one datum on one worker, which the target uses.
(b) Start-up. A fresh home (fresh image cache); repo ``images`` with 4 small PNGs
    (examples/edges/generate.py); a pipeline on the python image whose Cmd is
    ``python3 /app/edges.py`` (no ``transform.cmd``). Timed from ``create_pipeline`` to the
    ``finished_at`` of the job's first datum: first pull (the scheduler copies the image into
    the cache with skopeo and unpacks it with umoci), then a second pipeline on the same image
    (cached), then two pipelines on two more python images that share its base layer, and the
    same step on the host (``TUSK_EXECUTOR=host``, no image) as the floor.
(d) A second image sharing a base layer. A fresh ``ImageCache``: ``resolve`` + ``rootfs`` of
    the python image ``edges``, then of ``montage``, which shares its ~160 MB base layer and
    differs in one small layer; each step timed. The second image's unpack is the row
    "second image sharing the base layer: unpack s" (``--shared-only`` runs this part alone).
(c) Disk. The image cache of (b)'s home (``<home>/images``) holding the three python images,
    against the sum of each image stored alone (a fresh ``ImageCache`` per image: ``resolve``
    + ``rootfs``, each step timed). Apparent sizes (``du -s --apparent-size``), each inode
    counted once.

It prints tables and one summary line per target; it exits 0 whether targets pass or not, and
non-zero only when a host-side step fails. When the image executor cannot run (not wired in),
the image rows say why and (c) falls back to ``ImageCache`` directly.

    .venv/bin/python bench/bench_images.py                        # 1,000 datums, 3 rounds
    .venv/bin/python bench/bench_images.py --datums 100 --rounds 1  # smoke run
    .venv/bin/python bench/bench_images.py --shared-only            # (d) alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tusk
from tusk.pps.executor import sandbox_mode
from tusk.pps.images import ImageCache
from tusk.pps.models import JobInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "pps"))
from imagekit import busybox_image, python_image  # noqa: E402

EDGES = REPO / "examples" / "edges"
PARALLELISM = 2
CMD = ["sh", "-c", 'cp "$in" "$TUSK_PFS/out/"']
KINDS = ("host", "image", "bare")
TARGET_OVERHEAD_MS = 10.0
MiB = 1 << 20


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextmanager
def executor_env(kind: str) -> Iterator[None]:
    """``host``: TUSK_EXECUTOR=host; ``bare``: the same without a sandbox; ``image``: the
    default executor (TUSK_EXECUTOR unset)."""
    saved = {k: os.environ.get(k) for k in ("TUSK_EXECUTOR", "TUSK_SANDBOX")}
    os.environ.pop("TUSK_EXECUTOR", None)
    if kind in ("host", "bare"):
        os.environ["TUSK_EXECUTOR"] = "host"
    if kind == "bare":
        os.environ["TUSK_SANDBOX"] = "none"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_job(c: tusk.Client, spec: dict[str, Any], kind: str, datums: int) -> JobInfo:
    """Create the pipeline and run its first job to the end under ``kind``'s executor."""
    name = spec["pipeline"]["name"]
    with executor_env(kind):
        c.create_pipeline(spec)
        c.run_scheduler(once=True)
    jobs = c.list_jobs(name)
    if not jobs:
        raise BenchError(f"{name}: no job was created")
    job = jobs[0]
    if job.state != "success" or job.processed != datums:
        failed = [d for d in c.list_datums(f"{name}@{job.id}") if d.state == "failed"]
        why = f"; first failed datum: {failed[0].error} {failed[0].stderr_tail.strip()}"
        raise BenchError(
            f"{name}: job {job.state} ({job.processed}/{datums} datums): {job.reason}"
            + (why if failed else "")
        )
    return job


def disk_use(root: Path) -> int:
    """Apparent size of everything below ``root`` (files, folders, symlinks), each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total


def remove(path: Path) -> None:
    """Remove a tree, folders without write permission included (umoci --rootless makes them)."""

    def fix(func: Any, name: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(name), 0o700)
        if os.path.isdir(name) and not os.path.islink(name):
            os.chmod(name, 0o700)
        func(name)

    shutil.rmtree(path, onerror=fix)


# -- (a) per-datum cost ------------------------------------------------------------------------


def part_a(work: Path, args: argparse.Namespace, busybox: str, report: dict[str, Any]) -> None:
    n = args.datums
    c = tusk.Client(work / "home-a")
    c.create_repo("in")
    c.put_files("in@master", [(f"/f{i:04d}", f"datum {i:09d}\n".encode()) for i in range(n)])
    walls: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: dict[str, str] = {}
    for r in range(args.rounds):
        order = KINDS[r % 3 :] + KINDS[: r % 3]
        for kind in order:
            if kind in errors:
                continue
            transform: dict[str, Any] = {"cmd": CMD}
            if kind == "image":
                transform["image"] = busybox
            spec = {
                "pipeline": {"name": f"{kind}{r}"},
                "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
                "transform": transform,
                "parallelism_spec": {"constant": PARALLELISM},
            }
            try:
                job = run_job(c, spec, kind, n)
            except Exception as exc:
                if kind != "image":
                    raise
                errors[kind] = f"{type(exc).__name__}: {exc}"
                log(f"(a) image executor did not run: {errors[kind]}")
                continue
            assert job.started_at is not None and job.finished_at is not None
            walls[kind].append(job.finished_at - job.started_at)
            log(f"(a) round {r + 1} {kind}: {walls[kind][-1]:.2f} s")
    c.close()
    report["a"] = {"datums": n, "parallelism": PARALLELISM, "walls": walls, "errors": errors}


def render_a(a: dict[str, Any]) -> list[str]:
    n, p = a["datums"], a["parallelism"]
    out = [
        f"\n(a) {n} datums of `cp`, parallelism {p}; ms/datum = wall / N, and wall x {p} / N "
        "(one worker)",
        "",
        "| executor | rounds (job wall, s) | median s | datums/s | ms/datum | "
        "ms/datum, one worker |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    names = {
        "host": "host (TUSK_EXECUTOR=host, default sandbox)",
        "image": "image (busybox, default executor)",
        "bare": "host, TUSK_SANDBOX=none (reference)",
    }
    for kind in KINDS:
        walls = a["walls"][kind]
        if not walls:
            out.append(f"| {names[kind]} | not run: {a['errors'].get(kind, '-')} | | | | |")
            continue
        med = statistics.median(walls)
        out.append(
            f"| {names[kind]} | {', '.join(f'{w:.2f}' for w in walls)} | {med:.2f} | "
            f"{n / med:.0f} | {med / n * 1000:.2f} | {med * p / n * 1000:.2f} |"
        )
    return out


def overhead_ms(a: dict[str, Any]) -> tuple[float, float] | None:
    """(image - host) ms per datum: wall / N, and on one worker."""
    if not a["walls"]["image"] or not a["walls"]["host"]:
        return None
    n, p = a["datums"], a["parallelism"]
    diff = statistics.median(a["walls"]["image"]) - statistics.median(a["walls"]["host"])
    return diff / n * 1000, diff * p / n * 1000


# -- (b) start-up and (c) disk -----------------------------------------------------------------


def first_datum_after(
    c: tusk.Client, spec: dict[str, Any], kind: str, datums: int
) -> dict[str, float]:
    """Seconds from create_pipeline to the first datum's end, and the job's own wall time."""
    start = time.time()
    job = run_job(c, spec, kind, datums)
    finished = [d.finished_at for d in c.list_datums(f"{job.pipeline}@{job.id}") if d.finished_at]
    assert job.started_at is not None and job.finished_at is not None and finished
    return {
        "first_datum_s": min(finished) - start,
        "job_wall_s": job.finished_at - job.started_at,
        "total_s": job.finished_at - start,
    }


def edges_spec(name: str, image: str | None) -> dict[str, Any]:
    transform: dict[str, Any] = (
        {"image": image} if image else {"cmd": ["python3", str(EDGES / "edges.py")]}
    )
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "images", "glob": "/*"}},
        "transform": transform,
        "parallelism_spec": {"constant": 1},
    }


def part_b(
    work: Path, args: argparse.Namespace, pythons: dict[str, str], report: dict[str, Any]
) -> Path | None:
    """The start-up rows; returns the home's image cache, or None if images did not run."""
    pngs = work / "pngs"
    subprocess.run(
        [sys.executable, EDGES / "generate.py", pngs, "--count", str(args.pngs), "--size", "96"],
        check=True,
        capture_output=True,
    )
    home = work / "home-b"
    c = tusk.Client(home)
    c.create_repo("images")
    c.put_files("images@master", [(f"/{p.name}", p.read_bytes()) for p in sorted(pngs.iterdir())])
    rows: dict[str, Any] = {}
    runs: list[tuple[str, str, str | None, str]] = [
        ("host", "edges on the host (TUSK_EXECUTOR=host, no image): floor", None, "host"),
        ("first", "first pull: fresh cache, python image `edges`", pythons["edges"], "image"),
        ("cached", "cached: a second pipeline on `edges`", pythons["edges"], "image"),
        ("base2", "image `montage`, its base layer cached", pythons["montage"], "image"),
        ("base3", "image `generate`, its base layer cached", pythons["generate"], "image"),
    ]
    error = ""
    for key, label, image, kind in runs:
        if error and kind == "image":
            continue
        try:
            row = first_datum_after(c, edges_spec(f"edges-{key}", image), kind, args.pngs)
        except Exception as exc:
            if kind != "image":
                raise
            error = f"{type(exc).__name__}: {exc}"
            log(f"(b) image executor did not run: {error}")
            continue
        rows[key] = {"label": label, **row}
        log(f"(b) {label}: first datum after {row['first_datum_s']:.2f} s")
    c.close()
    report["b"] = {"pngs": args.pngs, "rows": rows, "error": error}
    return None if error else home / "images"


def part_c(
    work: Path, pythons: dict[str, str], cache_root: Path | None, report: dict[str, Any]
) -> None:
    via = "the executor's cache (<home>/images after (b))"
    if cache_root is None:  # the executor did not run images: the same cache, filled directly
        via = "ImageCache directly (the image executor did not run)"
        cache = ImageCache(work / "shared-cache")
        for ref in pythons.values():
            cache.rootfs(cache.resolve(ref))
        cache_root = cache.root
    shared = disk_use(cache_root)
    parts = {p.name: disk_use(p) for p in sorted(cache_root.iterdir()) if p.is_dir()}
    alone: dict[str, int] = {}
    steps: dict[str, tuple[float, float]] = {}
    for tag, ref in pythons.items():
        cache = ImageCache(work / f"alone-{tag}")
        start = time.perf_counter()
        info = cache.resolve(ref)
        copied = time.perf_counter()
        cache.rootfs(info)
        steps[tag] = (copied - start, time.perf_counter() - copied)
        alone[tag] = disk_use(cache.root)
        remove(cache.root)
    report["c"] = {"via": via, "shared": shared, "parts": parts, "alone": alone, "steps": steps}


def part_d(work: Path, pythons: dict[str, str], report: dict[str, Any]) -> None:
    cache = ImageCache(work / "shared-base")
    steps: dict[str, tuple[float, float]] = {}
    for tag in ("edges", "montage"):
        start = time.perf_counter()
        info = cache.resolve(pythons[tag])
        copied = time.perf_counter()
        cache.rootfs(info)
        steps[tag] = (copied - start, time.perf_counter() - copied)
        log(f"(d) {tag}: resolve {steps[tag][0]:.2f} s, unpack {steps[tag][1]:.2f} s")
    report["d"] = {"steps": steps}
    remove(cache.root)


def render_d(d: dict[str, Any]) -> list[str]:
    (first_copy, first_unpack), (second_copy, second_unpack) = d["steps"].values()
    return [
        "\n(d) two python images sharing one base layer, one fresh ImageCache",
        "",
        "| step | resolve (skopeo copy) s | unpack s |",
        "| --- | --- | --- |",
        f"| first image (`edges`) | {first_copy:.2f} | {first_unpack:.2f} |",
        f"| second image sharing the base layer (`montage`) | {second_copy:.2f} | "
        f"{second_unpack:.2f} |",
        f"\nsecond image sharing the base layer: unpack {second_unpack:.2f} s",
    ]


def render_b(b: dict[str, Any]) -> list[str]:
    out = [
        f"\n(b) start-up: {b['pngs']} PNGs, one datum each, parallelism 1; seconds from "
        "create_pipeline",
        "",
        "| pipeline | to the first datum's end | job wall | to the job's end |",
        "| --- | --- | --- | --- |",
    ]
    for row in b["rows"].values():
        out.append(
            f"| {row['label']} | {row['first_datum_s']:.2f} | {row['job_wall_s']:.2f} | "
            f"{row['total_s']:.2f} |"
        )
    if b["error"]:
        out.append(f"| image rows | not run: {b['error']} | | |")
    return out


def render_c(c: dict[str, Any]) -> list[str]:
    total = sum(c["alone"].values())
    out = [
        f"\n(c) image cache disk use, three python images sharing one base layer; {c['via']}",
        "",
        "| what | MiB (apparent, inodes once) | resolve (skopeo copy) s | rootfs (unpack) s |",
        "| --- | --- | --- | --- |",
        f"| the shared cache | {c['shared'] / MiB:.1f} | | |",
    ]
    out += [f"| - {name}/ on its own | {size / MiB:.1f} | | |" for name, size in c["parts"].items()]
    for tag, size in c["alone"].items():
        copy_s, unpack_s = c["steps"][tag]
        out.append(f"| `{tag}` stored alone | {size / MiB:.1f} | {copy_s:.2f} | {unpack_s:.2f} |")
    out.append(f"| sum stored alone | {total / MiB:.1f} | | |")
    out.append(f"| shared / sum alone | {c['shared'] / total:.3f} | | |")
    return out


def summary(report: dict[str, Any]) -> list[str]:
    out = ["\nTargets:"]
    over = overhead_ms(report["a"])
    if over is None:
        out.append(
            f"(a) image - host per datum <= {TARGET_OVERHEAD_MS:g} ms: NOT RUN "
            f"({report['a']['errors'].get('image', 'no host run')})"
        )
    else:
        verdict = "PASS" if over[1] <= TARGET_OVERHEAD_MS else "FAIL"
        out.append(
            f"(a) image - host per datum (one worker): {over[1]:+.2f} ms "
            f"({over[0]:+.2f} ms of wall per datum) <= {TARGET_OVERHEAD_MS:g} ms: {verdict}"
        )
    rows = report["b"]["rows"]
    if "first" in rows and "cached" in rows:
        first, cached, host = (rows[k]["first_datum_s"] for k in ("first", "cached", "host"))
        out.append(
            f"(b) start to first datum, python image: first pull {first:.2f} s, cached "
            f"{cached:.2f} s (host floor {host:.2f} s): reported"
        )
    else:
        out.append(f"(b) start-up with the python image: NOT RUN ({report['b']['error']})")
    c = report["c"]
    total = sum(c["alone"].values())
    out.append(
        f"(c) image cache, three python images: {c['shared'] / MiB:.0f} MiB vs "
        f"{total / MiB:.0f} MiB stored apart = {c['shared'] / total:.3f}: reported"
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datums", type=int, default=1000, help="tiny datums of (a)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (a), median kept")
    ap.add_argument("--pngs", type=int, default=4, help="input images (datums) of (b)")
    ap.add_argument("--workdir", type=Path, help="default: a fresh temporary folder")
    ap.add_argument("--keep", action="store_true", help="leave the work folder in place")
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--shared-only", action="store_true", help="run (d) only")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tusk-bench-images-"))
    work.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{platform.python_version()} on {platform.platform()}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}; sandbox {sandbox_mode(None)}; HEAD {head[:60]}"
    )
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        builds: dict[str, float] = {}
        images = work / "images"
        start = time.perf_counter()
        busybox = busybox_image(images, tag="busybox")
        builds["busybox"] = time.perf_counter() - start
        pythons: dict[str, str] = {}
        for tag, extra in (
            ("edges", {}),
            ("montage", {"/app/montage.py": EDGES / "montage.py"}),
            ("generate", {"/app/generate.py": EDGES / "generate.py"}),
        )[: 2 if args.shared_only else 3]:
            files = {"/app/edges.py": EDGES / "edges.py", **extra}
            start = time.perf_counter()
            pythons[tag] = python_image(
                images, tag=tag, files=files, cmd=["python3", "/app/edges.py"]
            )
            builds[f"python `{tag}`"] = time.perf_counter() - start
        report["builds"] = builds
        log("built " + ", ".join(f"{k} {v:.2f} s" for k, v in builds.items()))
        part_d(work, pythons, report)
        if not args.shared_only:
            part_a(work, args, busybox, report)
            cache = part_b(work, args, pythons, report)
            part_c(work, pythons, cache, report)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            remove(work)
    lines = ["\nImage builds (tests/pps/imagekit.py):"]
    lines += [f"  {k}: {v:.2f} s" for k, v in report["builds"].items()]
    if not args.shared_only:
        lines += render_a(report["a"]) + render_b(report["b"]) + render_c(report["c"])
    lines += render_d(report["d"])
    if not args.shared_only:
        lines += summary(report)
    print("\n".join(lines))
    print(f"load average after {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
