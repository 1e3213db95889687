"""Sealing: AES-256-GCM under a key kept outside the metadata store.

Secrets (:mod:`tusk.pps.secrets`) and the secrets of S3 tokens (which SigV4 needs in clear
to check a signature; :meth:`AuthService.s3_token`) are stored sealed. The key is
``$TUSK_SECRET_KEY`` (32 bytes, URL-safe base64, as ``Fernet.generate_key()`` makes; for
servers, and every ``tusk worker`` of a PostgreSQL store, share it), else
``<home>/secrets.key``, made on first use with mode 0600.

A sealed blob is ``TS1``, a 12-byte random nonce, and AES-GCM's output; the associated data
``aad`` binds it to what it belongs to (a secret's name, a token's id), so a blob copied to
another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets as _random
from pathlib import Path

from tusk.errors import InvalidArgument, StorageError

KEY_ENV = "TUSK_SECRET_KEY"
KEY_FILE = "secrets.key"
MAGIC = b"TS1"  # format of a sealed blob: magic, 12-byte nonce, AES-GCM output
_NONCE = 12


def key_location(home: Path | None) -> str:
    """Where :func:`load_key` takes the key from, for messages."""
    if os.environ.get(KEY_ENV) or home is None:
        return f"${KEY_ENV}"
    return str(Path(home) / KEY_FILE)


def load_key(home: Path | None) -> bytes:
    """The 32-byte key: ``$TUSK_SECRET_KEY``, else ``<home>/secrets.key`` (made now if
    missing, mode 0600; refused if others may read it). Without either (no home): an error."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _decode_key(text.strip(), f"${KEY_ENV}")
    if home is None:
        raise InvalidArgument(f"no sealing key: set ${KEY_ENV} (32 bytes, URL-safe base64)")
    home = Path(home)
    path = home / KEY_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise StorageError(
                f"{path} is readable by others (mode {mode:o}): chmod 600 {path}"
            ) from None
        return _decode_key(path.read_text().strip(), str(path))
    key = base64.urlsafe_b64encode(_random.token_bytes(32))
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return base64.urlsafe_b64decode(key)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = _random.token_bytes(_NONCE)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` is in the format :func:`seal` makes."""
    return bytes(blob[: len(MAGIC)]) == MAGIC


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """The plaintext of ``blob``; StorageError if it is not one :func:`seal` made with ``key``
    and ``aad`` (:func:`is_sealed` tells an unknown format from another key)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = bytes(blob)
    if not is_sealed(blob):
        raise StorageError("not sealed by Tusk (unknown format)")
    start = len(MAGIC)
    nonce, sealed = blob[start : start + _NONCE], blob[start + _NONCE :]
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise StorageError("sealed under another key (or altered)") from None


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidArgument(
            f"{where} is not a secret key: use 32 random bytes in URL-safe base64, e.g. "
            "from: openssl rand -base64 32 | tr '+/' '-_'"
        )
    return key
