"""Real S3 clients set up for a plain-http, path-style endpoint on loopback (no test here).

Every helper takes the endpoint (``http://127.0.0.1:PORT``) and an access key pair, and reads
nothing of the machine's AWS setup: no ``~/.aws`` files, profiles or instance metadata, so the
same calls run against moto's server and against ``tusk up --s3-port``.
Path-style addressing (``/BUCKET/KEY``) throughout: the gateway's buckets are ``branch.repo``,
and dotted names cannot be virtual hosts of ``127.0.0.1``.

A client that is not installed fails the test in CI (``CI=true``) and skips it elsewhere
(``require``): the project never skips silently in CI.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

REGION = "us-east-1"
# The aws CLI pins botocore exactly, against s3fs's aiobotocore: dev.sh gives it its own venv.
AWS_CLI = Path(sys.prefix) / "awscli" / "bin" / "aws"


def require(module: str) -> ModuleType:
    """Import a client library; missing, it fails the test in CI and skips it elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        _missing(f"{module} is not installed ({e}); ./dev.sh installs the test extra")
        raise  # pragma: no cover - _missing raises


def _missing(message: str) -> None:
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _hostport(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    assert parts.scheme == "http" and parts.hostname and parts.port, endpoint
    return f"{parts.hostname}:{parts.port}"


def boto3_client(endpoint: str, key: str, secret: str) -> Any:
    """A boto3 S3 client: path style, us-east-1, two attempts, short timeouts."""
    boto3 = require("boto3")
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def aws_cli_env(key: str, secret: str) -> dict[str, str]:
    """The environment of an ``aws`` run: these keys only, no config or credentials file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        # No addressing-style setting without a config file: the CLI (v1, botocore 1.43) uses
        # path style for any --endpoint-url (127.0.0.1 or localhost, dotted bucket or not).
        # Plain http needs no --no-verify-ssl.
    )
    return env


def aws_cli(
    endpoint: str,
    key: str,
    secret: str,
    *args: str,
    cwd: str | Path | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``aws --endpoint-url ENDPOINT ARGS...`` (the CLI v1 from .venv/awscli)."""
    if not AWS_CLI.exists():
        _missing(f"the aws CLI is not installed at {AWS_CLI}; ./dev.sh installs it")
    result = subprocess.run(
        [str(AWS_CLI), "--endpoint-url", endpoint, *args],
        cwd=cwd,
        env=aws_cli_env(key, secret),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"aws {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def s3fs_options(endpoint: str, key: str, secret: str) -> dict[str, Any]:
    """``storage_options`` for pandas (and anything on fsspec's s3fs) on this endpoint."""
    require("s3fs")
    return {
        "key": key,
        "secret": secret,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": REGION},
        "config_kwargs": {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 2, "mode": "standard"},
        },
        # A filesystem of its own (fsspec reuses instances made with the same arguments) and
        # no listing cache, so a test sees what it just wrote.
        "skip_instance_cache": True,
        "use_listings_cache": False,
    }


def polars_options(endpoint: str, key: str, secret: str) -> dict[str, str]:
    """``storage_options`` for polars' own object_store client (scan_parquet, read_parquet)."""
    require("polars")
    return {
        "aws_access_key_id": key,
        "aws_secret_access_key": secret,
        "aws_region": REGION,
        "aws_endpoint_url": endpoint,
        "aws_allow_http": "true",
        "aws_virtual_hosted_style_request": "false",
    }


def duckdb_extension_directory() -> Path:
    """Where the duckdb-ext-httpfs wheel put ``v{version}/{platform}/httpfs.duckdb_extension``.

    That wheel (one per platform, pinned to DuckDB's version) ships only the extension file,
    under the ``duckdb_ext`` namespace, no Python code, laid out as DuckDB's extension
    directory: pointing ``extension_directory`` at it makes ``LOAD httpfs`` (and autoloading
    on an ``s3://`` path) work with no download.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("duckdb-ext-httpfs")
    except PackageNotFoundError:
        _missing("duckdb-ext-httpfs is not installed; ./dev.sh installs the test extra")
        raise  # pragma: no cover - _missing raises
    for f in dist.files or []:
        if f.name == "httpfs.duckdb_extension":
            return Path(str(dist.locate_file(f))).resolve().parents[2]
    raise AssertionError("duckdb-ext-httpfs ships no httpfs.duckdb_extension")


def duckdb_connect(endpoint: str, key: str, secret: str) -> Any:
    """An in-memory DuckDB with httpfs loaded offline and an S3 secret for this endpoint."""
    duckdb = require("duckdb")
    extensions = duckdb_extension_directory()
    con = duckdb.connect(
        config={
            "extension_directory": str(extensions),
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
        }
    )
    con.execute("LOAD httpfs")
    con.execute(
        """CREATE SECRET tusk_s3 (
            TYPE s3, PROVIDER config, KEY_ID ?, SECRET ?, REGION ?,
            ENDPOINT ?, URL_STYLE 'path', USE_SSL false
        )""",
        [key, secret, REGION, _hostport(endpoint)],
    )
    return con
