#!/usr/bin/env python3
"""The cost of auth per request: the REST API with auth off against auth on, in one run.

* Each round starts ``tusk serve --port 0`` (a separate process, 127.0.0.1 only) on a fresh
  home, twice: first with auth off, then on another fresh home with auth on (``POST
  /api/v1/auth/activate``; the root token creates the repo, a token for ``user:bench`` and
  gives that user ``repoReader`` on the repo). Both homes get the same repo ``bench`` with the
  same generated 4 KiB file. ``--repeat`` rounds alternate off, on, off, on, ... to spread the
  noise of the shared 2-vCPU machine over both modes.
* Against each server: (a) one client doing ``--requests`` sequential ``GET
  /api/v1/repos/bench`` (inspect repo) over one keep-alive ``httpx.Client``: requests/s;
  (b) ``--clients`` threads, each with its own ``httpx.Client``, each doing
  ``--per-client`` requests (started together, cut off after ``--max-seconds``): latency
  p50/p99 and total requests/s. With auth on, every request carries the user's token;
  every answer must be 200 (and a request without a token must be 401).
* Then the ratios auth on / auth off (medians over the rounds; target for requests/s:
  >= 0.90), the cost of one ``AuthService.authorize`` in-process on a SQLite home (timeit),
  and, for the choice of hash, one argon2 verify (argon2-cffi's default ``PasswordHasher``,
  installed by the script into a throwaway venv in the temp dir, as Tusk does not depend on
  it) and one ``hashlib.scrypt(n=2**14, r=8, p=1)``.

    .venv/bin/python bench/bench_auth.py [--requests 2000] [--clients 50] [--per-client 40]
        [--repeat 3] [--max-seconds 60] [--skip-argon2] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

import httpx

from servers import tusk_serve

REPO = "bench"
USER = "user:bench"
FILE_SIZE = 4096
CHECK_TIMEOUT = 30.0


def make_data(seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(FILE_SIZE)


def expect(resp: httpx.Response, status: int) -> dict[str, Any]:
    if resp.status_code != status:
        raise SystemExit(
            f"{resp.request.method} {resp.request.url.path}: {resp.status_code} "
            f"(wanted {status}): {resp.text[:300]}"
        )
    return resp.json() if resp.content else {}


def setup(address: str, data: bytes, auth: bool) -> dict[str, str]:
    """The repo with its file (and with auth on: the user's token); the request headers."""
    with httpx.Client(base_url=f"{address}/api/v1", timeout=CHECK_TIMEOUT) as c:
        admin: dict[str, str] = {}
        if auth:
            root = expect(c.post("/auth/activate"), 201)["token"]
            admin = {"Authorization": f"Bearer {root}"}
        expect(c.post("/repos", json={"name": REPO}, headers=admin), 201)
        put = c.put(f"/repos/{REPO}/commits/master/files/data.bin", content=data, headers=admin)
        expect(put, 200)
        if not auth:
            return {}
        body = {"principal": USER}
        token = expect(c.post("/auth/tokens", json=body, headers=admin), 201)["token"]
        roles = {"principal": USER, "roles": ["repoReader"]}
        expect(c.put(f"/auth/repos/{REPO}/roles", json=roles, headers=admin), 200)
        headers = {"Authorization": f"Bearer {token}"}
        expect(c.get(f"/repos/{REPO}"), 401)  # auth really is on
        info = expect(c.get(f"/repos/{REPO}", headers=headers), 200)
        if info.get("name") != REPO:
            raise SystemExit(f"inspect repo answered {info}")
        return headers


def sequential(address: str, headers: dict[str, str], n: int) -> dict[str, float]:
    url = f"/api/v1/repos/{REPO}"
    with httpx.Client(base_url=address, headers=headers, timeout=CHECK_TIMEOUT) as c:
        for _ in range(min(100, n)):  # warm up: the connection, the server's caches
            expect(c.get(url), 200)
        start = time.perf_counter()
        for _ in range(n):
            r = c.get(url)
            if r.status_code != 200:
                expect(r, 200)
        elapsed = time.perf_counter() - start
    return {"requests": n, "seconds": elapsed, "rps": n / elapsed}


def concurrent(
    address: str, headers: dict[str, str], clients: int, per_client: int, max_seconds: float
) -> dict[str, Any]:
    url = f"/api/v1/repos/{REPO}"
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(k: int) -> None:
        with httpx.Client(base_url=address, headers=headers, timeout=CHECK_TIMEOUT) as c:
            try:
                expect(c.get(url), 200)  # connect before the clock starts
            except BaseException as exc:  # a benchmark reports failures instead of dying
                errors.append(f"{type(exc).__name__}: {exc}")
            barrier.wait()
            mine = latencies[k]
            try:
                for _ in range(per_client):
                    if time.perf_counter() > stop_at[0]:
                        break
                    t = time.perf_counter()
                    r = c.get(url)
                    done = time.perf_counter()
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        break
                    mine.append(done - t)
            except BaseException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    barrier.wait()
    start = time.perf_counter()
    stop_at[0] = start + max_seconds
    for t in threads:
        t.join(max_seconds + 2 * CHECK_TIMEOUT)
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"concurrent load failed: {errors[0]} ({len(errors)} errors)")
    flat = sorted(x for lat in latencies for x in lat)
    if not flat:
        raise SystemExit("concurrent load made no request")
    return {
        "requests": len(flat),
        "planned": clients * per_client,
        "seconds": elapsed,
        "rps": len(flat) / elapsed,
        "p50_ms": 1000 * percentile(flat, 50),
        "p99_ms": 1000 * percentile(flat, 99),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(work: Path, name: str, auth: bool, data: bytes, env: dict[str, str], args: Any):
    home = work / f"home-{name}"
    with tusk_serve(home, env) as (address, pid):
        headers = setup(address, data, auth)
        cpu0 = cpu_seconds(pid)
        seq = sequential(address, headers, args.requests)
        cpu1 = cpu_seconds(pid)
        con = concurrent(address, headers, args.clients, args.per_client, args.max_seconds)
        cpu2 = cpu_seconds(pid)
    seq["server_cpu_ms_per_request"] = 1000 * (cpu1 - cpu0) / seq["requests"]
    con["server_cpu_ms_per_request"] = 1000 * (cpu2 - cpu1) / con["requests"]
    shutil.rmtree(home, ignore_errors=True)
    return {"name": name, "auth": auth, "sequential": seq, "concurrent": con}


# In-process costs


def authorize_cost(work: Path, number: int) -> dict[str, float]:
    """One ``AuthService.authorize`` for inspect_repo on a SQLite home, off and on (timeit)."""
    from tusk.auth.service import ROOT, AuthService, Caller
    from tusk.server import Services

    services = Services.open(work / "home-inproc")
    try:
        services.pfs.create_repo(REPO)
        auth = AuthService(services.pfs.meta)

        def best(fn: Any) -> float:
            return min(timeit.repeat(fn, number=number, repeat=5)) / number

        out = {"off": best(lambda: auth.authorize("rest", "inspect_repo", None, repo=REPO))}
        auth.activate()
        root = Caller(ROOT, cluster_roles=frozenset({"clusterAdmin"}))
        _info, token = auth.create_token(root, USER)
        auth.set_roles(root, "repo", REPO, USER, ["repoReader"])
        caller = auth.authorize("rest", "inspect_repo", token, repo=REPO)
        assert caller.principal == USER, caller
        out["on"] = best(lambda: auth.authorize("rest", "inspect_repo", token, repo=REPO))
        with services.pfs.meta.read() as tx:
            settings = tx.auth_settings()
        secret = token.rsplit("_", 1)[1]
        out["hmac"] = best(lambda: auth._digest(settings, secret))
        return out
    finally:
        services.close()


ARGON2_TIMER = """
import json, timeit, argon2
ph = argon2.PasswordHasher()
h = ph.hash("correct horse battery staple")
t = min(timeit.repeat(lambda: ph.verify(h, "correct horse battery staple"), number=5, repeat=3))
print(json.dumps({"version": argon2.__version__, "seconds": t / 5,
                  "params": [ph.time_cost, ph.memory_cost, ph.parallelism]}))
"""


def argon2_cost(work: Path) -> dict[str, Any]:
    """One argon2 verify with argon2-cffi's defaults, in a throwaway venv (or why not)."""
    venv = work / "argon2-venv"
    py = venv / "bin" / "python"
    try:
        subprocess.run(
            ["python3", "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "argon2-cffi"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        out = subprocess.run(
            [str(py), "-c", ARGON2_TIMER], check=True, capture_output=True, text=True, timeout=120
        )
    except (subprocess.SubprocessError, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        text = err.decode(errors="replace") if isinstance(err, bytes) else err
        return {"error": f"{type(exc).__name__}: {text.strip()[-300:] or exc}"}
    return json.loads(out.stdout)


def scrypt_cost() -> float:
    salt = os.urandom(16)

    def run() -> bytes:
        return hashlib.scrypt(b"correct horse battery staple", salt=salt, n=2**14, r=8, p=1)

    return min(timeit.repeat(run, number=5, repeat=3)) / 5


# Report


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="sequential requests per server")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (threads)")
    ap.add_argument("--per-client", type=int, default=40, help="requests per concurrent client")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (off, on)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="cut-off of the load")
    ap.add_argument("--skip-argon2", action="store_true", help="no venv, no argon2 number")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tusk-bench-auth-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_SANDBOX"] = "none"
    load_before = os.getloadavg()
    started = time.monotonic()
    data = make_data()
    runs: list[dict[str, Any]] = []
    try:
        for i in range(args.repeat):
            for auth in (False, True):
                name = f"{'on' if auth else 'off'}-{i + 1}"
                print(f"  round {i + 1}: auth {'on' if auth else 'off'} ...", file=sys.stderr)
                runs.append(one_round(work, name, auth, data, env, args))
        print("  in-process costs ...", file=sys.stderr)
        inproc = authorize_cost(work, 2000)
        scrypt = scrypt_cost()
        argon2 = {"error": "skipped (--skip-argon2)"} if args.skip_argon2 else argon2_cost(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    total = time.monotonic() - started

    print(
        f"\nAuth off vs on: GET /api/v1/repos/{REPO} against tusk serve on 127.0.0.1 "
        f"({os.cpu_count()} CPUs; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {total:.0f} s)"
    )
    print(
        f"  sequential: {args.requests} requests, one keep-alive client; concurrent: "
        f"{args.clients} clients x {args.per_client} requests"
    )
    print(
        f"  {'run':<6} {'seq req/s':>10} {'cpu ms/req':>10} {'conc req/s':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} {'done':>6}"
    )
    for r in runs:
        s, c = r["sequential"], r["concurrent"]
        print(
            f"  {r['name']:<6} {s['rps']:>10.0f} {s['server_cpu_ms_per_request']:>10.2f} "
            f"{c['rps']:>11.0f} {c['p50_ms']:>8.1f} {c['p99_ms']:>8.1f} "
            f"{c['server_cpu_ms_per_request']:>10.2f} {c['requests']:>6}"
        )

    def med(auth: bool, part: str, key: str) -> float:
        return statistics.median(r[part][key] for r in runs if r["auth"] == auth)

    summary = {
        key: {"off": med(False, part, k), "on": med(True, part, k)}
        for key, part, k in (
            ("sequential req/s", "sequential", "rps"),
            ("concurrent req/s", "concurrent", "rps"),
            ("concurrent p50 ms", "concurrent", "p50_ms"),
            ("concurrent p99 ms", "concurrent", "p99_ms"),
            ("server CPU ms/request (seq)", "sequential", "server_cpu_ms_per_request"),
        )
    }
    print(f"\nMedians over {args.repeat} round(s): auth on / auth off")
    for key, v in summary.items():
        v["ratio"] = v["on"] / v["off"]
        print(f"  {key:<29} off {v['off']:>8.2f}   on {v['on']:>8.2f}   on/off {v['ratio']:.3f}")
    pairs = [
        (runs[i + 1]["sequential"]["rps"] / runs[i]["sequential"]["rps"],
         runs[i + 1]["concurrent"]["rps"] / runs[i]["concurrent"]["rps"])
        for i in range(0, len(runs) - 1, 2)
    ]  # fmt: skip
    print(
        "  per round, on/off req/s (sequential / concurrent): "
        + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in pairs)
    )

    print("\nOne token check in-process (SQLite home, best of 5 x 2000)")
    print(f"  AuthService.authorize, auth off (settings read)   {fmt_us(inproc['off'])}")
    print(f"  AuthService.authorize, auth on (token + roles)    {fmt_us(inproc['on'])}")
    print(f"  of which HMAC-SHA256 of the secret                {fmt_us(inproc['hmac'])}")
    print("\nA slow password hash instead, per request")
    if "error" in argon2:
        print(f"  argon2: not measured: {argon2['error']}")
    else:
        t, m, p = argon2["params"]
        print(
            f"  argon2-cffi {argon2['version']} PasswordHasher().verify "
            f"(t={t}, m={m} KiB, p={p})  {fmt_us(argon2['seconds'])}"
        )
    print(f"  hashlib.scrypt(n=2**14, r=8, p=1)                 {fmt_us(scrypt)}")

    print("\nTarget")
    ratio = summary["sequential req/s"]["ratio"], summary["concurrent req/s"]["ratio"]
    for what, value in zip(("sequential", "concurrent"), ratio, strict=True):
        verdict = "PASS" if value >= 0.9 else "FAIL"
        print(f"  {verdict}  {what} req/s with auth on >= 90% of auth off: {value:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "runs": runs,
                    "summary": summary,
                    "authorize": inproc,
                    "argon2": argon2,
                    "scrypt": scrypt,
                    "load": [load_before, load_after],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
