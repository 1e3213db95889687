"""Resource settings on one machine: limits stop datums, requests serialise them, GPUs are
assigned, Kubernetes-only settings are shown as recorded (tusk.pps.resources)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tusk
from tusk.cli import render
from tusk.pps import resources
from tusk.pps.executor import bwrap_works

ENGINES = ("sqlite", "postgresql")

SANDBOXES = [
    "none",
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(not bwrap_works(), reason="bubblewrap does not work")
    ),
]

# Allocates as many MiB as the datum's file says, then writes /pfs/out/<file>.
ALLOCATE = (
    "import os; name = os.path.basename(os.environ['in']); "
    "n = int(open(os.environ['in']).read()); b = bytearray(n << 20); "
    "open(os.environ['TUSK_PFS'] + '/out/' + name, 'w').write(str(len(b)))"
)


def spec(cmd: list[str], *, name: str = "p", **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
        "transform": {"cmd": cmd},
        "datum_tries": 1,
        **extra,
    }


@pytest.fixture(autouse=True)
def fresh_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees the machine as its environment says (TUSK_GPUS) and a fresh counter."""
    monkeypatch.setenv("TUSK_GPUS", "")
    resources.machine.cache_clear()
    resources.admission.cache_clear()
    yield
    resources.machine.cache_clear()
    resources.admission.cache_clear()


def make_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: str) -> tusk.Client:
    monkeypatch.setenv("TUSK_SANDBOX", sandbox)
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    return c


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> Iterator[tusk.Client]:
    c = make_client(tmp_path, monkeypatch, "none")
    yield c
    c.close()


@pytest.fixture(params=SANDBOXES)
def sandboxed(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> Iterator[tusk.Client]:
    c = make_client(tmp_path, monkeypatch, request.param)
    yield c
    c.close()


def run(c: tusk.Client) -> None:
    c.run_scheduler(once=True)


def test_memory_limit_stops_a_datum_allocating_more(sandboxed: tusk.Client) -> None:
    c = sandboxed
    c.put_file("in@master:/n", b"16")
    limits: dict[str, Any] = {"resource_limits": {"memory": "64Mi"}}
    c.create_pipeline(spec(["python3", "-c", ALLOCATE], **limits))
    run(c)
    assert c.list_jobs("p")[0].state == "success"  # 16 MiB fits under 64Mi
    assert c.get_file("p@master:/n") == str(16 << 20).encode()

    c.put_file("in@master:/n", b"200")
    run(c)
    job = c.list_jobs("p")[0]
    assert job.state == "failure"
    assert "exceeded resource_limits.memory 64Mi (RLIMIT_DATA)" in job.reason
    [datum] = c.list_datums(f"p@{job.id}")
    assert datum.state == "failed"
    assert datum.error.startswith("exceeded resource_limits.memory 64Mi (RLIMIT_DATA): python3")
    assert "MemoryError" in datum.stderr_tail


def test_cpu_limit_caps_cpu_time_of_a_busy_loop(sandboxed: tusk.Client) -> None:
    c = sandboxed
    c.put_file("in@master:/x", b"x")
    # 0.25 cores for at most 4 s: 1 CPU second, well before the 4 s timeout.
    extra: dict[str, Any] = {"resource_limits": {"cpu": "250m"}, "datum_timeout": "4s"}
    c.create_pipeline(spec(["python3", "-c", "while True: pass"], **extra))
    started = time.monotonic()
    run(c)
    assert time.monotonic() - started < 4
    job = c.list_jobs("p")[0]
    assert job.state == "failure"
    [datum] = c.list_datums(f"p@{job.id}")
    assert datum.error.startswith(
        "exceeded resource_limits.cpu 0.25 (RLIMIT_CPU: 1 CPU second = cpu x datum_timeout 4s)"
    )
    assert "timed out" not in datum.error


@pytest.mark.parametrize("kind", ["cpu", "memory"])
def test_requests_serialise_datums_on_this_machine(client: tusk.Client, kind: str) -> None:
    machine = resources.machine()
    # Each datum asks for more than half of the machine: two can never run at once.
    request: dict[str, Any] = (
        {"cpu": machine.cpus} if kind == "cpu" else {"memory": str(machine.memory * 6 // 10)}
    )
    client.put_files("in@master", [(f"/f{i}", b"x") for i in range(4)])
    cmd = 'sleep 0.2; cp "$in" "$TUSK_PFS/out/"'
    client.create_pipeline(
        spec(["sh", "-c", cmd], parallelism_spec={"constant": 2}, resource_requests=request)
    )
    run(client)
    job = client.list_jobs("p")[0]
    assert job.state == "success", job.reason
    datums = sorted(client.list_datums(f"p@{job.id}"), key=lambda d: d.started_at or 0)
    assert len(datums) == 4
    for before, after in itertools.pairwise(datums):
        assert before.finished_at is not None and after.started_at is not None
        assert after.started_at >= before.finished_at, "two datums ran at once"
    counter = resources.admission()
    assert (counter.cpu, counter.memory, counter.running) == (0, 0, 0)


def test_a_request_larger_than_the_machine_fails_the_job(client: tusk.Client) -> None:
    cpus = resources.machine().cpus
    client.put_file("in@master:/x", b"x")
    client.create_pipeline(spec(["true"], resource_requests={"cpu": cpus * 2 + 1}))
    run(client)
    job = client.list_jobs("p")[0]
    assert job.state == "failure"
    assert job.reason == (
        f"resource_requests.cpu {cpus * 2 + 1:g} asks for {cpus * 2 + 1:g} CPUs; "
        f"this machine has {cpus:g}; no datum can run"
    )
    assert all(d.started_at is None for d in client.list_datums(f"p@{job.id}"))


def test_a_gpu_job_fails_clearly_without_gpus(client: tusk.Client) -> None:
    client.put_file("in@master:/x", b"x")
    gpu = {"gpu": {"type": "nvidia.com/gpu", "number": 1}}
    client.create_pipeline(spec(["true"], resourceLimits=gpu))
    run(client)
    job = client.list_jobs("p")[0]
    assert job.state == "failure"
    assert (
        job.reason == "resource_limits.gpu asks for 1 GPU; this machine has none; no datum can run"
    )


def test_gpus_are_assigned_through_cuda_visible_devices(
    client: tusk.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_GPUS", "0,1")  # as nvidia-smi -L would list them
    resources.machine.cache_clear()
    resources.admission.cache_clear()
    client.put_files("in@master", [(f"/f{i}", b"x") for i in range(4)])
    cmd = 'echo "$CUDA_VISIBLE_DEVICES" > "$TUSK_PFS/out/$(basename "$in")"'
    client.create_pipeline(
        spec(
            ["sh", "-c", cmd],
            parallelism_spec={"constant": 2},
            resource_limits={"gpu": {"type": "nvidia.com/gpu", "number": 1}},
        )
    )
    run(client)
    assert client.list_jobs("p")[0].state == "success"
    seen = {client.get_file(f"p@master:/f{i}").strip() for i in range(4)}
    assert seen <= {b"0", b"1"} and seen
    assert sorted(resources.admission().free_gpus) == ["0", "1"]  # all given back


def test_inspect_pipeline_says_what_applies(
    client: tusk.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client.create_pipeline(
        spec(
            ["true"],
            resourceLimits={"memory": "512Mi", "cpu": 1, "disk": "10Gi"},
            resource_requests={"cpu": 0.5, "memory": "128Mi"},
            sidecarResourceLimits={"cpu": 1},
            scheduling_spec={"node_selector": {"gpu": "yes"}},
            pod_patch='[{"op": "add", "path": "/foo", "value": 1}]',
            tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            transform={"cmd": ["true"], "memory_volume": True},
        )
    )
    info = client.inspect_pipeline("p")
    cpus = resources.machine().cpus
    assert info.resources == [
        "memory limit 512Mi: enforced (RLIMIT_DATA on each datum process)",
        "cpu limit 1: not enforced (a rate needs cgroup v2 cpu.max, not used here); set "
        "datum_timeout to cap CPU time at cpu x datum_timeout (RLIMIT_CPU)",
        "disk limit 10Gi: recorded, not applied here",
        f"cpu request 0.5: admission (datums running at once request at most this machine's "
        f"{cpus:g} CPU{'s' if cpus != 1 else ''})",
        "memory request 128Mi: admission (datums running at once request at most this "
        f"machine's {resources.human_bytes(resources.machine().memory)})",
        "sidecar_resource_limits: recorded, not applied here",
        "scheduling_spec: recorded, not applied here",
        "pod_patch: recorded, not applied here",
        "tolerations: recorded, not applied here",
        "transform.memory_volume: recorded, not applied here",
    ]
    render.pipeline_fields(info)
    out = capsys.readouterr().out
    assert re.search(r"^Resources: +memory limit 512Mi: enforced \(RLIMIT_DATA", out, re.M)
    assert re.search(r"^ +tolerations: recorded, not applied here$", out, re.M)

    client.update_pipeline(spec(["true"], resource_limits={"cpu": 0.5}, datum_timeout="1m"))
    assert client.inspect_pipeline("p").resources == [
        "cpu limit 0.5: CPU time capped at 30s per datum process (RLIMIT_CPU = cpu x "
        "datum_timeout 60s); the rate is not enforced (needs cgroup v2 cpu.max, not used here)",
        f"cpu request 0.5 (the limit, as requests): admission (datums running at once request "
        f"at most this machine's {cpus:g} CPU{'s' if cpus != 1 else ''})",
    ]
    client.update_pipeline(spec(["true"]))
    assert client.inspect_pipeline("p").resources == []


# The parts on their own


def test_admission_waits_for_room_and_hands_out_distinct_gpus() -> None:
    m = resources.Machine(cpus=2, memory=1 << 30, gpus=("0", "1"))
    counter = resources.Admission(m)
    big = resources.Request(cpu=1.5, gpus=1)
    first = counter.acquire(big)
    assert first is not None and first.env == {"CUDA_VISIBLE_DEVICES": "0"}
    got: list[resources.Grant | None] = []
    waiter = threading.Thread(target=lambda: got.append(counter.acquire(big)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got  # 1.5 + 1.5 CPUs > 2: it waits
    counter.release(first)
    waiter.join(5)
    assert not waiter.is_alive()
    assert got[0] is not None and got[0].env == {"CUDA_VISIBLE_DEVICES": "1"}
    stop = threading.Event()
    stop.set()
    assert counter.acquire(big, stop) is None  # a stopped job stops waiting
    assert counter.acquire(resources.Request()) is not None  # no request: never waits
    assert resources.unfit(resources.Request(memory=2 << 30, sources={"memory": "m 2Gi"}), m) == (
        "m 2Gi asks for more memory than this machine has (1Gi)"
    )


def test_limits_without_prlimit_use_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = resources.Limits("64Mi", 64 << 20, 0.5, 1, 2.0)
    monkeypatch.setattr(resources.shutil, "which", lambda name: None)
    prefix = limits.prefix()
    assert prefix[0] == "/bin/sh"
    r = subprocess.run(
        [*prefix, sys.executable, "-c", "b = bytearray(200 << 20)"], capture_output=True
    )
    assert r.returncode == 1 and b"MemoryError" in r.stderr
    assert limits.explain(r.returncode, r.stderr.decode(), sandboxed=False) == (
        "exceeded resource_limits.memory 64Mi (RLIMIT_DATA)"
    )
    r = subprocess.run([*prefix, sys.executable, "-c", "while True: pass"], timeout=30)
    assert r.returncode < 0
    assert (limits.explain(r.returncode, "", sandboxed=False) or "").startswith(
        "exceeded resource_limits.cpu 0.5 (RLIMIT_CPU: 1 CPU second"
    )
