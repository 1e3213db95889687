"""The web console at scale (issue 16): how long the DAG page of 200 pipelines and the page of
a commit with 100,000 changed files take to render in headless Chromium.

One ``tusk serve`` (no jobs run: the pipelines' input has no data, so the DAG is all there
is) on a fresh home; Playwright drives Debian's Chromium. Each time runs from the navigation
to the page's content being drawn (the graph's canvas and the pipelines table; the first page
of the commit's changes), median of ``--runs`` loads. Target: each ≤ 2 s. There is no peer
to run beside it (Pachyderm's console needs its Kubernetes deployment), so this prints
times, not ratios.

Run: ``.venv/bin/python bench/bench_console.py [--pipelines 200] [--files 100000] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tusk
from servers import tusk_serve

TARGET = 2.0


def _load(page: object, url: str, selector: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        page.goto("about:blank")  # type: ignore[attr-defined]
        start = time.perf_counter()
        page.goto(url)  # type: ignore[attr-defined]
        page.wait_for_selector(selector, timeout=60_000)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipelines", type=int, default=200)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_SYNC"] = "none"
    with (
        tempfile.TemporaryDirectory(prefix="bench-console-") as tmp,
        tusk_serve(Path(tmp) / "home", env) as (address, _pid),
    ):
        t = time.perf_counter()
        with tusk.Client(address=address) as c:
            c.create_repo("raw")
            # Chains of ten: raw -> s<i>-0 -> s<i>-1 -> ... (a DAG of depth 10).
            for i in range(args.pipelines):
                chain, step = divmod(i, 10)
                source = "raw" if step == 0 else f"s{chain}-{step - 1}"
                c.create_pipeline({
                        "pipeline": {"name": f"s{chain}-{step}"},
                        "input": {"pfs": {"repo": source, "glob": "/*"}},
                        "transform": {"cmd": ["true"]},
                    })  # fmt: skip
            made_dag = time.perf_counter() - t
            t = time.perf_counter()
            c.create_repo("wide")
            c.put_files(
                "wide@master:/",
                ((f"/d{i // 1000:03d}/f{i:06d}.txt", b"%d\n" % i) for i in range(args.files)),
            )
            head = c.inspect_commit("wide@master").id
            made_files = time.perf_counter() - t
        with sync_playwright() as p:
            browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=["--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking"],
                )  # fmt: skip
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            dag = _load(page, address + "/", ".graph canvas >> nth=0", args.runs)
            rows = page.locator("section table tbody tr").count()
            commit = _load(page, f"{address}/#/commit/wide/{head}", "td .change-added", args.runs)
            shown = page.locator("td .change-added").count()
            browser.close()
    print(f"made {args.pipelines} pipelines in {made_dag:.1f} s, a commit of {args.files} files "
          f"in {made_files:.1f} s")  # fmt: skip
    for name, times in (
        (f"DAG page, {args.pipelines} pipelines ({rows} table rows)", dag),
        (f"commit page, {args.files} changed files ({shown} shown, paged)", commit),
    ):
        med = statistics.median(times)
        verdict = "PASS" if med <= TARGET else "FAIL"
        runs = ", ".join(f"{x:.2f}" for x in times)
        print(f"{name}: median {med:.2f} s (runs: {runs}) target <= {TARGET:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
