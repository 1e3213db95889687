"""What the REST API and the SDK's HTTP client agree on: errors, result objects, NDJSON
listings, tar framing.

No web framework here: the SDK's remote client imports this module without FastAPI.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tusk import errors
from tusk.pfs.models import (
    BranchInfo,
    BranchTrigger,
    CheckRunInfo,
    CommitInfo,
    ImportResult,
    MergeConflictInfo,
    MergeResult,
    MergeSide,
    PutResult,
)
from tusk.values import field_names, plain

API_PREFIX = "/api/v1"
# A request that overrides branch protection (a clusterAdmin's forced write; tusk.api.guard).
FORCE_HEADER = "x-tusk-force-protected"
# A wait request holds a server thread; it returns Timeout after at most this long and the
# SDK asks again, so a client that went away never pins a thread for longer.
MAX_WAIT = 30.0
BLOCK = 1 << 20  # bytes per read when streaming a file up or down
# Listings asked for with this ``Accept`` stream one JSON object per line (see ``ndjson_line``).
NDJSON = "application/x-ndjson"
# A repo or pipeline of another project than default is named ``project/name``; in a URL
# path segment the client sends it percent-encoded (``research%2Fimages``). Servers decode %2F
# before routing, so the API rewrites it to this character (which no name contains) in the
# segments that name a repo or pipeline, and ``name_param`` turns it back.
SLASH_IN_NAME = "~"


def name_param(text: str) -> str:
    """A repo or pipeline name from a URL path segment: ``research~images`` is
    ``research/images`` (never for refs or file paths, where ``~`` means what it says)."""
    return text.replace(SLASH_IN_NAME, "/")


def url_segment(text: str) -> str:
    """A name or ref as one URL path segment, every reserved character (``/`` too)
    percent-encoded: what clients send for ``name_param`` to read back."""
    from urllib.parse import quote

    return quote(text, safe="")


T = TypeVar("T")


@functools.cache
def tusk_version() -> str:
    """Tusk's version (``tusk.__version__``, which the package metadata is built from: no
    ``importlib.metadata`` scan at start-up)."""
    from tusk._version import __version__

    return __version__


# Errors


def _subclasses(cls: type[errors.TuskError]) -> Iterator[type[errors.TuskError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def error_classes() -> dict[str, type[errors.TuskError]]:
    """Every ``TuskError`` class by its ``code`` (built from the hierarchy, so new ones count)."""
    table: dict[str, type[errors.TuskError]] = {errors.TuskError.code: errors.TuskError}
    for cls in _subclasses(errors.TuskError):
        table.setdefault(cls.code, cls)
    return table


_BY_STATUS: dict[int, type[errors.TuskError]] = {
    400: errors.InvalidArgument,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.InvalidArgument,
    422: errors.InvalidArgument,
    502: errors.Unavailable,
    503: errors.Unavailable,
    504: errors.Timeout,
}


def error_from(status: int, body: Any) -> errors.TuskError:
    """The exception an error response stands for: its class by ``code``, else by status."""
    code = message = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
    cls = error_classes().get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, errors.TuskError)
    if not isinstance(message, str) or not message:
        message = f"the server answered HTTP {status}" + (f" ({code})" if code else "")
    return cls(message)


def timed_out(exc: errors.Timeout, seconds: float) -> errors.Timeout:
    """The same Timeout, saying the whole wait's length (waits are asked for in slices)."""
    return errors.Timeout(re.sub(r"after [^ ]+s$", f"after {seconds:g}s", exc.message))


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


# Result objects


def decode(cls: type[T], data: Any) -> T:
    """A result dataclass from its ``to_dict()`` form (unknown keys from newer servers ignored)."""
    if not isinstance(data, dict):
        raise errors.TuskError(f"the server sent {type(data).__name__}, not a {cls.__name__}")
    names = field_names(cls)
    kw = {k: v for k, v in data.items() if k in names}
    if cls is PutResult or (cls is ImportResult and kw.get("commit") is not None):
        kw["commit"] = decode(CommitInfo, kw["commit"])
    elif cls is BranchInfo and kw.get("trigger") is not None:
        kw["trigger"] = decode(BranchTrigger, kw["trigger"])
    elif cls.__module__ == "tusk.pps.models":  # loaded by pipeline commands only
        _decode_pps(cls, kw)
    elif cls is MergeResult:
        if kw.get("commit") is not None:
            kw["commit"] = decode(CommitInfo, kw["commit"])
        kw["conflicts"] = [decode(MergeConflictInfo, c) for c in kw.get("conflicts") or []]
        kw["checks"] = [decode(CheckRunInfo, c) for c in kw.get("checks") or []]
        kw["outputs"] = [decode(CommitInfo, c) for c in kw.get("outputs") or []]
    elif cls is MergeConflictInfo:
        for side in ("base", "ours", "theirs"):
            kw[side] = decode(MergeSide, kw[side])
    return cls(**kw)


def _decode_pps(cls: type, kw: dict[str, Any]) -> None:
    from tusk.pps.models import ApplyChange, ApplyResult, LineageStep, PipelineInfo, PipelineVersion

    if cls is PipelineInfo:
        kw["versions"] = [decode(PipelineVersion, v) for v in kw.get("versions") or []]
    elif cls is LineageStep:
        kw["inputs"] = [decode(LineageStep, s) for s in kw.get("inputs") or []]
    elif cls is ApplyResult:
        kw["changes"] = [decode(ApplyChange, c) for c in kw.get("changes") or []]


def decode_list(cls: type[T], data: Any) -> list[T]:
    if not isinstance(data, list):
        raise errors.TuskError(f"the server sent {type(data).__name__}, not a list")
    return [decode(cls, d) for d in data]


# NDJSON listings


def ndjson_line(obj: Any) -> bytes:
    """A result object (or an error body) as one line of NDJSON.

    ASCII only, so that a line ends at its b"\\n" and nowhere else: readers that split like
    ``str.splitlines`` (httpx's ``iter_lines`` does) also break at U+2028 or U+0085, which
    file names may hold.
    """
    return json.dumps(plain(obj), separators=(",", ":"), allow_nan=False).encode() + b"\n"


def ndjson_values(blocks: Iterable[bytes]) -> Iterator[Any]:
    """The JSON values of an NDJSON byte stream, each as soon as its line is complete.

    A damaged line raises ``json.JSONDecodeError`` (a ``ValueError``).
    """
    rest = b""
    for block in blocks:
        *lines, rest = (rest + block).split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if rest.strip():
        yield json.loads(rest)


def is_error_body(data: Any) -> bool:
    """Whether a JSON value is ``{"error": {...}}``: how a stream that fails midway ends."""
    return isinstance(data, dict) and data.keys() == {"error"}


# Tar framing: the same bytes ``tarfile`` writes in stream mode, produced piece by piece so
# that a file's contents can be streamed between its header and its padding.

TAR_BLOCK = 512  # tarfile.BLOCKSIZE: fixed by the format (tarfile loads only when used)
TAR_RECORD = 20 * TAR_BLOCK  # tarfile.RECORDSIZE


def _tarfile_header(name: str, size: int) -> bytes:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


@functools.cache
def _ustar() -> bytes:
    """The header tarfile writes for a short ASCII name, with the name, size and checksum
    blank: filling those in costs a microsecond where tarfile takes fifty (10^5 small files
    add up)."""
    blank = bytearray(_tarfile_header("", 0))
    blank[148:156] = b" " * 8
    return bytes(blank)


def tar_header(name: str, size: int) -> bytes:
    """The header ``tarfile`` (PAX format, as ``Client.get_tar`` uses) writes for a file."""
    if not name.isascii() or len(name) > 100 or "\0" in name or size >= 8**11:
        return _tarfile_header(name, size)
    header = bytearray(_ustar())
    header[0 : len(name)] = name.encode("ascii")
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def tar_padding(size: int) -> bytes:
    return b"\0" * (-size % TAR_BLOCK)


def tar_end(written: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, as ``TarFile.close`` writes."""
    end = 2 * TAR_BLOCK
    return b"\0" * (end + (-(written + end) % TAR_RECORD))


def tar_member_parts(name: str) -> tuple[str, ...]:
    """The path segments of a tar member name; a leading './' (``tar -C dir -c .``) is dropped."""
    while name.startswith("./"):
        name = name[2:]
    return tuple(name.strip("/").split("/")) if name.strip("/") else ()
