"""S3 errors: an ``S3Error`` carries the S3 error code and HTTP status a client expects.

The gateway answers every failure as S3's XML error document (``<Error><Code>..``), so
boto3, the aws CLI, s3fs and DuckDB raise their own "NoSuchKey"/"AccessDenied" errors. A
:class:`tusk.errors.TuskError` raised by the services below is mapped by :func:`from_tusk`.
"""

from __future__ import annotations

from tusk.errors import TuskError

# code -> HTTP status, for the codes the gateway answers with
STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "BadDigest": 400,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "ExpiredToken": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """One S3 error answer: ``code`` (S3's), a message for people, and the HTTP status."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)


# Tusk's error codes (tusk.errors) -> S3's
_FROM_TUSK = {
    "repo_not_found": "NoSuchBucket",
    "branch_not_found": "NoSuchBucket",
    "project_not_found": "NoSuchBucket",
    "commit_not_found": "NoSuchBucket",
    "file_not_found": "NoSuchKey",
    "upload_not_found": "NoSuchUpload",
    "invalid_path": "InvalidArgument",
    "path_conflict": "InvalidRequest",
    "storage_error": "InternalError",
    "corrupt_object": "InternalError",
    "permission_denied": "AccessDenied",
    "branch_protected": "AccessDenied",
    "check_failed": "PreconditionFailed",
    "unauthorized": "AccessDenied",
    "invalid_name": "InvalidArgument",
    "invalid_argument": "InvalidArgument",
    "commit_finished": "AccessDenied",
    "unavailable": "ServiceUnavailable",
}


def from_tusk(exc: TuskError) -> S3Error:
    """The S3 error for a Tusk error (by its stable ``code``); InternalError when unknown."""
    code = _FROM_TUSK.get(exc.code)
    if code is None:
        status = getattr(exc, "status", 500)
        code = "InvalidRequest" if 400 <= status < 500 else "InternalError"
    return S3Error(code, exc.message)
