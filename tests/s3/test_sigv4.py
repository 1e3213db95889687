"""tusk.s3.sigv4: requests signed by botocore's own signers, verified; bodies decoded and checked.

Header auth is signed by botocore.auth.S3SigV4Auth, presigned URLs by S3SigV4QueryAuth (and
boto3's generate_presigned_url), STREAMING-UNSIGNED-PAYLOAD-TRAILER bodies by botocore's
AwsChunkedWrapper; STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] bodies (no client-side signer in
botocore) by an encoder written here from the published spec. The last tests capture what boto3
itself sends for put_object / upload_part (a before-send hook answers; no network).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
import zlib
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from tusk.s3 import sigv4
from tusk.s3.errors import S3Error

AK = "tok_0123456789abcdef"
SK = "s3cr3t/with+odd=chars"
HOST = "127.0.0.1:9000"
BASE = f"http://{HOST}"
EMPTY = hashlib.sha256(b"").hexdigest()


def secret_for(key: str) -> str | None:
    return {AK: SK}.get(key)


def wire(req: Any) -> tuple[str, str, str, dict[str, str]]:
    """What the gateway sees of a signed (prepared) request: method, raw path, raw query, headers
    (lower-case), with the Host header http.client adds (the URL's netloc)."""
    parts = urlsplit(req.url)
    headers = {
        k.lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in req.headers.items()
    }
    headers.setdefault("host", parts.netloc)
    return req.method, parts.path, parts.query, headers


def sign(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    region: str = "us-east-1",
    unsigned: bool = False,
    secret: str = SK,
) -> AWSRequest:
    req = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    if unsigned:
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(Credentials(AK, secret), "s3", region).add_auth(req)
    return req


def auth(req: Any, **kw: Any) -> sigv4.Signed | None:
    method, path, query, headers = wire(req)
    return sigv4.authenticate(method, path, query, headers, secret_for, **kw)


def code_of(fn: Any, *args: Any, **kw: Any) -> S3Error:
    with pytest.raises(S3Error) as info:
        fn(*args, **kw)
    return info.value


def read_all(reader: Any, n: int = 8 << 20) -> bytes:
    """As the gateway's chunker reads: read(n) until b''."""
    out = bytearray()
    while chunk := reader.read(n):
        out += chunk
    return bytes(out)


# Header auth


def test_anonymous_is_none() -> None:
    assert sigv4.authenticate("GET", "/b/k", "", {"host": HOST}, secret_for) is None


def test_get_with_query_needing_escapes() -> None:
    req = sign("GET", f"{BASE}/bucket?list-type=2&prefix=a%2Fb%20c&delimiter=%2F")
    signed = auth(req)
    assert signed is not None
    assert signed.access_key == AK and signed.secret == SK
    assert signed.payload == EMPTY
    assert signed.scope == f"{signed.amz_date[:8]}/us-east-1/s3/aws4_request"
    assert signed.seed_signature == req.headers["Authorization"].rsplit("=", 1)[1]
    assert signed.signing_key == _signing_key(SK, signed.amz_date[:8], "us-east-1")


def test_subresource_without_value_and_repeated_order() -> None:
    assert auth(sign("GET", f"{BASE}/bucket/key?uploads")) is not None
    assert auth(sign("POST", f"{BASE}/bucket/key?uploadId=x%2By&partNumber=3&b=2&a=1")) is not None


@pytest.mark.parametrize("key", ["dir a/ü+x!(1)'.txt", "a b", "plus+sign", "日本/語 ~-_.*"])
def test_key_with_spaces_unicode_plus(key: str) -> None:
    url = f"{BASE}/bucket/{quote(key, safe='/~')}"
    assert auth(sign("PUT", url, body=b"data")) is not None


def test_path_sent_unescaped_but_signed_escaped_and_vice_versa() -> None:
    # a client that signs "!" escaped (as botocore would) but sends it bare
    req = sign("GET", f"{BASE}/bucket/k%21x%27")
    method, _, query, headers = wire(req)
    assert sigv4.authenticate(method, "/bucket/k!x'", query, headers, secret_for) is not None
    # a client that signs the path exactly as it sends it
    assert auth(sign("GET", f"{BASE}/bucket/k!x'")) is not None


def test_query_sent_unescaped_but_signed_escaped() -> None:
    req = sign("GET", f"{BASE}/bucket?list-type=2&prefix=a%2Fb%20c")
    method, path, _, headers = wire(req)
    signed = sigv4.authenticate(method, path, "prefix=a/b+c&list-type=2", headers, secret_for)
    assert signed is not None


def test_put_hex_sha256_and_unsigned_payload() -> None:
    body = b"hello world"
    signed = auth(sign("PUT", f"{BASE}/bucket/k", body=body))
    assert signed is not None and signed.payload == hashlib.sha256(body).hexdigest()
    signed = auth(sign("PUT", f"{BASE}/bucket/k", body=body, unsigned=True))
    assert signed is not None and signed.payload == "UNSIGNED-PAYLOAD"


def test_any_region_from_the_scope() -> None:
    signed = auth(sign("GET", f"{BASE}/bucket", region="eu-west-3"))
    assert signed is not None and "/eu-west-3/s3/" in signed.scope


def test_date_header_instead_of_x_amz_date() -> None:
    req = sign("GET", f"{BASE}/bucket", {"Date": "x"})
    assert "X-Amz-Date" not in req.headers and "date" in req.headers["Authorization"]
    assert auth(req) is not None


def test_multi_valued_header_from_a_multidict() -> None:
    class Multi(dict):  # items() repeats a name, as Starlette's Headers does
        def items(self):  # type: ignore[override]
            return [*super().items(), ("x-amz-meta-tag", "b")]

    req = AWSRequest(method="GET", url=f"{BASE}/bucket/k")
    req.headers["x-amz-meta-tag"] = "a"
    req.headers["x-amz-meta-tag"] = "b"
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    method, path, query, headers = wire(req)
    headers["x-amz-meta-tag"] = "a"
    assert sigv4.authenticate(method, path, query, Multi(headers), secret_for) is not None


def test_wrong_secret_and_unknown_key() -> None:
    req = sign("GET", f"{BASE}/bucket", secret="not-the-secret")
    assert code_of(auth, req).code == "SignatureDoesNotMatch"
    method, path, query, headers = wire(sign("GET", f"{BASE}/bucket"))
    err = code_of(sigv4.authenticate, method, path, query, headers, lambda key: None)
    assert err.code == "InvalidAccessKeyId" and err.status == 403


def test_tampered_header_query_path_host() -> None:
    req = sign("PUT", f"{BASE}/bucket/key?x=1", {"x-amz-meta-color": "red"}, b"body")
    method, path, query, headers = wire(req)
    assert sigv4.authenticate(method, path, query, headers, secret_for) is not None
    for changed in (
        (method, path, query, {**headers, "x-amz-meta-color": "blue"}),
        (method, path, "x=2", headers),
        (method, path, "x=1&y=2", headers),
        (method, "/bucket/kez", query, headers),
        ("POST", path, query, headers),
        (method, path, query, {**headers, "host": "127.0.0.1:9001"}),
        (method, path, query, {**headers, "x-amz-content-sha256": EMPTY}),
    ):
        assert code_of(sigv4.authenticate, *changed, secret_for).code == "SignatureDoesNotMatch"
    # an x-amz-* header the client did not sign
    err = code_of(sigv4.authenticate, method, path, query,
                  {**headers, "x-amz-copy-source": "other/secret"}, secret_for)  # fmt: skip
    assert err.code == "AccessDenied" and "not signed" in err.message


def test_skewed_time() -> None:
    req = sign("GET", f"{BASE}/bucket")
    assert auth(req, now=time.time() + 14 * 60) is not None
    err = code_of(auth, req, now=time.time() + 16 * 60)
    assert err.code == "RequestTimeTooSkewed" and err.status == 403
    assert code_of(auth, req, now=time.time() - 16 * 60).code == "RequestTimeTooSkewed"


def test_malformed_authorization() -> None:
    method, path, query, headers = wire(sign("GET", f"{BASE}/bucket"))
    good = headers["authorization"]
    for bad in (
        "AWS4-HMAC-SHA256 Credential=x",
        good.replace("/s3/", "/ec2/"),
        good.replace("aws4_request", "aws5_request"),
        good.replace("/us-east-1/", "/"),
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-ECDSA-P256-SHA256 Credential=a/b/c/s3/aws4_request, SignedHeaders=host, Signature=x",
    ):
        err = code_of(sigv4.authenticate, method, path, query,
                      {**headers, "authorization": bad}, secret_for)  # fmt: skip
        assert err.code == "AuthorizationHeaderMalformed", (bad, err.code)
    v2 = {**headers, "authorization": f"AWS {AK}:c2lnbmF0dXJl"}
    assert code_of(sigv4.authenticate, method, path, query, v2, secret_for).code == "InvalidRequest"
    no_sha = {k: v for k, v in headers.items() if k != "x-amz-content-sha256"}
    err = code_of(sigv4.authenticate, method, path, query, no_sha, secret_for)
    assert err.code == "InvalidRequest"


# Presigned URLs


def presign(method: str, url: str, expires: int = 60) -> AWSRequest:
    req = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", "us-east-1", expires=expires).add_auth(req)
    return req


def test_presigned_get_valid_expired_tampered() -> None:
    req = presign("GET", f"{BASE}/bucket/{quote('a b/ü+x', safe='/~')}?versionId=v%2B1")
    signed = auth(req)
    assert signed is not None and signed.payload == "UNSIGNED-PAYLOAD"
    assert signed.access_key == AK
    assert auth(req, now=time.time() + 50) is not None
    err = code_of(auth, req, now=time.time() + 120)
    assert (err.code, err.message, err.status) == ("AccessDenied", "Request has expired", 403)
    method, path, query, headers = wire(req)
    for changed in (
        (method, path + "x", query, headers),
        (method, path, query.replace("X-Amz-Expires=60", "X-Amz-Expires=600"), headers),
        (method, path, query.replace("versionId=v%2B1", "versionId=v%2B2"), headers),
        ("PUT", path, query, headers),
    ):
        assert code_of(sigv4.authenticate, *changed, secret_for).code == "SignatureDoesNotMatch"
    unsigned = {**headers, "x-amz-copy-source": "b/k"}
    err = code_of(sigv4.authenticate, method, path, query, unsigned, secret_for)
    assert err.code == "AccessDenied"
    both = {**headers, "authorization": "AWS4-HMAC-SHA256 x"}
    err = code_of(sigv4.authenticate, method, path, query, both, secret_for)
    assert err.code == "InvalidArgument"


def test_presigned_not_valid_yet() -> None:
    req = presign("GET", f"{BASE}/b/k")
    assert auth(req, now=time.time() - 10 * 60) is not None
    err = code_of(auth, req, now=time.time() - 20 * 60)
    assert err.code == "AccessDenied"


def test_presigned_expires_bounds() -> None:
    assert auth(presign("GET", f"{BASE}/b/k", expires=604800)) is not None
    err = code_of(auth, presign("GET", f"{BASE}/b/k", expires=604801))
    assert err.code == "InvalidArgument"
    method, path, query, headers = wire(presign("GET", f"{BASE}/b/k"))
    bad = query.replace("X-Amz-Expires=60", "X-Amz-Expires=-5")
    assert code_of(sigv4.authenticate, method, path, bad, headers, secret_for).code == (
        "InvalidArgument"
    )


def test_presigned_by_boto3_itself() -> None:
    s3 = _client(BASE)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "dir/a b+ü.txt"}, ExpiresIn=300
    )
    parts = urlsplit(url)
    signed = sigv4.authenticate("GET", parts.path, parts.query, {"host": parts.netloc}, secret_for)
    assert signed is not None and signed.access_key == AK
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=300, HttpMethod="PUT"
    )
    parts = urlsplit(url)
    signed = sigv4.authenticate("PUT", parts.path, parts.query, {"host": parts.netloc}, secret_for)
    assert signed is not None
    reader = sigv4.body_reader(signed, {"content-length": "5"}, io.BytesIO(b"12345"))
    assert read_all(reader) == b"12345"


# Plain bodies


@pytest.mark.parametrize("repeat", [1000, 100_000])  # 11 kB; 1.1 MB: hashed on a thread
def test_body_hex_sha256_ok_and_mismatch_at_eof(repeat: int) -> None:
    body = b"hello world" * repeat
    req = sign("PUT", f"{BASE}/bucket/k", body=body)
    signed = auth(req)
    headers = wire(req)[3]
    assert read_all(sigv4.body_reader(signed, headers, io.BytesIO(body)), 7) == body
    bad = body[:-1] + b"X"
    for hdrs in (headers, {**headers, "content-length": str(len(bad))}):
        reader = sigv4.body_reader(signed, hdrs, io.BytesIO(bad))
        got = []
        with pytest.raises(S3Error) as info:
            while chunk := reader.read(4096):
                got.append(chunk)
        assert info.value.code == "XAmzContentSHA256Mismatch"
        assert len(b"".join(got)) < len(bad)  # raised before b'', here even before the last bytes
        with pytest.raises(S3Error):  # and again
            reader.read(1)


def test_body_short_of_content_length() -> None:
    reader = sigv4.body_reader(None, {"content-length": "10"}, io.BytesIO(b"12345"))
    assert code_of(read_all, reader).code == "IncompleteBody"


@pytest.mark.parametrize("repeat", [1, 100_000])  # 10 bytes; 1 MB: hashed on threads
def test_body_header_checksums(repeat: int) -> None:
    body = b"some bytes" * repeat
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    sha1 = base64.b64encode(hashlib.sha1(body).digest()).decode()
    headers = {"x-amz-checksum-crc32": crc, "x-amz-checksum-sha1": sha1}
    reader = sigv4.body_reader(None, headers, io.BytesIO(body))
    assert read_all(reader) == body
    assert reader.checksums == {"crc32": crc, "sha1": sha1}  # type: ignore[attr-defined]
    bad = {"x-amz-checksum-crc32": base64.b64encode(b"\0\0\0\0").decode()}
    assert code_of(read_all, sigv4.body_reader(None, bad, io.BytesIO(body))).code == "BadDigest"
    # a multipart object's checksums (CompleteMultipartUpload) are not its XML body's
    for headers, kw in (
        (bad, {"header_checksums": False}),
        ({**bad, "x-amz-checksum-type": "FULL_OBJECT"}, {}),
        ({"x-amz-checksum-crc32": "AAAAAA==-3"}, {}),
    ):
        reader = sigv4.body_reader(None, headers, io.BytesIO(body), **kw)
        assert read_all(reader) == body and reader.checksums == {}  # type: ignore[attr-defined]


def test_readinto_and_buffered() -> None:
    body = bytes(range(256)) * 100
    reader = sigv4.body_reader(None, {}, io.BytesIO(body))
    assert io.BufferedReader(reader, 1000).read() == body  # type: ignore[arg-type]


# aws-chunked, signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]), from the spec


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


class _StreamingSigner(S3SigV4Auth):
    def __init__(self, payload: str) -> None:
        super().__init__(Credentials(AK, SK), "s3", "us-east-1")
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


def signed_chunked(
    data: bytes,
    *,
    chunk: int = 65536,
    trailer: bool = False,
    tamper: int | None = None,
    tamper_data: bool = False,
    bad_trailer_signature: bool = False,
    crc: bytes | None = None,
) -> tuple[AWSRequest, bytes]:
    """A PUT signed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] and its aws-chunked body,
    encoded as https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html says;
    ``tamper``: the index of the chunk (len: the final one) whose signature is altered."""
    payload = sigv4.STREAMING_SIGNED_TRAILER if trailer else sigv4.STREAMING_SIGNED
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    if trailer:
        headers["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    req = AWSRequest(method="PUT", url=f"{BASE}/bucket/obj", headers=headers)
    _StreamingSigner(payload).add_auth(req)
    amz_date = req.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = _signing_key(SK, amz_date[:8], "us-east-1")
    previous = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    out = bytearray()
    for i, piece in enumerate(pieces):
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY,
             hashlib.sha256(piece).hexdigest()]
        )  # fmt: skip
        signature = previous = _hmac_hex(key, sts)
        if tamper == i:
            signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        if tamper_data and i == 0:
            piece = b"X" + piece[1:]
        out += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece
        if piece or not trailer:
            out += b"\r\n"
    if trailer:
        value = base64.b64encode(crc or zlib.crc32(data).to_bytes(4, "big")).decode()
        canonical = f"x-amz-checksum-crc32:{value}\n"
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
             hashlib.sha256(canonical.encode()).hexdigest()]
        )  # fmt: skip
        signature = _hmac_hex(key, sts)
        if bad_trailer_signature:
            signature = "0" * 64
        out += canonical.replace("\n", "\r\n").encode()
        out += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return req, bytes(out)


def _decode(req: AWSRequest, body: bytes, n: int = 8 << 20) -> bytes:
    signed = auth(req)
    assert signed is not None
    return read_all(sigv4.body_reader(signed, wire(req)[3], io.BytesIO(body)), n)


DATA = bytes(range(251)) * 1000  # 251000 bytes: 3 full 64 KiB chunks and a short one


@pytest.mark.parametrize("trailer", [False, True])
@pytest.mark.parametrize("n", [1, 1000, 65536, 8 << 20])
def test_signed_chunked_valid(trailer: bool, n: int) -> None:
    data = DATA if n > 1 else DATA[:3000]
    req, body = signed_chunked(data, chunk=65536 if n > 1 else 1000, trailer=trailer)
    signed = auth(req)
    assert signed is not None and signed.payload.startswith("STREAMING-AWS4-HMAC-SHA256")
    assert _decode(req, body, n) == data


def test_signed_chunked_empty_body() -> None:
    req, body = signed_chunked(b"")
    assert _decode(req, body) == b""


@pytest.mark.parametrize("tamper", [0, 1, 3, 4])  # 4: the final 0-size chunk
def test_signed_chunked_bad_chunk_signature(tamper: int) -> None:
    req, body = signed_chunked(DATA, tamper=tamper)
    assert code_of(_decode, req, body).code == "SignatureDoesNotMatch"
    # read chunk by chunk: the chunks before the bad one come out, the bad one's end never does
    signed = auth(req)
    reader = sigv4.body_reader(signed, wire(req)[3], io.BytesIO(body))
    for _ in range(min(tamper, 3)):  # chunk 3 is short, 4 the final 0-size one
        assert len(reader.read(65536)) == 65536
    with pytest.raises(S3Error) as info:
        reader.read(65536)
    assert info.value.code == "SignatureDoesNotMatch"


def test_signed_chunked_altered_data_truncated_and_short() -> None:
    req, body = signed_chunked(DATA, tamper_data=True)
    assert code_of(_decode, req, body).code == "SignatureDoesNotMatch"
    req, body = signed_chunked(DATA)
    assert code_of(_decode, req, body[:-100]).code == "IncompleteBody"
    assert code_of(_decode, req, body[:70000]).code == "IncompleteBody"
    signed = auth(req)
    headers = {**wire(req)[3], "x-amz-decoded-content-length": str(len(DATA) + 1)}
    reader = sigv4.body_reader(signed, headers, io.BytesIO(body))
    assert code_of(read_all, reader).code == "IncompleteBody"


def test_signed_trailer_bad_signature_and_bad_crc() -> None:
    req, body = signed_chunked(DATA, trailer=True, bad_trailer_signature=True)
    assert code_of(_decode, req, body).code == "SignatureDoesNotMatch"
    req, body = signed_chunked(DATA, trailer=True, crc=b"\0\0\0\0")
    assert code_of(_decode, req, body).code == "BadDigest"


def test_signed_stream_needs_a_signed_request() -> None:
    headers = {"x-amz-content-sha256": sigv4.STREAMING_SIGNED, "content-encoding": "aws-chunked"}
    assert code_of(sigv4.body_reader, None, headers, io.BytesIO(b"")).code == "AccessDenied"


def test_reads_in_bounded_pieces() -> None:
    class Raw(io.BytesIO):
        biggest = 0

        def read(self, n: int | None = -1) -> bytes:
            assert n is not None and n >= 0
            Raw.biggest = max(Raw.biggest, n)
            return super().read(n)

    data = DATA * 8
    req, body = signed_chunked(data, chunk=1 << 20)
    reader = sigv4.body_reader(auth(req), wire(req)[3], Raw(body))
    assert read_all(reader, 100_000) == data
    assert Raw.biggest <= 100_000


# aws-chunked, unsigned with a trailing checksum (STREAMING-UNSIGNED-PAYLOAD-TRAILER), by botocore


def unsigned_trailer(data: bytes, chunk: int = 65536) -> tuple[AWSRequest, bytes]:
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    req = AWSRequest(method="PUT", url=f"https://{HOST}/bucket/obj", headers=headers)
    req.context["checksum"] = {
        "request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32", "algorithm": "crc32"}
    }
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    assert req.headers["X-Amz-Content-SHA256"] == sigv4.STREAMING_UNSIGNED_TRAILER
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=chunk
    )
    return req, wrapper.read()


def test_unsigned_trailer_crc32_ok_and_mismatch() -> None:
    req, body = unsigned_trailer(DATA)
    signed = auth(req)
    assert signed is not None and signed.payload == sigv4.STREAMING_UNSIGNED_TRAILER
    reader = sigv4.body_reader(signed, wire(req)[3], io.BytesIO(body))
    assert read_all(reader, 5000) == DATA
    crc = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()
    assert reader.trailers == {"x-amz-checksum-crc32": crc}  # type: ignore[attr-defined]
    assert reader.checksums == {"crc32": crc}  # type: ignore[attr-defined]
    bad = body.replace(crc.encode(), b"AAAAAA==")
    assert code_of(_decode, req, bad).code == "BadDigest"
    missing = body[: body.index(b"x-amz-checksum-crc32")] + b"\r\n"
    assert code_of(_decode, req, missing).code == "InvalidRequest"


def test_unsigned_trailer_anonymous() -> None:
    req, body = unsigned_trailer(b"abc")
    headers = {k: v for k, v in wire(req)[3].items() if k != "authorization"}
    assert read_all(sigv4.body_reader(None, headers, io.BytesIO(body))) == b"abc"


# What boto3 itself sends


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


class _Raw:
    def stream(self, **kw: Any) -> Any:
        yield b""


@pytest.mark.parametrize("endpoint", [BASE, f"https://{HOST}"])
@pytest.mark.parametrize("op", ["put_object", "upload_part"])
def test_what_boto3_sends(endpoint: str, op: str) -> None:
    sent: list[tuple[Any, bytes]] = []

    def before_send(request: Any, **kw: Any) -> AWSResponse:
        body = request.body
        body = body.read() if hasattr(body, "read") else (body or b"")
        sent.append((request, body))
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Raw())

    s3 = _client(endpoint)
    s3.meta.events.register("before-send", before_send)
    data = DATA * 10  # 2.4 MiB: three of boto3's 1 MiB aws-chunks over https
    key = "dir/a b+ü.bin"
    if op == "put_object":
        s3.put_object(Bucket="bucket", Key=key, Body=data)
    else:
        s3.upload_part(Bucket="bucket", Key=key, UploadId="u/1+2", PartNumber=2, Body=data)
    [(request, body)] = sent
    method, path, query, headers = wire(request)
    assert path == "/bucket/dir/a%20b%2B%C3%BC.bin"
    signed = sigv4.authenticate(method, path, query, headers, secret_for)
    assert signed is not None
    if endpoint.startswith("http:"):
        # over http boto3 signs the body's SHA-256 and sends a CRC32 header
        assert signed.payload == hashlib.sha256(data).hexdigest()
        assert "x-amz-checksum-crc32" in headers and body == data
    else:
        # over https: aws-chunked, unsigned, a CRC32 trailer, HTTP chunked on the wire
        assert signed.payload == sigv4.STREAMING_UNSIGNED_TRAILER
        assert headers["content-encoding"] == "aws-chunked"
        assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
        assert headers["transfer-encoding"] == "chunked" and body != data
    reader = sigv4.body_reader(signed, headers, io.BytesIO(body))
    assert read_all(reader, 3 << 20) == data
    assert set(reader.checksums) == {"crc32"}  # type: ignore[attr-defined]
