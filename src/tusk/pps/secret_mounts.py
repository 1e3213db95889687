"""What a datum's process sees of its secrets, and what is scrubbed from what it prints.

Kept free of heavy imports: the executor (also on Dask workers) uses it for every datum.

* Files: each ``mount_path`` secret is written, key by key, to ``<datum scratch>.secrets/
  <secret name>/<key>`` (folders 0700, files 0600) just before the datum's process starts,
  and removed when it ends. ``$TUSK_SECRETS`` names that folder. With bubblewrap the folder
  of each secret is bound read-only at its ``mount_path`` (as Kubernetes mounts a secret
  volume) and the whole folder at ``/tmp/tusk-secrets`` (``$TUSK_SECRETS`` there); without a
  sandbox only ``$TUSK_SECRETS/<name>/<key>`` exists.
* Scrubbing: every value a datum was given (each line of a multi-line value too) is replaced
  by ``***`` in its captured stdout and stderr before anything is kept (log lines, the stderr
  tail, the job's failure reason).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

REDACTED = "***"
SANDBOX_SECRETS = "/tmp/tusk-secrets"
_SCRUB = threading.local()  # the values being scrubbed by this thread's datum, as bytes


def scrub_values(values: Iterable[bytes]) -> list[bytes]:
    """The byte strings to replace: each value, and each line of a multi-line one; longest
    first so that a value containing another is replaced whole."""
    found: set[bytes] = set()
    for value in values:
        if value.strip():
            found.add(value)
            found.add(value.strip())
        for line in value.splitlines():
            if line.strip():
                found.add(line.strip())
    return sorted(found, key=lambda v: (-len(v), v))


def scrub(data: bytes, values: Sequence[bytes]) -> bytes:
    for value in values:
        if value in data:
            data = data.replace(value, REDACTED.encode())
    return data


def scrub_text(text: str, values: Sequence[bytes]) -> str:
    for value in values:
        plain = value.decode("utf-8", "replace")
        if plain in text:
            text = text.replace(plain, REDACTED)
    return text


@contextlib.contextmanager
def scrubbing(values: Sequence[bytes]) -> Iterator[None]:
    """While inside, :func:`scrub_output` on this thread replaces ``values``."""
    before = getattr(_SCRUB, "values", ())
    _SCRUB.values = tuple(values)
    try:
        yield
    finally:
        _SCRUB.values = before


def scrub_output(data: bytes) -> bytes:
    """Captured output with the values of this thread's datum replaced by ``***``."""
    values: Sequence[bytes] = getattr(_SCRUB, "values", ())
    return scrub(data, values) if values else data


def write_secret_files(
    root: Path, files: Sequence[tuple[str, str, dict[str, bytes]]]
) -> Path | None:
    """Write ``(secret name, mount path, {key: value})`` under ``root`` (made, 0700); None
    when there are none."""
    if not files:
        return None
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o700, parents=True)
    os.chmod(root, 0o700)
    for name, _mount_path, values in files:
        folder = root / name
        folder.mkdir(mode=0o700, exist_ok=True)
        for key, value in values.items():
            fd = os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
    return root


def bwrap_secret_args(
    args: list[str], root: Path, files: Sequence[tuple[str, str, dict[str, bytes]]]
) -> list[str]:
    """bubblewrap ``args`` (ending ``--chdir DIR --``) with each secret's folder bound
    read-only at its mount path and ``root`` at :data:`SANDBOX_SECRETS`.

    bubblewrap cannot make a mount point inside a read-only bind (``/etc/creds`` when
    ``/etc`` is the host's, read-only): such a folder becomes a fresh one holding read-only
    binds of the host folder's entries, down to the deepest existing folder of the path.
    """
    cut = len(args) - 1 - args[::-1].index("--chdir")
    head, tail = list(args[:cut]), args[cut:]
    expanded: set[str] = set()
    binds: list[str] = []
    for name, mount_path, _values in files:
        dest = os.path.normpath(mount_path)
        head = _make_room(head, dest, expanded)
        binds += ["--ro-bind", str(root / name), dest]
    binds += ["--ro-bind", str(root), SANDBOX_SECRETS]
    return head + binds + tail


def _make_room(args: list[str], dest: str, expanded: set[str]) -> list[str]:
    parts = [p for p in dest.split("/") if p]
    if not parts or parts[0] in ("tmp", "pfs", "dev", "proc"):
        return args  # bubblewrap's own writable folders: it makes the mount point itself
    if os.path.isdir(dest) and not os.path.islink(dest):
        return args  # a host folder: bound over as it is
    # Ancestors that exist on the host, from the top: each must become a writable folder.
    chain = []
    for i in range(1, len(parts)):
        path = "/" + "/".join(parts[:i])
        if os.path.islink(path) or not os.path.isdir(path):
            break
        chain.append(path)
    out = list(args)
    for path in chain:
        if path in expanded:
            continue
        expanded.add(path)
        for i in range(len(out) - 2):  # drop the read-only bind of the folder itself
            if out[i] in ("--ro-bind", "--ro-bind-try") and out[i + 1] == out[i + 2] == path:
                del out[i : i + 3]
                break
        out += ["--dir", path]
        nxt = chain[chain.index(path) + 1] if path != chain[-1] else None
        try:
            entries = sorted(os.listdir(path))
        except OSError:
            entries = []
        for entry in entries:
            full = f"{path}/{entry}"
            if full == nxt or full in expanded:
                continue
            if os.path.islink(full):
                out += ["--symlink", os.readlink(full), full]
            elif os.path.exists(full):
                out += ["--ro-bind-try", full, full]
    return out
