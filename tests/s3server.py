"""An S3 endpoint for the tests: moto in server mode, on 127.0.0.1 and a free port.

moto is an emulator of the S3 API, not a real object store (no MinIO or Ceph installs from
this machine's registries): it speaks the same HTTP protocol boto3 uses against AWS S3,
MinIO, Ceph RGW or GCS, so the backend's requests, multipart uploads, ranges, pagination and
error handling run for real, but durability, consistency and performance are not S3's.

``s3_server`` (session) starts one server; ``s3_url`` creates a fresh bucket per test and
returns its ``s3://`` URL with the endpoint, after pointing boto3 at dummy credentials.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

CREDENTIALS = {"aws_access_key_id": "tusk-test", "aws_secret_access_key": "tusk-test-secret"}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """One moto S3 endpoint; ``stop`` makes it unreachable (for outage tests)."""

    def __init__(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:  # pragma: no cover - the test extra installs it
            message = "moto[server] is not installed (pip install -e '.[test]')"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self._n = itertools.count(1)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
            **CREDENTIALS,
        )

    def new_bucket(self) -> str:
        name = f"tusk-test-{next(self._n)}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "tusk", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, **options}.items())
        return f"s3://{bucket}/{prefix}?{query}"

    def stop(self) -> None:
        self._server.stop()


def use_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy keys for moto; no profile, config file or instance metadata of the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket: its URL, with prefix ``tusk`` and the moto endpoint."""
    use_test_credentials(monkeypatch)
    return s3_server.url(s3_server.new_bucket())
