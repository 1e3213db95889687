"""One exception hierarchy for all of Tusk.

Every class carries a stable ``code`` (for JSON bodies and scripts), an HTTP ``status`` (for the
API edge, later) and an ``exit_code`` (for the CLI). Messages are one line: what was wrong and,
where it helps, what to do.
"""

from __future__ import annotations


class TuskError(Exception):
    """Base of every error Tusk raises on purpose."""

    code = "internal"
    status = 500
    exit_code = 1
    multiline = False  # the message goes on after its first line (a failed check's log)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def shown(self) -> str:
        """The message as edges show it: one line, unless the error carries more."""
        text = self.message if self.multiline else " ".join(self.message.splitlines())
        return text or self.code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidArgument(TuskError):
    """The request itself is malformed: a bad name, path, address or option."""

    code = "invalid_argument"
    status = 400
    exit_code = 2


class InvalidName(InvalidArgument):
    code = "invalid_name"


class InvalidPath(InvalidArgument):
    code = "invalid_path"


class InvalidSpec(InvalidArgument):
    """A pipeline spec that cannot be accepted; the message names the field."""

    code = "invalid_spec"


class QueryError(InvalidArgument):
    """A SQL query (``tusk sql``, ``tusk diff table``) that DuckDB could not run."""

    code = "query_error"


class QueryRefused(QueryError):
    """A SQL statement that would write, attach or load something, or read outside Tusk."""

    code = "query_refused"


class Unauthorized(TuskError):
    """A request whose credentials are missing or wrong (a token, a webhook's signature)."""

    code = "unauthorized"
    status = 401
    exit_code = 8


class PermissionDenied(TuskError):
    """A caller who is known but lacks the role an operation needs."""

    code = "permission_denied"
    status = 403
    exit_code = 9


class BranchProtected(PermissionDenied):
    """A direct write to, move or delete of a protected branch: only a merge moves it."""

    code = "branch_protected"


class NotFound(TuskError):
    code = "not_found"
    status = 404
    exit_code = 3


class RepoNotFound(NotFound):
    code = "repo_not_found"


class ProjectNotFound(NotFound):
    code = "project_not_found"


class BranchNotFound(NotFound):
    code = "branch_not_found"


class TagNotFound(NotFound):
    code = "tag_not_found"


class CommitNotFound(NotFound):
    code = "commit_not_found"


class FileNotFound(NotFound):
    code = "file_not_found"


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class SecretNotFound(NotFound):
    code = "secret_not_found"


class DatumNotFound(NotFound):
    code = "datum_not_found"


class Conflict(TuskError):
    """The request is well formed but the current state forbids it."""

    code = "conflict"
    status = 409
    exit_code = 4


class AlreadyExists(Conflict):
    code = "already_exists"


class CommitFinished(Conflict):
    code = "commit_finished"


class InUse(Conflict):
    code = "in_use"


class MergeConflict(Conflict):
    """A merge whose two sides changed the same paths differently, with no strategy or
    resolution for them; nothing was committed."""

    code = "merge_conflict"


class CheckFailed(TuskError):
    """A check (``kind: check``) that failed, timed out or could not run on a candidate
    commit or merge result: the branch it gates did not move. The message ends with the tail
    of the check's log."""

    code = "check_failed"
    status = 412
    exit_code = 10
    multiline = True


class ReferenceBroken(Conflict):
    """A file imported by reference (``tusk import``) whose source object changed or vanished
    since: its recorded bytes cannot be served, and no other bytes are."""

    code = "reference_broken"


class PathConflict(Conflict):
    """A file where a directory is needed, or the other way round."""

    code = "path_conflict"


class JobFailed(TuskError):
    """What was waited for cannot finish: the job that makes it failed or was stopped."""

    code = "job_failed"
    status = 409
    exit_code = 1


class Timeout(TuskError):
    code = "timeout"
    status = 504
    exit_code = 5


class SourceError(TuskError):
    """A local file, stdin or URL given as a data source could not be read."""

    code = "source_error"
    status = 400
    exit_code = 6


class GitFetchError(SourceError):
    """A git remote that could not be fetched, or that lacks the commit asked for."""

    code = "git_fetch_failed"
    status = 502


class InvalidImage(InvalidArgument):
    """An image reference that is malformed, or an image Tusk cannot run here (a media type it
    does not unpack, another architecture, a layer whose digest does not match)."""

    code = "invalid_image"


class ImageCacheFull(InvalidImage):
    """An image that would take the image cache over its quota (``image_cache_quota``)."""

    code = "image_cache_full"
    status = 507


class ImageNotFound(NotFound):
    """An image reference that names no image (no registry tag, no layout, no archive)."""

    code = "image_not_found"


class ImagePullDenied(PermissionDenied):
    """A registry that refused an image pull: credentials missing, wrong, or without access."""

    code = "image_pull_denied"


class ToolMissing(TuskError):
    """A program Tusk runs (skopeo, umoci, bubblewrap) is not installed on this machine."""

    code = "tool_missing"
    status = 503


class StorageError(TuskError):
    """The object store or metadata store failed or holds damaged data."""

    code = "storage_error"
    status = 503
    exit_code = 7


class Unavailable(StorageError):
    """A store that is down or unreachable (PostgreSQL restarting, S3 endpoint away): retry."""

    code = "unavailable"


class CorruptObject(StorageError):
    code = "corrupt_object"
