"""Pachyderm's resource settings on one machine: limits, requests, GPUs, Kubernetes-only fields.

What each setting does here (``tusk inspect pipeline`` says the same per pipeline):

* ``resource_limits.memory`` is enforced on every datum process with ``RLIMIT_DATA`` (set
  by ``prlimit`` before the command, or bubblewrap, is executed; children inherit it).
  ``RLIMIT_DATA`` counts the memory a process can write to (heap, anonymous mappings, stacks
  of threads), not address space it only reserves, so runtimes that reserve large ranges up
  front (the JVM, Go, CUDA, glibc's per-thread arenas) keep working, where ``RLIMIT_AS``
  would refuse them far below the limit. It is a per-process cap: a datum that forks gets
  the limit in each process, and shared memory (``/dev/shm``, ``MAP_SHARED``) is not counted.
  An allocation past it fails (``MemoryError``, ``ENOMEM``); a datum that fails so is
  reported as ``exceeded resource_limits.memory 64Mi (RLIMIT_DATA)``.
* ``resource_limits.cpu`` is a *rate* (cores) in Pachyderm. A rate needs the cgroup v2
  ``cpu.max`` controller, which Tusk does not use (on this kind of machine there is no
  delegated cgroup v2 with the cpu or memory controller), so the rate is not enforced. With
  ``datum_timeout`` set, a datum that keeps under ``cpu`` cores for at most ``datum_timeout``
  seconds cannot use more than ``cpu x datum_timeout`` CPU seconds, so that total is set as
  ``RLIMIT_CPU`` (per process; ``SIGXCPU`` at it, ``SIGKILL`` a second later). A datum ended
  so is reported as ``exceeded resource_limits.cpu 0.25 (RLIMIT_CPU: 1 CPU second = cpu x
  datum_timeout 4s)``.
* Requests (``resource_requests.cpu``/``memory``; unset, they default to the limits, as in
  Kubernetes) are admission rules: the datums running at once in this process may not
  request more CPUs or memory than the machine has (its usable CPUs, ``MemTotal``). A worker
  waits for room before it claims datums, so a pipeline asking for 2 CPUs runs one datum at a
  time on a 2-core machine. A datum that could never fit (asks for more than the machine has)
  fails its job before any datum runs, with the reason: Kubernetes would leave the pod
  Pending for ever, which on one machine only hides the problem.
* ``gpu: {type, number}`` (in limits or requests) takes that many free GPUs for the datum
  and names them in ``CUDA_VISIBLE_DEVICES``; GPUs are found with ``nvidia-smi -L``
  (``$TUSK_GPUS``, a comma-separated list of GPU indices, overrides it, ``""`` for none). A job
  asking for more GPUs than the machine has fails with the reason.
* ``resource_limits.disk``/``resource_requests.disk``, the sidecar resources,
  ``scheduling_spec``, ``pod_spec``, ``pod_patch``, ``tolerations`` and
  ``transform.memory_volume`` only mean something on Kubernetes: recorded, not applied here.

Requests and GPUs are counted per process (one ``tusk up``); with the Dask executor the
datums run on Dask workers, where the limits apply but requests and GPUs are not counted.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from tusk.values import frozen

NOT_APPLIED = "recorded, not applied here"

_MEMORY_SIGNS = (
    "MemoryError",
    "Cannot allocate memory",
    "std::bad_alloc",
    "out of memory",
    "Out of memory",
    "memory exhausted",
    "failed to allocate",
    "OutOfMemoryError",
)


def human_bytes(n: float) -> str:
    """1073741824 -> '1Gi'; 1610612736 -> '1.5Gi'."""
    for unit, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def _cpus(n: float) -> str:
    return f"{n:g} CPU" + ("" if n == 1 else "s")


# The machine


@frozen
class Machine:
    cpus: float
    memory: int  # bytes
    gpus: tuple[str, ...]  # indices (or UUIDs) for CUDA_VISIBLE_DEVICES


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _machine_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def discover_gpus() -> tuple[str, ...]:
    """GPU indices from ``$TUSK_GPUS`` if set, else from ``nvidia-smi -L``; () if none."""
    env = os.environ.get("TUSK_GPUS")
    if env is not None:
        return tuple(g.strip() for g in env.split(",") if g.strip())
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if out.returncode != 0:
        return ()
    found = []
    for line in out.stdout.splitlines():  # "GPU 0: NVIDIA A100 (UUID: GPU-...)"
        head = line.split(":", 1)[0].split()
        if len(head) == 2 and head[0] == "GPU" and head[1].isdigit():
            found.append(head[1])
    return tuple(found)


@functools.cache
def machine() -> Machine:
    """This machine's CPUs, memory and GPUs (looked up once per process)."""
    return Machine(float(_machine_cpus()), _machine_memory(), discover_gpus())


# Requests and admission


@frozen
class Request:
    """What one running datum takes from the machine, and which spec field said so."""

    cpu: float = 0.0
    memory: int = 0
    gpus: int = 0
    gpu_type: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def empty(self) -> bool:
        return not (self.cpu or self.memory or self.gpus)


def request_of(spec: Any) -> Request:
    """The admission request of a pipeline's datum: ``resource_requests``, each unset value
    taken from ``resource_limits`` (as Kubernetes does); GPUs from whichever names more."""
    req, lim = spec.resource_requests, spec.resource_limits
    sources: dict[str, str] = {}
    cpu = 0.0
    memory = 0
    if req is not None and req.cpu is not None:
        cpu, sources["cpu"] = req.cpu, f"resource_requests.cpu {req.cpu:g}"
    elif lim is not None and lim.cpu is not None:
        cpu, sources["cpu"] = lim.cpu, f"resource_limits.cpu {lim.cpu:g}"
    if req is not None and req.memory is not None:
        memory, sources["memory"] = req.memory_bytes or 0, f"resource_requests.memory {req.memory}"
    elif lim is not None and lim.memory is not None:
        memory, sources["memory"] = lim.memory_bytes or 0, f"resource_limits.memory {lim.memory}"
    gpus, gpu_type = 0, ""
    for name, res in (("resource_limits", lim), ("resource_requests", req)):
        if res is not None and res.gpu is not None and res.gpu.number > gpus:
            gpus, gpu_type = res.gpu.number, res.gpu.type
            sources["gpu"] = f"{name}.gpu"
    return Request(cpu, memory, gpus, gpu_type, sources)


def unfit(request: Request, m: Machine | None = None) -> str | None:
    """Why a datum with ``request`` can never run on this machine; None if it can."""
    m = m or machine()
    if request.cpu > m.cpus:
        return f"{request.sources['cpu']} asks for {_cpus(request.cpu)}; this machine has " + (
            f"{m.cpus:g}"
        )
    if request.memory > m.memory:
        return (
            f"{request.sources['memory']} asks for more memory than this machine has "
            f"({human_bytes(m.memory)})"
        )
    if request.gpus:
        what = f"{request.sources['gpu']} asks for {request.gpus} GPU" + (
            "s" if request.gpus > 1 else ""
        )
        if request.gpu_type and "nvidia" not in request.gpu_type.lower():
            return f"{what} of type {request.gpu_type}; Tusk assigns NVIDIA GPUs only"
        if not m.gpus:
            return f"{what}; this machine has none"
        if request.gpus > len(m.gpus):
            return f"{what}; this machine has {len(m.gpus)}"
    return None


@dataclass
class Grant:
    """Room taken for one running datum; ``env`` goes into the datum's environment."""

    request: Request
    gpus: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)} if self.request.gpus else {}


class Admission:
    """Counts what running datums requested; :meth:`acquire` waits until a request fits."""

    def __init__(self, m: Machine) -> None:
        self.machine = m
        self.cpu = 0.0
        self.memory = 0
        self.free_gpus = list(m.gpus)
        self.running = 0
        self._cond = threading.Condition()

    def _fits(self, r: Request) -> bool:
        if self.running == 0:  # alone on the machine: whatever fits the machine runs
            return len(self.free_gpus) >= r.gpus
        return (
            self.cpu + r.cpu <= self.machine.cpus + 1e-9
            and self.memory + r.memory <= self.machine.memory
            and len(self.free_gpus) >= r.gpus
        )

    def acquire(self, r: Request, stop: threading.Event | None = None) -> Grant | None:
        """Wait until ``r`` fits, take it; None if ``stop`` is set first."""
        if r.empty:
            return Grant(r)
        with self._cond:
            while not self._fits(r):
                if stop is not None and stop.is_set():
                    return None
                self._cond.wait(0.2)
            self.cpu += r.cpu
            self.memory += r.memory
            self.running += 1
            gpus = tuple(self.free_gpus[: r.gpus])
            del self.free_gpus[: r.gpus]
            return Grant(r, gpus)

    def release(self, grant: Grant) -> None:
        if grant.request.empty:
            return
        with self._cond:
            self.cpu = max(0.0, self.cpu - grant.request.cpu)
            self.memory = max(0, self.memory - grant.request.memory)
            self.running -= 1
            self.free_gpus.extend(grant.gpus)
            self._cond.notify_all()


@functools.cache
def admission() -> Admission:
    """The one admission counter of this process (this machine, as far as it knows)."""
    return Admission(machine())


# Limits


@frozen
class Limits:
    """The limits put on each process of a datum (plain data: it travels to Dask workers)."""

    memory: str | None = None  # as written in the spec
    memory_bytes: int | None = None
    cpu: float | None = None
    cpu_seconds: int | None = None  # RLIMIT_CPU soft limit
    timeout: float | None = None  # the datum_timeout it came from

    def prefix(self) -> list[str]:
        """The command that sets these limits and then executes the rest of the line."""
        exe = shutil.which("prlimit")
        if exe is not None:
            args = [exe]
            if self.memory_bytes is not None:
                args.append(f"--data={self.memory_bytes}:{self.memory_bytes}")
            if self.cpu_seconds is not None:
                args.append(f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 1}")
            return [*args, "--"]
        # No util-linux: the shell's ulimit (in KiB for -d) does the same.
        script = []
        if self.memory_bytes is not None:
            kib = max(1, self.memory_bytes // 1024)
            script.append(f"ulimit -S -d {kib} && ulimit -H -d {kib}")  # soft first: soft <= hard
        if self.cpu_seconds is not None:
            script.append(f"ulimit -S -t {self.cpu_seconds} && ulimit -H -t {self.cpu_seconds + 1}")
        script.append('exec "$@"')
        return ["/bin/sh", "-c", " && ".join(script), "tusk-limits"]

    def explain(self, exit_code: int | None, stderr_tail: str, sandboxed: bool) -> str | None:
        """Which limit a failed process ran into, judged from how it ended; None if none."""
        if exit_code is None or exit_code == 0:
            return None
        sig = -exit_code if exit_code < 0 else None
        if sig is None and sandboxed and exit_code > 128:
            sig = exit_code - 128  # bubblewrap exits with 128 + the signal of its child
        if self.cpu_seconds is not None and sig in (signal.SIGXCPU, signal.SIGKILL):
            cap = f"{self.cpu_seconds} CPU second" + ("" if self.cpu_seconds == 1 else "s")
            text = (
                f"exceeded resource_limits.cpu {self.cpu:g} (RLIMIT_CPU: {cap} = cpu x "
                f"datum_timeout {self.timeout:g}s)"
            )
            if sig == signal.SIGKILL:
                text += " or ran out of memory (killed by SIGKILL)"
            return text
        if self.memory_bytes is not None and any(s in stderr_tail for s in _MEMORY_SIGNS):
            return f"exceeded resource_limits.memory {self.memory} (RLIMIT_DATA)"
        return None


def limits_of(spec: Any) -> Limits | None:
    """The limits to enforce on a pipeline's datums; None when there are none."""
    lim = spec.resource_limits
    if lim is None:
        return None
    cpu_seconds = None
    if lim.cpu is not None and spec.datum_timeout is not None:
        cpu_seconds = max(1, math.ceil(lim.cpu * spec.datum_timeout))
    if lim.memory is None and cpu_seconds is None:
        return None
    return Limits(lim.memory, lim.memory_bytes, lim.cpu, cpu_seconds, spec.datum_timeout)


# What `tusk inspect pipeline` says


def describe(spec: Any, m: Machine | None = None) -> list[str]:
    """One line per resource setting of a pipeline: its value and what applies it here."""
    m = m or machine()
    lines: list[str] = []
    lim, req = spec.resource_limits, spec.resource_requests
    limits = limits_of(spec)
    if lim is not None:
        if lim.memory is not None:
            lines.append(f"memory limit {lim.memory}: enforced (RLIMIT_DATA on each datum process)")
        if lim.cpu is not None:
            if limits is not None and limits.cpu_seconds is not None:
                lines.append(
                    f"cpu limit {lim.cpu:g}: CPU time capped at {limits.cpu_seconds}s per "
                    f"datum process (RLIMIT_CPU = cpu x datum_timeout "
                    f"{spec.datum_timeout:g}s); the rate is not enforced (needs cgroup v2 "
                    "cpu.max, not used here)"
                )
            else:
                lines.append(
                    f"cpu limit {lim.cpu:g}: not enforced (a rate needs cgroup v2 cpu.max, "
                    "not used here); set datum_timeout to cap CPU time at cpu x "
                    "datum_timeout (RLIMIT_CPU)"
                )
        if lim.disk is not None:
            lines.append(f"disk limit {lim.disk}: {NOT_APPLIED}")
    request = request_of(spec)
    if request.cpu:
        via = "" if req is not None and req.cpu is not None else " (the limit, as requests)"
        lines.append(
            f"cpu request {request.cpu:g}{via}: admission (datums running at once request "
            f"at most this machine's {_cpus(m.cpus)})"
        )
    if request.memory:
        via = "" if req is not None and req.memory is not None else " (the limit, as requests)"
        memory = (req.memory if req is not None and req.memory else lim.memory) or ""
        lines.append(
            f"memory request {memory}{via}: admission (datums running at once request at "
            f"most this machine's {human_bytes(m.memory)})"
        )
    if req is not None and req.disk is not None:
        lines.append(f"disk request {req.disk}: {NOT_APPLIED}")
    if request.gpus:
        kind = f" {request.gpu_type}" if request.gpu_type else ""
        have = f"{len(m.gpus)} here" if m.gpus else "none here"
        lines.append(f"gpu {request.gpus}{kind}: assigned through CUDA_VISIBLE_DEVICES ({have})")
    recorded = [
        ("sidecar_resource_requests", spec.sidecar_resource_requests),
        ("sidecar_resource_limits", spec.sidecar_resource_limits),
        ("scheduling_spec", spec.scheduling_spec),
        ("pod_spec", spec.pod_spec),
        ("pod_patch", spec.pod_patch),
        ("tolerations", spec.tolerations),
        ("transform.memory_volume", spec.transform.memory_volume or None),
    ]
    lines.extend(f"{name}: {NOT_APPLIED}" for name, value in recorded if value is not None)
    return lines
