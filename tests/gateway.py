"""A real ``tusk up`` process with its S3 gateway, for the tests of the S3 edge.

``start_gateway(home)`` runs ``tusk --home HOME up --port 0 --s3-port 0`` (scheduler, REST
API and S3 gateway in one process, as users run it) and reads both addresses from the lines
it prints on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    api: str  # http://127.0.0.1:PORT (the REST API; the SDK's address)
    s3: str  # http://127.0.0.1:PORT (the S3 endpoint)
    home: Path
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def s3_client(gw: Gateway, key: str, secret: str) -> Any:
    """boto3 on the gateway with these keys, path-style, SigV4, no retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=gw.s3,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4"
        ),
    )


def start_gateway(home: Path, *args: str, env: dict[str, str] | None = None) -> Gateway:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    full_env["TUSK_CONFIG"] = str(home.parent / "no-config.yaml")
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "up", "--port", "0",
           "--s3-port", "0", "--sandbox", "none", *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env
    )
    assert proc.stderr is not None
    api = s3 = None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (api is None or s3 is None):
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(r"REST API on (https?://\S+)/api/v1", line):
            api = m.group(1)
        if m := re.search(r"S3 gateway on (https?://\S+)", line):
            s3 = m.group(1)
    if api is None or s3 is None:
        proc.kill()
        raise AssertionError(f"tusk up did not print both addresses: {''.join(seen)}")
    gw = Gateway(proc, api, s3, home, seen)
    # Keep reading stderr, so a chatty server never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc, gw.log), daemon=True).start()
    return gw


def _drain(proc: subprocess.Popen[str], log: list[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        log.append(line)
