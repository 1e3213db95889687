"""Secrets, as Pachyderm takes them: Kubernetes Secret manifests, used by ``transform.secrets``.

``tusk create secret -f secret.json|yaml`` stores a manifest's keys (``data``, base64, and
``stringData``, which wins for a key in both, as in Kubernetes). A secret's key names are
kept in clear; its values only as one AES-256-GCM ciphertext (the secret's name is its
associated data, so a ciphertext moved to another name does not decrypt). The key is not in
the metadata store: ``$TUSK_SECRET_KEY`` (32 bytes, URL-safe base64, as
``Fernet.generate_key()`` makes; for servers, and every ``tusk worker`` of a PostgreSQL
store, share it), else ``<home>/secrets.key``, made on first use with mode 0600.

Listing and inspecting show names, keys and times, never values; only :meth:`values_for`
decrypts, for the scheduler to hand a job's datums the secrets its spec names. Creating a
name that exists is refused (Pachyderm's ``create secret`` asks Kubernetes to create it,
which refuses too): delete it first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.auth import sealing
from tusk.errors import AlreadyExists, InvalidArgument, SecretNotFound, StorageError
from tusk.pps.models import SecretInfo
from tusk.storage.meta.store import MetaStore
from tusk.storage.meta.store_secrets import SecretRecord
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pps.spec import SecretMount

KEY_ENV = sealing.KEY_ENV
KEY_FILE = sealing.KEY_FILE
MAX_BYTES = 1 << 20  # Kubernetes' limit for one secret
_NAME = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}|[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@frozen
class SecretMaterial:
    """What a job's datums get: env vars, files to mount, and every value (to scrub)."""

    env: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str, dict[str, bytes]]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)


def parse_manifest(manifest: dict[str, Any] | str | bytes) -> tuple[str, dict[str, bytes]]:
    """(name, {key: value}) of a Kubernetes Secret manifest: a mapping, or JSON/YAML text."""
    if isinstance(manifest, bytes | str):
        import yaml

        try:
            docs = [d for d in yaml.safe_load_all(manifest) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "cannot be parsed"
            raise InvalidArgument(
                f"secret manifest is not valid JSON or YAML{where}: {problem}"
            ) from None
        if len(docs) != 1:
            raise InvalidArgument(
                f"a secret manifest holds one Kubernetes Secret, not {len(docs)} documents"
            )
        manifest = docs[0]
    if not isinstance(manifest, dict):
        raise InvalidArgument(
            "not a Kubernetes Secret manifest: expected a mapping with kind: Secret, "
            "metadata.name and data or stringData"
        )
    kind = manifest.get("kind")
    if kind != "Secret":
        raise InvalidArgument(
            f"not a Kubernetes Secret manifest (kind: {kind!r}): a secret manifest has "
            "kind: Secret, metadata.name and data or stringData"
        )
    meta = manifest.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name:
        raise InvalidArgument("secret manifest has no metadata.name: name the secret")
    name = check_name(name)
    values: dict[str, bytes] = {}
    data = manifest.get("data") or {}
    strings = manifest.get("stringData") or {}
    if not isinstance(data, dict) or not isinstance(strings, dict):
        raise InvalidArgument(f"secret {name}: data and stringData must be mappings")
    for key, text in data.items():
        _check_key(name, key)
        if not isinstance(text, str):
            raise InvalidArgument(f"secret {name}: data.{key} must be a base64 string")
        try:
            values[key] = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(
                f"secret {name}: data.{key} is not valid base64 (data values are "
                "base64-encoded; put plain text under stringData)"
            ) from None
    for key, text in strings.items():
        _check_key(name, key)
        if not isinstance(text, str | int | float | bool):
            raise InvalidArgument(f"secret {name}: stringData.{key} must be a string")
        values[key] = (text if isinstance(text, str) else json.dumps(text)).encode()
    size = sum(len(k) + len(v) for k, v in values.items())
    if size > MAX_BYTES:
        raise InvalidArgument(f"secret {name} is {size} bytes; a secret holds at most 1 MiB")
    return name, values


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"invalid secret name {str(name)[:80]!r}: use a Kubernetes name (lowercase letters, "
            "digits, '-' and '.') or 1-63 letters, digits, '_' or '-'"
        )
    return name


def _check_key(name: str, key: Any) -> None:
    if not isinstance(key, str) or not _KEY.match(key) or key in (".", ".."):
        raise InvalidArgument(
            f"secret {name}: invalid key {str(key)[:80]!r} (use letters, digits, '-', '_', '.')"
        )


class SecretService:
    """Stored secrets of one metadata store; the key from ``$TUSK_SECRET_KEY`` or the home."""

    def __init__(self, meta: MetaStore, home: Path) -> None:
        self.meta = meta
        self.home = Path(home)
        self._key: bytes | None = None
        self._key_lock = threading.Lock()

    # The key (tusk.auth.sealing: $TUSK_SECRET_KEY, else <home>/secrets.key)

    def _where(self) -> str:
        return sealing.key_location(self.home)

    def key(self) -> bytes:
        with self._key_lock:
            if self._key is None:
                self._key = sealing.load_key(self.home)
            return self._key

    def _seal(self, name: str, values: dict[str, bytes]) -> bytes:
        plain = json.dumps({k: base64.b64encode(v).decode() for k, v in values.items()})
        return sealing.seal(self.key(), plain.encode(), _aad(name))

    def _open(self, record: SecretRecord) -> dict[str, bytes]:
        if not sealing.is_sealed(record.ciphertext):
            raise StorageError(f"secret {record.name} is stored in an unknown format")
        try:
            plain = sealing.unseal(self.key(), record.ciphertext, _aad(record.name))
        except StorageError:
            raise StorageError(
                f"secret {record.name} cannot be decrypted with the key in {self._where()}: it "
                "was stored under another key (set the same key on every machine that runs jobs)"
            ) from None
        return {k: base64.b64decode(v) for k, v in json.loads(plain).items()}

    # Operations

    def create(self, manifest: dict[str, Any] | str | bytes, created_by: str = "") -> SecretInfo:
        name, values = parse_manifest(manifest)
        sealed = self._seal(name, values)
        now = time.time()
        record = SecretRecord(name, sorted(values), sealed, now, now, created_by)
        with self.meta.write() as tx:
            if tx.get_secret(name) is not None:
                raise AlreadyExists(
                    f"secret {name} already exists; delete it first (tusk delete secret {name})"
                )
            tx.insert_secret(record)
        return _info(record)

    def list_all(self) -> list[SecretInfo]:
        with self.meta.read() as tx:
            return [_info(r) for r in tx.list_secrets()]

    def inspect(self, name: str) -> SecretInfo:
        return _info(self._need(name))

    def delete(self, name: str) -> None:
        with self.meta.write() as tx:
            if not tx.delete_secret(check_name(name)):
                raise _not_found(name)

    def values_for(self, name: str) -> dict[str, bytes]:
        """A secret's values, decrypted: for the scheduler only (never shown or returned)."""
        return self._open(self._need(name))

    def _need(self, name: str) -> SecretRecord:
        check_name(name)
        with self.meta.read() as tx:
            record = tx.get_secret(name)
        if record is None:
            raise _not_found(name)
        return record

    # For jobs

    def problem(self, mounts: Sequence[SecretMount]) -> str | None:
        """Why a spec's ``transform.secrets`` cannot be given to its datums (None: they can):
        a secret or key that does not exist, or a value an environment variable cannot hold."""
        if not mounts:
            return None
        with self.meta.read() as tx:
            records = {m.name: tx.get_secret(m.name) for m in mounts}
        for m in mounts:
            record = records[m.name]
            if record is None:
                return (
                    f"transform.secrets: secret {m.name} does not exist (create it with: "
                    "tusk create secret -f FILE)"
                )
            if m.key and m.key not in record.keys:
                return (
                    f"transform.secrets: secret {m.name} has no key {m.key} (its keys: "
                    f"{', '.join(record.keys) or 'none'})"
                )
        for m in mounts:
            if m.env_var:
                record = records[m.name]
                assert record is not None
                if b"\0" in self._open(record)[m.key]:
                    return (
                        f"transform.secrets: {m.name}.{m.key} holds a NUL byte, which an "
                        f"environment variable ({m.env_var}) cannot hold; mount it as a file"
                    )
        return None

    def material(self, mounts: Sequence[SecretMount]) -> SecretMaterial:
        """The env vars and files a job's datums get; raises if a secret or key is gone."""
        if not mounts:
            return SecretMaterial()
        problem = self.problem(mounts)
        if problem is not None:
            raise SecretNotFound(problem)
        opened: dict[str, dict[str, bytes]] = {}
        for m in mounts:
            if m.name not in opened:
                opened[m.name] = self.values_for(m.name)
        env: dict[str, str] = {}
        files: list[tuple[str, str, dict[str, bytes]]] = []
        used: list[bytes] = []
        for m in mounts:
            values = opened[m.name]
            if m.env_var:
                env[m.env_var] = values[m.key].decode("utf-8", "surrogateescape")
                used.append(values[m.key])
            if m.mount_path:
                files.append((m.name, m.mount_path, dict(values)))
                used.extend(values.values())
        return SecretMaterial(env, files, used)


def _aad(name: str) -> bytes:
    return b"tusk-secret:" + name.encode()


def _info(record: SecretRecord) -> SecretInfo:
    return SecretInfo(
        record.name, list(record.keys), record.created_at, record.updated_at, record.created_by
    )


def _not_found(name: str) -> SecretNotFound:
    return SecretNotFound(f"secret {name} not found (list secrets with: tusk list secret)")
