"""Egress (Pachyderm's ``egress``): each finished output commit, copied out after its job.

Targets (one per pipeline; :class:`tusk.pps.spec.Egress` checks the spec):

- ``URL`` (Pachyderm's ``object_storage.url`` is the same): every file of the commit is
  written at ``<prefix>/<path>``, streamed block by block from the store, never a whole file in
  memory. ``s3://bucket/prefix?endpoint=...&region=...`` goes through Tusk's own S3 backend
  (:mod:`tusk.storage.backends.s3`: the same options, credentials from the AWS environment,
  never the URL), and Pachyderm's (Go CDK's) spellings of the options are understood too:
  ``endpoint_url``, ``disableSSL``, ``s3ForcePathStyle``. ``file:///dir`` or ``/dir`` is a
  folder of this machine. Files are added or replaced; files of earlier commits are not
  removed, as in Pachyderm.
- ``sql_database``: the commit's CSV or JSON-lines files into tables, in one transaction
  (:mod:`tusk.storage.egress_sql`), the password from a stored secret.

An empty commit has nothing to egress, as in Pachyderm. Retries: Pachyderm's worker keeps the
job in JOB_EGRESSING and retries egress with backoff for ever; Tusk makes :data:`ATTEMPTS`
attempts, ``d``, ``2d`` seconds apart (``d`` = ``$TUSK_EGRESS_RETRY_DELAY``, default 1), then
fails the job with the last cause in one line; the output commit stays. A problem in the
commit's own files (a value of the wrong type, a file outside a table folder) fails at once:
the same commit would fail the same way again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from tusk.errors import InvalidArgument, StorageError
from tusk.pfs import PfsService
from tusk.pps.secrets import SecretService
from tusk.pps.spec import Egress, SqlDatabaseEgress
from tusk.storage.backends import open_backend
from tusk.storage.egress_sql import SqlTarget, write_tables

ATTEMPTS = 3


def retry_delay() -> float:
    """Seconds before the second attempt (doubling after): ``$TUSK_EGRESS_RETRY_DELAY``."""
    text = os.environ.get("TUSK_EGRESS_RETRY_DELAY", "1")
    try:
        return max(0.0, float(text))
    except ValueError:
        raise InvalidArgument(
            f"TUSK_EGRESS_RETRY_DELAY must be a number of seconds, not {text!r}"
        ) from None


def target_of(egress: Egress) -> str:
    """Where the egress goes, for messages: the URL without its options."""
    if egress.sql_database is not None:
        return egress.sql_database.url.split("?", 1)[0]
    return (egress.url or "").split("?", 1)[0]


def run_egress(
    pfs: PfsService,
    secrets: SecretService,
    commit_id: str,
    egress: Egress,
    *,
    note: Callable[[str], None],
    log: Callable[[str], None],
    beat: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Egress the commit with retries; None when done, else the job's failure reason.

    ``note`` records progress on the job (its reason while it runs), ``log`` the outcome;
    ``beat`` is called often (between blocks, while waiting to retry): the scheduler renews
    its datum leases there, as egress runs on its loop.
    """
    target = target_of(egress)
    delay = retry_delay()
    cause = ""
    for attempt in range(1, ATTEMPTS + 1):
        if attempt == 1:
            note(f"egressing to {target}")
        else:
            note(f"egressing to {target}: attempt {attempt} of {ATTEMPTS} (last: {cause})")
        try:
            summary = egress_commit(pfs, secrets, commit_id, egress, beat)
        except InvalidArgument as exc:  # the commit's own files: a retry fails the same way
            return f"egress to {target} failed: {_one_line(exc)}"
        except OSError as exc:
            cause = _os_error(exc)
        except Exception as exc:  # any cause fails the job, never the scheduler
            cause = _one_line(exc)
        else:
            log(f"egressed {summary} to {target}")
            return None
        log(f"egress to {target}, attempt {attempt} of {ATTEMPTS}, failed: {cause}")
        if attempt < ATTEMPTS:
            wait = delay * 2 ** (attempt - 1)
            while wait > 0:
                beat()
                sleep(min(wait, 1.0))
                wait -= 1.0
    return f"egress to {target} failed after {ATTEMPTS} attempts: {cause}"


def egress_commit(
    pfs: PfsService,
    secrets: SecretService,
    commit_id: str,
    egress: Egress,
    beat: Callable[[], None] = lambda: None,
) -> str:
    """One attempt: copy the commit to the egress target; returns what was written."""
    tree = pfs.commit_record(commit_id).tree
    files = _Files(pfs, tree, beat)
    if egress.sql_database is not None:
        return _to_sql(secrets, files, egress.sql_database)
    if egress.url is None:  # the spec guarantees one target
        raise InvalidArgument("egress names no target: give URL or sql_database")
    return _to_objects(files, egress.url)


class _Files:
    """The commit's files as (path, size, blocks), streamed; ``beat`` runs between blocks."""

    def __init__(self, pfs: PfsService, tree: bytes, beat: Callable[[], None]) -> None:
        self.pfs, self.tree, self.beat = pfs, tree, beat

    def __iter__(self) -> Iterator[tuple[str, int, Iterable[bytes]]]:
        for path, entry in self.pfs.tree_files(self.tree):
            yield path, entry.size, self._blocks(self.pfs.read_entry(entry))

    def _blocks(self, blocks: Iterable[bytes]) -> Iterator[bytes]:
        for block in blocks:
            self.beat()
            yield block


def _to_objects(files: _Files, url: str) -> str:
    backend = open_backend(backend_url(url))
    total = 0
    keys: list[str] = []
    try:
        for path, size, blocks in files:
            key = path.lstrip("/")
            # Local files are flushed once at the end (one syncfs), not one fsync each.
            backend.put_stream(key, blocks, size=size, durable=False)
            keys.append(key)
            total += size
        backend.sync(keys)
    finally:
        backend.close()
    return f"{len(keys)} files ({total} bytes)"


def _to_sql(secrets: SecretService, files: _Files, sql: SqlDatabaseEgress) -> str:
    password = None
    source = ""
    if sql.secret is not None:
        values = secrets.values_for(sql.secret.name)
        if sql.secret.key not in values:
            raise StorageError(
                f"secret {sql.secret.name} has no key {sql.secret.key} (its keys: "
                f"{', '.join(sorted(values)) or 'none'})"
            )
        password = values[sql.secret.key].decode("utf-8", "surrogateescape")
        source = f"secret {sql.secret.name}, key {sql.secret.key}"
    target = SqlTarget(
        url=sql.url,
        file_format=sql.file_format.type,
        columns=tuple(sql.file_format.columns),
        password=password,
        password_from=source,
    )
    return write_tables(target, ((path, blocks) for path, _size, blocks in files)).summary()


# Pachyderm's egress URLs are Go CDK blob URLs; these options mean what Tusk's S3 backend
# calls endpoint and addressing.
_TRUE = ("true", "1", "yes")


def backend_url(url: str) -> str:
    """The storage URL of an egress URL: ``file://`` and paths unchanged; for ``s3://``,
    Pachyderm's option names become the S3 backend's (``endpoint_url`` -> ``endpoint``,
    ``s3ForcePathStyle=true`` -> ``addressing=path``, ``disableSSL=true`` -> an ``http://``
    endpoint; ``awssdk`` is dropped)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.query:
        return url
    opts = dict(parse_qsl(parsed.query, keep_blank_values=True))
    plain_http = opts.pop("disableSSL", "").lower() in _TRUE
    opts.pop("awssdk", None)
    if "endpoint_url" in opts:
        opts.setdefault("endpoint", opts.pop("endpoint_url"))
    for name in ("s3ForcePathStyle", "use_path_style"):
        if opts.pop(name, "").lower() in _TRUE:
            opts.setdefault("addressing", "path")
    endpoint = opts.get("endpoint")
    if endpoint and "://" not in endpoint:
        opts["endpoint"] = ("http://" if plain_http else "https://") + endpoint
    return urlunparse(parsed._replace(query=urlencode(opts, safe=":/")))


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or _one_line(exc)}{where}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
