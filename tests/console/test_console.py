"""The web console (issue 16) in a real browser: Debian's Chromium, driven by Playwright,
against a real ``tusk up`` holding data the tests make.

Each page visited is saved as a screenshot under ``test-output/console/`` (not committed) for
a reviewer to look at. Without Chromium the tests are skipped on a workstation and fail in CI
(``CI=true``); ``./dev.sh`` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tusk
from gateway import Gateway, start_gateway

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
HOSTILE = '<img src=x onerror="window.__xss=1">'
CODE_SHA = "0123456789abcdef0123456789abcdef01234567"


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is missing: ./dev.sh installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("console") / "home", "--no-grpc")
    with tusk.Client(address=gw.api) as c:
        c.create_repo("images")
        c.put_file("images@master:/a.csv", b'name,size\ncat,3\n"dog, big",5\n')
        c.put_file("images@master:/notes.txt", b"plain words\n")
        count = {
            "pipeline": {"name": "count"},
            "input": {"pfs": {"repo": "images", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", 'for f in "$TUSK_PFS"/images/*; do '
                                  'wc -c < "$f" > "$TUSK_PFS/out/$(basename "$f").n"; done']},
        }  # fmt: skip
        origin = {"git": {"sha": CODE_SHA, "path": "pipelines/count.json"}}
        c.create_pipeline(count, origin=origin)
        c.wait_commit("count@master", timeout=60)
    yield gw
    gw.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # CSP bypassed: axe-core is injected as an inline script, and the markup test must show
    # that the pages escape on their own (the CSP header is checked on its own below).
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    context.close()
    assert errors == [], errors  # no script error on any page


AXE = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules" / "axe-core"


def shot(page: Any, name: str) -> None:
    """Save the page for a reviewer, and check it with axe-core for WCAG 2 A and AA problems
    (a missing label or name, too little contrast, a wrong role or a duplicate id)."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if not (AXE / "axe.min.js").exists():
        pytest.fail("axe-core is missing: ./dev.sh installs it into .venv/node")
    page.add_script_tag(path=str(AXE / "axe.min.js"))
    found = page.evaluate(
        """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})).violations
             .map((v) => v.id + ': ' + v.nodes.map((n) => n.target.join(' ')).join(', '))"""
    )
    assert found == [], f"{name}: {found}"


def title(page: Any, text: str | re.Pattern[str]) -> None:
    """Wait until the page shown is the one titled ``text``."""
    from playwright.sync_api import expect

    expect(page.locator("main h1").first).to_have_text(text, timeout=15_000)


def visible(locator: Any) -> None:
    from playwright.sync_api import expect

    expect(locator).to_be_visible(timeout=15_000)


def test_dag_pipeline_job_files_and_lineage(server: Gateway, page: Any) -> None:
    page.goto(server.api + "/")
    title(page, "Repos and pipelines")
    page.wait_for_selector(".graph canvas")  # the graph is drawn
    shot(page, "dag")
    # The keyboard's way through the drawing: Tab to it, arrows to a node, Enter to open it.
    page.focus(".graph")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        if "count" in page.locator(".graph-status").text_content():
            break
    assert re.search(r"\d of 2: count", page.locator(".graph-status").text_content())
    page.keyboard.press("Enter")
    title(page, "Pipeline count")
    page.go_back()
    title(page, "Repos and pipelines")
    page.get_by_role("link", name=re.compile(r"^count · running")).click()
    title(page, "Pipeline count")
    visible(page.get_by_text(f"git {CODE_SHA[:12]}"))  # the code each version ran
    shot(page, "pipeline")

    # A file, previewed: a CSV as a table of its first rows, quotes honoured.
    page.goto(server.api + "/#/repo/images")
    title(page, "Repo images")
    page.get_by_role("link", name="a.csv").click()
    page.wait_for_selector("table caption:text('First 2 rows')")
    cells = page.locator(".file-preview td").all_text_contents()
    assert cells == ["cat", "3", "dog, big", "5"]
    shot(page, "file-csv")

    # An output file's lineage: click through to its input file and to the code commit.
    page.goto(server.api + "/#/lineage/count/master/a.csv.n")
    title(page, re.compile(r"^Lineage of count@master"))
    page.wait_for_selector(".graph canvas")
    shot(page, "lineage")
    page.get_by_role("link", name=re.compile(r"^images:\/a\.csv")).click()
    title(page, "Repo images")
    visible(page.get_by_role("heading", name="File /a.csv"))
    page.go_back()
    page.get_by_role("link", name=f"code {CODE_SHA[:12]}").click()
    title(page, "Pipeline count")

    # Search by name and by a commit id; the commit page: provenance and changes.
    with tusk.Client(address=server.api) as c:
        head = c.inspect_commit("images@master").id
    page.fill("#q", head[:10])
    page.press("#q", "Enter")
    page.get_by_role("link", name=f"images@{head}").click()
    title(page, f"Commit images@{head[:12]}")
    page.wait_for_selector("td .change-added")
    assert "/notes.txt" in page.locator("main table").last.text_content()
    shot(page, "commit")

    # Not found: what was not found, said.
    page.goto(server.api + "/#/repo/nosuchrepo")
    title(page, "Not found")
    assert "repo nosuchrepo not found" in page.locator("main").text_content()
    page.goto(server.api + f"/#/commit/images/{'f' * 32}")
    title(page, "Not found")
    assert "not found" in page.locator("main .notice").text_content()

    # A phone's width: nothing wider than the screen (tables scroll inside themselves).
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(server.api + "/#/repo/images")
    title(page, "Repo images")
    assert page.evaluate("document.documentElement.scrollWidth") <= 392
    shot(page, "repo-phone")


def test_a_job_runs_live_and_a_failed_datum_shows_its_logs(server: Gateway, page: Any) -> None:
    with tusk.Client(address=server.api) as c:
        c.create_repo("slowin")
        c.put_file("slowin@master:/x", b"x")
        slow = {
            "pipeline": {"name": "slow"},
            "input": {"pfs": {"repo": "slowin", "glob": "/"}},
            "transform": {"cmd": ["sh", "-c", 'sleep 3; cp "$TUSK_PFS"/slowin/x "$TUSK_PFS/out/"']},
        }
        c.create_pipeline(slow)
        deadline = time.monotonic() + 30
        while not (jobs := c.list_jobs("slow")) and time.monotonic() < deadline:
            time.sleep(0.1)
        job = jobs[0].id
    page.goto(server.api + f"/#/job/slow/{job}")
    title(page, f"Job slow@{job[:12]}")
    page.evaluate("window.__stayed = true")  # gone if the page reloads
    page.wait_for_selector(".facts .badge:text('success')", timeout=30_000)
    assert page.evaluate("window.__stayed") is True  # it updated in place
    shot(page, "job")

    with tusk.Client(address=server.api) as c:
        broken = {
            "pipeline": {"name": "broken"},
            "input": {"pfs": {"repo": "slowin", "glob": "/"}},
            "transform": {"cmd": ["sh", "-c", "echo boom-on-stderr >&2; exit 3"]},
            "datum_tries": 1,
        }
        c.create_pipeline(broken)
        deadline = time.monotonic() + 30
        while not (jobs := c.list_jobs("broken")) and time.monotonic() < deadline:
            time.sleep(0.1)
        failed = c.wait_job(f"broken@{jobs[0].id}", timeout=60)
        assert failed.state == "failure"
    page.goto(server.api + "/#/pipeline/broken")
    # the jobs table's link (the facts name the last job too, once the pipeline has one)
    page.locator("section table").get_by_role("link", name=failed.id[:12]).click()
    page.wait_for_selector("#logs pre:has-text('boom-on-stderr')")  # opened by itself
    page.select_option("#datum-filter", "failed")
    assert "1 of 1 datums" in page.locator("main caption").first.text_content()
    visible(page.get_by_role("button", name="Run the pipeline again"))
    shot(page, "job-failed")


def test_markup_in_names_messages_and_logs_is_shown_not_run(server: Gateway, page: Any) -> None:
    with tusk.Client(address=server.api) as c:
        c.create_repo("hostile")
        with c.commit("hostile@master", description=HOSTILE) as commit:
            commit.put_file(f"/{HOSTILE}.csv", f"{HOSTILE},b\n1,2\n".encode())
        spec = {
            "pipeline": {"name": "shout"},
            "input": {"pfs": {"repo": "hostile", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", f"echo '{HOSTILE}'; "
                                  'cp "$TUSK_PFS"/hostile/* "$TUSK_PFS/out/"']},
        }  # fmt: skip
        c.create_pipeline(spec)
        c.wait_commit("shout@master", timeout=60)
        job = c.list_jobs("shout")[0].id
        head = c.inspect_commit("hostile@master").id
    page.goto(server.api + "/#/repo/hostile")
    title(page, "Repo hostile")
    page.wait_for_selector(f"td:has-text('{HOSTILE}')")
    page.get_by_role("link", name=f"{HOSTILE}.csv").click()
    page.wait_for_selector(f".file-preview th:has-text('{HOSTILE}')")
    page.goto(server.api + f"/#/commit/hostile/{head}")
    page.wait_for_selector(f"dd:has-text('{HOSTILE}')")
    page.goto(server.api + f"/#/job/shout/{job}")
    page.get_by_role("button", name="logs").first.click()
    page.wait_for_selector(f"#logs pre:has-text('{HOSTILE}')")
    shot(page, "hostile")
    assert page.evaluate("window.__xss") is None  # nothing ran
    assert page.locator("main img").count() == 0  # and no element was made from the text


def test_a_parquet_file_is_previewed(server: Gateway, page: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"name": ["cat", "dog", HOSTILE], "size": [3, 5, 8]})
    pq.write_table(table, tmp_path / "t.parquet")  # snappy, pyarrow's default
    with tusk.Client(address=server.api) as c:
        c.create_repo("tables")
        c.put_file("tables@master:/t.parquet", (tmp_path / "t.parquet").read_bytes())
    page.goto(server.api + "/#/repo/tables/master/t.parquet")
    visible(page.locator("caption", has_text="First 3 of 3 rows"))
    assert page.locator(".file-preview th").all_text_contents() == ["name", "size"]
    cells = page.locator(".file-preview td").all_text_contents()
    assert cells == ["cat", "3", "dog", "5", HOSTILE, "8"]
    shot(page, "file-parquet")


def test_a_big_file_is_not_previewed(server: Gateway, page: Any) -> None:
    with tusk.Client(address=server.api) as c:
        c.create_repo("big")
        c.put_file("big@master:/huge.txt", b"x" * (100 << 20))
    status = Path(f"/proc/{server.proc.pid}/status")
    Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # the peak from here on
    page.goto(server.api + "/#/repo/big/master/huge.txt")
    page.wait_for_selector("text=Too big to preview")
    link = page.get_by_role("link", name="Download")
    assert link.get_attribute("href") == "/api/v1/repos/big/commits/master/files/huge.txt"
    shot(page, "big-file")
    peak = int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    assert peak - rss < 30 * 1024, (peak, rss)  # KiB: nothing of the file was read


def test_sign_in_a_reader_and_csrf(browser: Any, tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "home", "--no-grpc")
    try:
        with tusk.Client(address=gw.api) as c:
            c.create_repo("images")
            c.put_file("images@master:/a.txt", b"a")
            root = c.auth_activate()
        with tusk.Client(address=gw.api, token=root) as c:
            _info, reader = c.create_token("user:reader")
            c.set_repo_roles("images", "user:reader", ["repoReader"])
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        page = context.new_page()
        page.goto(gw.api + "/#/repo/images")
        page.wait_for_url(re.compile(r"/console/login\.html"))  # no session: sign in first
        shot(page, "login")
        page.fill("#token", "tusk_0000000000000000_wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("#message:has-text('token')")
        page.fill("#token", reader)
        page.click("button[type=submit]")
        title(page, "Repo images")
        assert page.locator("#who").text_content().startswith("user:reader")
        assert page.get_by_role("button", name="Delete repo").is_hidden()  # a reader's page
        shot(page, "reader")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["tusk_session"]["httpOnly"] is True
        assert cookies["tusk_session"]["sameSite"] == "Strict"
        # A change with the session needs its CSRF token: forged or missing, refused.
        statuses = page.evaluate(
            """async () => {
              const csrf = document.cookie.match(/tusk_csrf=([^;]+)/)[1];
              const send = (h) => fetch('/api/v1/repos', {method: 'POST', headers: {
                'content-type': 'application/json', ...h}, body: JSON.stringify({name: 'mine'})});
              return [(await send({'x-csrf-token': 'forged'})).status, (await send({})).status,
                      (await send({'x-csrf-token': csrf})).status];
            }"""
        )
        assert statuses == [403, 403, 201]
        with tusk.Client(address=gw.api, token=root) as c:
            assert {r.name for r in c.list_repos()} == {"images", "mine"}
        # Sign out: the cookies go, and the next page asks to sign in again.
        page.goto(gw.api + "/console/login.html#logout")
        page.wait_for_selector("#message:has-text('Signed out')")
        assert "tusk_session" not in {c["name"] for c in context.cookies()}
        page.goto(gw.api + "/#/repo/images")
        page.wait_for_url(re.compile(r"/console/login\.html"))
        context.close()
        # The session cookie alone is no way in for another site's form: without the CSRF
        # header, a change is refused even with a valid session (checked without a browser).
        with httpx.Client(base_url=gw.api) as raw:
            r = raw.post("/api/v1/console/session", json={"token": reader})
            assert r.status_code == 201 and json.loads(r.text)["principal"] == "user:reader"
            r = raw.post("/api/v1/repos", json={"name": "forged"})
            assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    finally:
        gw.stop()


def test_tusk_console_serves_an_embedded_home(browser: Any, tmp_path: Path) -> None:
    """``tusk console``: the console of a home on 127.0.0.1, with its security headers."""
    import subprocess
    import sys

    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("local")
        c.put_file("local@master:/x.txt", b"x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "console", "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"web console on (http://127\.0\.0\.1:\d+)/", line)
        assert found, line
        url = found.group(1)
        r = httpx.get(url + "/")
        assert r.status_code == 200 and "<title>Tusk console</title>" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/#/repo/local")
        title(page, "Repo local")
        visible(page.get_by_role("link", name="x.txt"))
        context.close()
    finally:
        proc.terminate()
        proc.wait(30)
