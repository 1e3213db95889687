"""Pachyderm's gRPC API vs Tusk's own CLI, through one ``tusk up`` in one run (issue 17).

1. One big file: ``pachyderm-sdk``'s ``put_file_from_file`` in a commit (ModifyFile, the
   client's ~19 MiB messages) and ``pfs_file(...).read()`` (GetFile) against ``tusk put file``
   and ``tusk get file`` of the same server (REST). Two files of the same size and fresh random
   bytes, so neither upload finds the other's chunks.
2. 10,000 small files (1 KiB each, random): one ModifyFile stream of the SDK (``modify_file``
   with every ``add_file``) against ``tusk put file -r``.

Target: the SDK's throughput at least 70% of the CLI's. The SDK runs in its own venv
(``.venv/pachsdk``, made by ``./dev.sh``). Prints each time and the ratios.

Run: ``.venv/bin/python bench/bench_grpc.py [--size-mib 1024] [--files 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import API_LINE, ROOT, _tusk

SDK_PYTHON = ROOT / ".venv" / "pachsdk" / "bin" / "python"
GRPC_LINE = r"gRPC API on (\S+)"

SDK = r"""
import json, sys, time
from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs
host, port = sys.argv[1].rsplit(":", 1)
what = sys.argv[2]
c = Client(host=host, port=int(port))
out = {}
if what == "big":
    c.pfs.create_repo(repo=pfs.Repo(name="sdkbig"))
    t = time.perf_counter()
    branch = pfs.Branch.from_uri("sdkbig@master")
    with open(sys.argv[3], "rb") as f, c.pfs.commit(branch=branch) as commit:
        c.pfs.put_file_from_file(commit=commit, path="/big", file=f)
    commit.wait()
    out["put"] = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    for block in c.pfs.get_file(file=pfs.File.from_uri("sdkbig@master:/big")):
        n += len(block.value)
    out["get"] = time.perf_counter() - t
    out["bytes"] = n
else:
    import os
    folder = sys.argv[3]
    names = sorted(os.listdir(folder))
    # The client's own floor: building and serializing the messages (betterproto, pure
    # Python), without sending them.
    t = time.perf_counter()
    for name in names:
        data = open(os.path.join(folder, name), "rb").read()
        bytes(pfs.ModifyFileRequest(add_file=pfs.AddFile(path="/" + name, raw=data)))
    out["floor"] = time.perf_counter() - t
    c.pfs.create_repo(repo=pfs.Repo(name="sdksmall"))
    t = time.perf_counter()
    commit = c.pfs.start_commit(branch=pfs.Branch.from_uri("sdksmall@master"))
    def ops():
        yield pfs.ModifyFileRequest(set_commit=commit)
        for name in names:
            data = open(os.path.join(folder, name), "rb").read()
            yield pfs.ModifyFileRequest(add_file=pfs.AddFile(path="/" + name, raw=data))
    c.pfs.modify_file(ops())
    c.pfs.finish_commit(commit=commit)
    c.pfs.wait_commit(commit)
    out["put"] = time.perf_counter() - t
    out["files"] = len(names)
print(json.dumps(out))
"""


def peak_mib(pid: int) -> float:
    """The server's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    if not SDK_PYTHON.exists():
        raise SystemExit("pachyderm-sdk's venv is missing: run ./dev.sh first")
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-grpc-"))
    size = args.size_mib << 20
    for name in ("a.bin", "b.bin"):  # fresh random bytes each: no chunk is shared
        with open(work / name, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
    small = work / "small"
    small.mkdir()
    for i in range(args.files):
        (small / f"f{i:05d}").write_bytes(os.urandom(1024))
    script = work / "sdk.py"
    script.write_text(SDK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUSK_", "PACH"))}
    env["TUSK_CONFIG"] = str(work / "no-config.yaml")
    up = ["up", "--port", "0", "--no-s3", "--grpc-port", "0", "--sandbox", "none"]
    with _tusk(work / "home", up, env, [API_LINE, GRPC_LINE], []) as ((api, grpc), pid):
        cli_env = {**env, "TUSK_ADDRESS": api}
        tusk = [sys.executable, "-m", "tusk.cli.main"]
        subprocess.run([*tusk, "create", "repo", "clibig"], check=True, env=cli_env)
        cli_put = timed([*tusk, "put", "file", "clibig@master:/big", "-f", str(work / "a.bin")],
                        cli_env)  # fmt: skip
        out_file = work / "got.bin"
        cli_get = timed([*tusk, "get", "file", "clibig@master:/big", "-o", str(out_file)], cli_env)
        out_file.unlink()
        peak_cli = peak_mib(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak from here on: the SDK's
        r = subprocess.run([str(SDK_PYTHON), str(script), grpc, "big", str(work / "b.bin")],
                           check=True, capture_output=True, text=True, env=env)  # fmt: skip
        sdk = json.loads(r.stdout)
        assert sdk["bytes"] == size, sdk
        peak_sdk = peak_mib(pid)
        subprocess.run([*tusk, "create", "repo", "clismall"], check=True, env=cli_env)
        cli_small = timed([*tusk, "put", "file", "-r", "clismall@master:/", "-f", str(small)],
                          cli_env)  # fmt: skip
        r = subprocess.run([str(SDK_PYTHON), str(script), grpc, "small", str(small)],
                           check=True, capture_output=True, text=True, env=env)  # fmt: skip
        sdk_small = json.loads(r.stdout)
    mib = size / (1 << 20)
    print(f"big file, {args.size_mib} MiB:")
    print(f"  put: tusk put file {mib / cli_put:7.1f} MiB/s ({cli_put:.2f} s), "
          f"SDK ModifyFile {mib / sdk['put']:7.1f} MiB/s ({sdk['put']:.2f} s): "
          f"{cli_put / sdk['put']:.2f}x")  # fmt: skip
    print(f"  get: tusk get file {mib / cli_get:7.1f} MiB/s ({cli_get:.2f} s), "
          f"SDK GetFile {mib / sdk['get']:7.1f} MiB/s ({sdk['get']:.2f} s): "
          f"{cli_get / sdk['get']:.2f}x")  # fmt: skip
    print(f"{args.files} files of 1 KiB: tusk put file -r {cli_small:.2f} s, "
          f"SDK one ModifyFile stream {sdk_small['put']:.2f} s: "
          f"{cli_small / sdk_small['put']:.2f}x (the SDK alone builds and serializes its "
          f"messages in {sdk_small['floor']:.2f} s)")  # fmt: skip
    print(f"server peak RSS: {peak_cli:.0f} MiB during the CLI's put and get, {peak_sdk:.0f} MiB "
          "during the SDK's ModifyFile and GetFile")  # fmt: skip
    ok = all(x >= 0.7 for x in (cli_put / sdk["put"], cli_get / sdk["get"]))
    print(f"target: SDK >= 0.70x of the CLI on the big file: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
