"""AWS Signature Version 4 for the S3 gateway: who signed a request, and its body, checked.

:func:`authenticate` verifies a request signed in the ``Authorization`` header or presigned in
the query string (``X-Amz-Signature``, ``X-Amz-Expires``). The expected signature is botocore's
own: the request is rebuilt as a :class:`botocore.awsrequest.AWSRequest` and signed by
:class:`botocore.auth.S3SigV4Auth` with the access key's secret, over exactly the headers the
client listed in ``SignedHeaders``, in the region of the client's credential scope, then
compared in constant time. The path and the query are tried as sent on the wire and, when that
differs, in SigV4's canonical encoding of what they decode to (the gateway decodes the path
with ``unquote`` and the query as a form, ``+`` being a space), so a client that sends
``!`` or ``'`` unescaped but signs them escaped verifies too.

:func:`body_reader` decodes and checks a request body as it streams: ``aws-chunked`` bodies
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``, each chunk's signature chained from the
request's; ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, which boto3 sends over https) are
de-chunked, their trailers parsed and signed trailers verified; a hex ``x-amz-content-sha256``
(which boto3 sends over http) is checked against the body, and ``x-amz-checksum-*`` values,
in headers or trailers, against the decoded bytes (crc32, sha1, sha256, sha512 always; crc32c
and crc64nvme when botocore has its CRT checksums). A check that fails raises
:class:`~tusk.s3.errors.S3Error` from ``read()``, at the latest before it returns ``b""``.
Content-MD5 is the gateway's to check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import quote, unquote_to_bytes

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from tusk.s3.errors import S3Error
from tusk.s3.offload import Hash, Offloaded
from tusk.values import frozen

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_PAYLOADS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)
MAX_SKEW = 15 * 60  # seconds a header-signed request's time may be off ours
MAX_EXPIRES = 7 * 24 * 3600  # the longest X-Amz-Expires S3 accepts
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_MAX_LINE = 4096  # a chunk header or trailer line
_MAX_TRAILERS = 16 * 1024  # all trailer lines together
_FILL = 64 * 1024  # what a chunk header read asks of the raw stream
_CHECKSUM_PREFIX = "x-amz-checksum-"
_NOT_CHECKSUMS = frozenset({"algorithm", "mode", "type"})  # x-amz-checksum-<these> are not values


@frozen
class Signed:
    """A request whose signature verified: who signed it, and what its body must be checked by."""

    access_key: str  # the access key id (a Tusk token id)
    secret: str  # the secret that verified
    payload: (
        str  # the x-amz-content-sha256 value as sent (hex sha256, UNSIGNED-PAYLOAD, STREAMING-...)
    )
    signing_key: bytes  # derived key for the scope (for chunk signatures)
    scope: str  # "<date>/<region>/s3/aws4_request"
    amz_date: str
    seed_signature: str  # the request's signature (first chunk's previous signature)


# Authentication


class _Verifier(S3SigV4Auth):
    """botocore's S3 SigV4 signer, told what the client signed: exactly its ``SignedHeaders``,
    the canonical URI it sent (S3 does not normalize paths) and the payload value."""

    def __init__(self, access_key: str, secret: str, region: str, signed: list[str], payload: str):
        super().__init__(Credentials(access_key, secret), SERVICE, region)
        self.signed = signed
        self.payload_value = payload
        self.path = "/"

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self.signed:
            for value in request.headers.get_all(name, []):
                headers[name] = value
        return headers

    def payload(self, request: AWSRequest) -> str:
        return self.payload_value

    def _normalize_url_path(self, path: str) -> str:
        return self.path

    def expected(self, request: AWSRequest, path: str) -> str:
        self.path = path
        canonical = self.canonical_request(request)
        return str(self.signature(self.string_to_sign(request, canonical), request))


@dataclass
class _Auth:
    """What a request's signature claims, parsed from its header or its query."""

    access_key: str
    date: str
    region: str
    signed_headers: list[str]
    signature: str
    amz_date: str
    presigned: bool
    expires: int = 0


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    secret_for: Callable[[str], str | None],
    *,
    now: float | None = None,
) -> Signed | None:
    """The verified signer of a request; None for an anonymous one (no Authorization header and
    no X-Amz-Signature in the query).

    ``raw_path`` is the path as sent (percent-encoded: ASGI's ``scope['raw_path']``), ``raw_query``
    the query string as sent, ``headers`` maps lower-case names to values. Raises
    :class:`S3Error`: InvalidAccessKeyId (``secret_for`` returned None), SignatureDoesNotMatch,
    AuthorizationHeaderMalformed / AuthorizationQueryParametersError, RequestTimeTooSkewed (header
    auth more than 15 minutes off), AccessDenied 'Request has expired' (presigned URL past its
    X-Amz-Expires), InvalidArgument (X-Amz-Expires over 7 days or not a number, a bad
    x-amz-content-sha256), InvalidRequest (an auth scheme other than AWS4-HMAC-SHA256).
    """
    hdrs = _lower(headers)
    pairs = _query_pairs(raw_query)
    query_keys = {k for k, _ in pairs}
    authorization = hdrs.get("authorization", [""])[0].strip()
    if "authorization" in hdrs and not authorization:
        raise S3Error("AuthorizationHeaderMalformed", "The authorization header is empty.")
    if not authorization and "X-Amz-Signature" not in query_keys:
        if "Signature" in query_keys and "AWSAccessKeyId" in query_keys:
            raise S3Error("InvalidRequest", _V2_UNSUPPORTED)
        return None
    if authorization and "X-Amz-Signature" in query_keys:
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
        )
    auth = _from_query(pairs) if not authorization else _from_header(authorization, hdrs)
    now = time.time() if now is None else now
    moment = datetime.strptime(auth.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    if auth.presigned:
        if now > moment + auth.expires:
            raise S3Error("AccessDenied", "Request has expired")
        if moment - now > MAX_SKEW:
            raise S3Error("AccessDenied", "Request is not valid yet")
    elif abs(now - moment) > MAX_SKEW:
        raise S3Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )

    if auth.presigned:
        payload = hdrs.get("x-amz-content-sha256", [UNSIGNED_PAYLOAD])[0].strip()
    elif "x-amz-content-sha256" in hdrs:
        payload = hdrs["x-amz-content-sha256"][0].strip()
    else:
        raise S3Error(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
        )
    if payload not in _PAYLOADS and not _HEX64.fullmatch(payload):
        raise S3Error(
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] or a valid sha256 value.",
        )
    unsigned = sorted(
        name
        for name in hdrs
        if name.startswith("x-amz-")
        and name != "x-amz-content-sha256"  # bound by the canonical request's payload line
        and name not in auth.signed_headers
    )
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned),
        )

    secret = secret_for(auth.access_key)
    if secret is None:
        raise S3Error(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    verifier = _Verifier(
        auth.access_key,
        secret,
        auth.region,
        auth.signed_headers,
        UNSIGNED_PAYLOAD if auth.presigned else payload,
    )
    if not any(
        hmac.compare_digest(verifier.expected(request, path), auth.signature)
        for request, path in _candidates(method, raw_path, raw_query, pairs, hdrs, auth)
    ):
        raise S3Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    scope = f"{auth.date}/{auth.region}/{SERVICE}/aws4_request"
    return Signed(
        access_key=auth.access_key,
        secret=secret,
        payload=payload,
        signing_key=signing_key(secret, auth.date, auth.region),
        scope=scope,
        amz_date=auth.amz_date,
        seed_signature=auth.signature,
    )


def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """SigV4's derived key for a scope: HMAC chain of date, region, service, "aws4_request"."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


_V2_UNSUPPORTED = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256"
    " (Signature Version 4; boto3: Config(signature_version='s3v4'))."
)


def _lower(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Lower-case name -> every value (a multi-dict's items() repeat names)."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _wire(text: str) -> bytes:
    """The bytes of a path or query string as sent (ASGI's raw bytes decoded as latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query decoded as a form (``+`` is a space), every pair in order."""
    pairs = []
    for segment in raw_query.split("&"):
        if segment:
            key, _, value = segment.partition("=")
            pairs.append((_form_decode(key), _form_decode(value)))
    return pairs


def _form_decode(text: str) -> str:
    return unquote_to_bytes(_wire(text).replace(b"+", b" ")).decode("utf-8", "surrogateescape")


def _from_header(authorization: str, hdrs: dict[str, list[str]]) -> _Auth:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm == "AWS":
        raise S3Error("InvalidRequest", _V2_UNSUPPORTED)
    if algorithm != ALGORITHM:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; unsupported algorithm {algorithm[:40]!r}",
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise S3Error(
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; {part.strip()[:40]!r} is not name=value",
            )
        fields[name.strip()] = value.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; missing {', '.join(missing)}",
        )
    if "x-amz-date" in hdrs:
        amz_date = hdrs["x-amz-date"][0].strip()
    elif "date" in hdrs:
        try:
            moment = parsedate_to_datetime(hdrs["date"][0])
        except (TypeError, ValueError):
            moment = None
        if moment is None:
            raise S3Error(
                "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
            )
        if moment.tzinfo is None:  # "-0000": UTC, as botocore's formatdate() writes it
            moment = moment.replace(tzinfo=UTC)
        amz_date = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    else:
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    return _parsed(
        fields["Credential"],
        fields["SignedHeaders"],
        fields["Signature"],
        amz_date,
        "AuthorizationHeaderMalformed",
        presigned=False,
    )


def _from_query(pairs: list[tuple[str, str]]) -> _Auth:
    code = "AuthorizationQueryParametersError"
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("X-Amz-"):
            if key in params:
                raise S3Error(code, f"{key} appears more than once in the query")
            params[key] = value
    algorithm = params.get("X-Amz-Algorithm")
    if algorithm != ALGORITHM:
        raise S3Error(code, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    needed = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
    missing = [k for k in needed if not params.get(k)]
    if missing:
        raise S3Error(
            code,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            f"X-Amz-Expires parameters; missing {', '.join(missing)}.",
        )
    raw_expires = params["X-Amz-Expires"]
    if not raw_expires.isdigit():
        raise S3Error("InvalidArgument", "X-Amz-Expires should be a non-negative number")
    expires = int(raw_expires)
    if expires > MAX_EXPIRES:
        raise S3Error(
            "InvalidArgument",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        )
    auth = _parsed(
        params["X-Amz-Credential"],
        params["X-Amz-SignedHeaders"],
        params.get("X-Amz-Signature", ""),
        params["X-Amz-Date"],
        code,
        presigned=True,
    )
    auth.expires = expires
    return auth


def _parsed(
    credential: str, signed: str, signature: str, amz_date: str, code: str, *, presigned: bool
) -> _Auth:
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or not parts[2]:
        raise S3Error(
            code,
            f'The credential is malformed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
            f'aws4_request", got {credential[:120]!r}',
        )
    access_key, date, region, service, terminal = parts
    if terminal != "aws4_request":
        raise S3Error(code, f"The credential is malformed; incorrect terminal {terminal!r}")
    if service != SERVICE:
        raise S3Error(
            code,
            f"The credential is malformed; incorrect service {service!r}. "
            f"This endpoint belongs to {SERVICE!r}.",
        )
    if not _AMZ_DATE.fullmatch(amz_date):
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    if date != amz_date[:8]:
        raise S3Error(
            code,
            f"Invalid credential date {date!r}. Date is not the same as X-Amz-Date: "
            f"{amz_date[:8]!r}.",
        )
    try:
        datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        ) from None
    names = [n.strip().lower() for n in signed.split(";")]
    if not all(names) or "host" not in names:
        raise S3Error(code, f"SignedHeaders {signed[:200]!r} must name host and no empty header")
    if not _HEX64.fullmatch(signature):
        raise S3Error("SignatureDoesNotMatch", "The signature is not 64 hexadecimal digits.")
    return _Auth(access_key, date, region, names, signature.lower(), amz_date, presigned)


def _candidates(
    method: str,
    raw_path: str,
    raw_query: str,
    pairs: list[tuple[str, str]],
    hdrs: dict[str, list[str]],
    auth: _Auth,
) -> Iterable[tuple[AWSRequest, str]]:
    """The requests (and canonical URIs) the client may have signed: the canonical encoding of
    what the gateway decodes, and the path and query exactly as sent (botocore's own form)."""
    wire_path = _wire(raw_path or "/")
    paths = [quote(unquote_to_bytes(wire_path), safe="/~")]
    if wire_path.isascii() and wire_path.decode() not in paths:
        paths.append(wire_path.decode())

    requests: list[AWSRequest] = []
    params = [(k, v) for k, v in pairs if not (auth.presigned and k == "X-Amz-Signature")]
    try:
        for key, value in params:
            key.encode(), value.encode()
    except UnicodeEncodeError:  # not UTF-8 on the wire: only the query as sent can verify
        pass
    else:  # botocore URI-encodes and sorts the pairs
        requests.append(_request(method, "", hdrs, auth, params))
    sent = "&".join(
        s
        for s in raw_query.split("&")
        if s and not (auth.presigned and _form_decode(s.partition("=")[0]) == "X-Amz-Signature")
    )
    if sent.isascii() and (sent or not requests):  # botocore sorts the pairs as they are
        requests.append(_request(method, sent, hdrs, auth, None))
    for path in paths:
        for request in requests:
            yield request, path


def _request(
    method: str,
    query: str,
    hdrs: dict[str, list[str]],
    auth: _Auth,
    params: list[tuple[str, str]] | None,
) -> AWSRequest:
    request = AWSRequest(method=method, url="http://s3.invalid/" + ("?" + query if query else ""))
    for name in auth.signed_headers:
        for value in hdrs.get(name, []):
            request.headers[name] = value
    if params:
        request.params = params
    request.context["timestamp"] = auth.amz_date
    return request


# Bodies


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _checksum(algorithm: str) -> Hash | None:
    """A running checksum for an x-amz-checksum-<algorithm>; None when we cannot compute it."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm in ("sha1", "sha256", "sha512"):
        return hashlib.new(algorithm)
    try:  # crc32c, crc64nvme, xxhash*: botocore's, when it has the CRT
        from botocore import httpchecksum
    except ImportError:  # pragma: no cover
        return None
    cls: Any = getattr(httpchecksum, "_CHECKSUM_CLS", {}).get(algorithm)
    if cls is None:
        return None
    try:
        return cast(Hash, cls())
    except Exception:  # pragma: no cover - a CRT that fails to load
        return None


def body_reader(
    signed: Signed | None,
    headers: Mapping[str, str],
    raw: BinaryIO,
    *,
    header_checksums: bool = True,
    unchecked: bool = False,
) -> BinaryIO:
    """The object's bytes of a request body ``raw`` (a blocking binary stream), decoded and
    checked as they are read, in bounded memory.

    aws-chunked bodies (Content-Encoding aws-chunked or a STREAMING-* payload) are de-chunked:
    each chunk's signature is verified (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], chained from
    ``signed.seed_signature``, the final 0-size chunk and the trailer too) before ``read()``
    returns the chunk's last bytes. x-amz-checksum-* values (header or trailer) are checked
    against the decoded bytes, a hex x-amz-content-sha256 against the body as sent, and the
    length against x-amz-decoded-content-length / Content-Length, when the body ends: a failure
    raises S3Error from ``read()`` before it returns ``b""`` (XAmzContentSHA256Mismatch,
    BadDigest, IncompleteBody, SignatureDoesNotMatch, InvalidRequest for bad framing).

    x-amz-checksum-* *headers* are taken for the body's unless x-amz-checksum-type is sent or
    ``header_checksums`` is false: CompleteMultipartUpload's are the whole object's, not its
    XML body's, so the gateway passes ``header_checksums=False`` there.

    ``unchecked``: chunk signatures may go unverified when ``signed`` is None (auth is off,
    so the server holds no secret to verify them with); the bytes are de-chunked all the same.

    The reader keeps ``trailers`` (name -> value) and ``checksums`` (algorithm -> the base64
    value that verified).
    """
    hdrs = {name.lower(): value for name, value in headers.items()}
    payload = (
        signed.payload if signed is not None else hdrs.get("x-amz-content-sha256", "")
    ).strip() or UNSIGNED_PAYLOAD
    if payload not in _PAYLOADS and not _HEX64.fullmatch(payload):
        if payload.startswith("STREAMING-"):
            raise S3Error("NotImplemented", f"x-amz-content-sha256 {payload[:60]} is not supported")
        raise S3Error("InvalidArgument", f"x-amz-content-sha256 {payload[:80]!r} is not valid")
    if payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER) and signed is None and not unchecked:
        raise S3Error("AccessDenied", f"{payload} needs a signed request")
    encodings = [e.strip().lower() for e in hdrs.get("content-encoding", "").split(",")]
    chunked = payload.startswith("STREAMING-") or (
        "aws-chunked" in encodings and not _HEX64.fullmatch(payload)
    )
    return cast(BinaryIO, _Body(signed, hdrs, payload, chunked, raw, header_checksums))


class _Body(io.RawIOBase):
    """A request body, de-chunked and checked as it is read (see :func:`body_reader`)."""

    def __init__(
        self,
        signed: Signed | None,
        hdrs: dict[str, str],
        payload: str,
        chunked: bool,
        raw: Any,
        header_checksums: bool,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._chunked = chunked
        self._signed = signed if payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER) else None
        self._signed_trailer = payload == STREAMING_SIGNED_TRAILER
        self._previous = signed.seed_signature if signed is not None else ""
        self._chunk_sha = hashlib.sha256()
        self._chunk_signature = ""
        self._expect_sha256 = bytes.fromhex(payload) if _HEX64.fullmatch(payload) else None
        self._sha256 = Offloaded(hashlib.sha256()) if self._expect_sha256 is not None else None
        self._length = _length(
            hdrs.get("x-amz-decoded-content-length" if chunked else "content-length")
        )
        # x-amz-checksum-* to check: algorithm -> base64 value (None: it comes in a trailer)
        self._expected: dict[str, str | None] = {}
        if header_checksums and "x-amz-checksum-type" not in hdrs:
            # (with x-amz-checksum-type they are a multipart object's, not this body's)
            for name, value in hdrs.items():
                algorithm = name.removeprefix(_CHECKSUM_PREFIX)
                if (
                    name.startswith(_CHECKSUM_PREFIX)
                    and algorithm not in _NOT_CHECKSUMS
                    and _b64(value) is not None  # not a composite "<base64>-<parts>"
                ):
                    self._expected[algorithm] = value.strip()
        self._declared = [
            n.strip().lower() for n in hdrs.get("x-amz-trailer", "").split(",") if n.strip()
        ]
        for name in self._declared:
            if name.startswith(_CHECKSUM_PREFIX):
                self._expected.setdefault(name.removeprefix(_CHECKSUM_PREFIX), None)
        self._running: dict[str, Offloaded] = {}
        for algorithm in self._expected:
            running = _checksum(algorithm)
            if running is not None:
                self._running[algorithm] = Offloaded(running)
        self.trailers: dict[str, str] = {}
        self.checksums: dict[str, str] = {}
        self._buf = bytearray()  # read ahead of a chunk header
        self._in_chunk = 0  # bytes left of the current chunk's data
        self._total = 0  # decoded bytes returned
        self._done = False
        self._error: S3Error | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self.read(1 << 20):
                parts.append(part)
            return b"".join(parts)
        if self._error is not None:
            raise self._error
        if self._done or size == 0:
            return b""
        try:
            return self._read_chunked(size) if self._chunked else self._read_plain(size)
        except S3Error as e:
            self._error = e
            raise

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    # the two framings

    def _read_plain(self, size: int) -> bytes:
        parts = []
        got = 0
        while got < size:
            want = size - got
            if self._length is not None:
                want = min(want, self._length - self._total)
                if want <= 0:
                    self._finish()
                    break
            data = self._pull(want)
            if not data:
                self._finish()
                break
            self._deliver(data)
            parts.append(data)
            got += len(data)
            if self._total == self._length:
                self._finish()
                break
        return b"".join(parts)

    def _read_chunked(self, size: int) -> bytes:
        parts = []
        got = 0
        while got < size and not self._done:
            if not self._in_chunk:
                self._chunk_header()
                continue
            data = self._take(min(self._in_chunk, size - got))
            if not data:
                raise S3Error("IncompleteBody", "The body ended inside an aws-chunked chunk.")
            self._in_chunk -= len(data)
            if self._signed is not None:
                self._chunk_sha.update(data)
            self._deliver(data)
            parts.append(data)
            got += len(data)
            if not self._in_chunk:
                self._chunk_end()
        return b"".join(parts)

    # raw stream

    def _pull(self, n: int) -> bytes:
        data = self._raw.read(n)
        if data is None:  # pragma: no cover - a non-blocking stream
            data = b""
        data = bytes(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        return data

    def _take(self, n: int) -> bytes:
        if self._buf:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        return self._pull(n)

    def _line(self) -> bytes | None:
        """The next CRLF- (or LF-) ended line, without its end; None at the body's end."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line.removesuffix(b"\r")
            if len(self._buf) > _MAX_LINE:
                raise S3Error("InvalidRequest", "An aws-chunked header line is too long.")
            data = self._pull(_FILL)
            if not data:
                if not self._buf:
                    return None
                line = bytes(self._buf)
                self._buf.clear()
                return line.removesuffix(b"\r")
            self._buf += data

    # aws-chunked

    def _chunk_header(self) -> None:
        line = self._line()
        if line is None:
            raise S3Error("IncompleteBody", "The body ended before its final aws-chunked chunk.")
        size_text, _, extensions = line.partition(b";")
        size_text = size_text.strip()
        if (
            not size_text
            or len(size_text) > 16
            or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise S3Error("InvalidRequest", f"Malformed aws-chunked chunk header {line[:80]!r}.")
        size = int(size_text, 16)
        signature = None
        for extension in extensions.split(b";"):
            name, _, value = extension.partition(b"=")
            if name.strip() == b"chunk-signature":
                signature = value.strip().decode("latin-1")
        if self._signed is not None:
            if signature is None or not _HEX64.fullmatch(signature):
                raise S3Error(
                    "SignatureDoesNotMatch", "An aws-chunked chunk has no chunk-signature."
                )
            self._chunk_signature = signature.lower()
        if size:
            self._in_chunk = size
            return
        if self._signed is not None:
            self._verify_chunk()
        self._final()

    def _chunk_end(self) -> None:
        while len(self._buf) < 2:
            data = self._pull(_FILL)
            if not data:
                break
            self._buf += data
        if self._buf[:2] != b"\r\n":
            raise S3Error("IncompleteBody", "An aws-chunked chunk is not followed by CRLF.")
        del self._buf[:2]
        if self._signed is not None:
            self._verify_chunk()

    def _verify_chunk(self) -> None:
        assert self._signed is not None
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._signed.amz_date,
                self._signed.scope,
                self._previous,
                EMPTY_SHA256,
                self._chunk_sha.hexdigest(),
            )
        )
        expected = hmac.new(self._signed.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise S3Error(
                "SignatureDoesNotMatch",
                "The chunk signature we calculated does not match the signature you provided.",
            )
        self._previous = expected
        self._chunk_sha = hashlib.sha256()

    def _final(self) -> None:
        """After the 0-size chunk: trailer lines up to an empty line (or the end)."""
        trailers: list[tuple[str, str]] = []
        signature = None
        size = 0
        while (line := self._line()) is not None and line.strip():
            size += len(line)
            if size > _MAX_TRAILERS:
                raise S3Error("InvalidRequest", "The aws-chunked trailers are too long.")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:  # "x-amz-trailer-signature=<hex>", as some encoders write it
                name, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                raise S3Error("InvalidRequest", f"Malformed aws-chunked trailer {line[:80]!r}.")
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature":
                signature = value.lower()
            else:
                trailers.append((name, value))
        rest = bytes(self._buf) + self._pull(_FILL)
        self._buf.clear()
        if rest.strip():
            raise S3Error("InvalidRequest", "There is data after the final aws-chunked chunk.")
        if self._signed is not None:
            if trailers and not self._signed_trailer:
                raise S3Error("InvalidRequest", f"{STREAMING_SIGNED} bodies have no trailers.")
            if self._signed_trailer:
                self._verify_trailer(trailers, signature)
        self.trailers = dict(trailers)
        missing = [n for n in self._declared if n not in self.trailers]
        if missing:
            raise S3Error("InvalidRequest", f"The declared trailer {missing[0]} is missing.")
        for name, value in self.trailers.items():
            algorithm = name.removeprefix(_CHECKSUM_PREFIX)
            if name.startswith(_CHECKSUM_PREFIX) and self._expected.get(algorithm, "") is None:
                self._expected[algorithm] = value
        self._finish()

    def _verify_trailer(self, trailers: list[tuple[str, str]], signature: str | None) -> None:
        assert self._signed is not None
        if signature is None or not _HEX64.fullmatch(signature):
            raise S3Error("SignatureDoesNotMatch", "The trailer has no x-amz-trailer-signature.")
        forms = {
            "".join(f"{n}:{v}\n" for n, v in trailers),
            "".join(f"{n}:{v}\n" for n, v in sorted(trailers)),
        }
        if not trailers:
            forms.add("\n")
        for form in forms:
            to_sign = "\n".join(
                (
                    "AWS4-HMAC-SHA256-TRAILER",
                    self._signed.amz_date,
                    self._signed.scope,
                    self._previous,
                    hashlib.sha256(form.encode("latin-1")).hexdigest(),
                )
            )
            key = self._signed.signing_key
            expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature):
                return
        raise S3Error(
            "SignatureDoesNotMatch",
            "The trailer signature we calculated does not match the signature you provided.",
        )

    # every byte, and the end

    def _deliver(self, data: bytes) -> None:
        self._total += len(data)
        if self._chunked and self._length is not None and self._total > self._length:
            raise S3Error(
                "InvalidRequest", "The body is longer than its x-amz-decoded-content-length."
            )
        for running in self._running.values():
            running.update(data)

    def _finish(self) -> None:
        self._done = True
        if self._length is not None and self._total != self._length:
            raise S3Error(
                "IncompleteBody",
                f"The body has {self._total} bytes where "
                f"{'x-amz-decoded-content-length' if self._chunked else 'Content-Length'} "
                f"says {self._length}.",
            )
        if self._sha256 is not None and self._sha256.digest() != self._expect_sha256:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        for algorithm, value in self._expected.items():
            running = self._running.get(algorithm)
            if running is None or value is None:
                continue  # one we cannot compute, or an undeclared trailer that did not come
            if _b64(value) != running.digest():
                raise S3Error(
                    "BadDigest",
                    f"The {algorithm.upper()} you specified did not match the calculated checksum.",
                )
            self.checksums[algorithm] = value


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _length(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", f"{value[:40]!r} is not a length")
    return int(value)


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_QUERY_CREDENTIAL = re.compile(r"(?:^|&)X-Amz-Credential=([^/%&]+)(?:/|%2F)", re.IGNORECASE)


def access_key_of(authorization: str, raw_query: str) -> str | None:
    """The access key a request names (header or presigned query), unverified; None if none.

    Only to find a datum's session before the request is checked (``authenticate`` verifies
    the signature when auth is on)."""
    found = _CREDENTIAL.search(authorization) if authorization else None
    if found is None and "X-Amz-Credential" in raw_query:
        found = _QUERY_CREDENTIAL.search(raw_query)
    return found.group(1) if found else None
