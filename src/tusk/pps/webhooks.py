"""GitHub webhooks: a signed push re-applies the specs at that SHA, or commits its files.

``WebhookService.receive_github`` handles one delivery of ``POST /api/v1/webhooks/github``:

1. The ``X-Hub-Signature-256`` header must be ``sha256=`` and the HMAC-SHA256 of the raw body
   under the configured secret (compared in constant time). No secret configured, no header
   or a wrong one: ``Unauthorized`` (401), and nothing is read, fetched or written.
2. A delivery id (``X-GitHub-Delivery``) already recorded answers what it answered the first
   time, status and body, and does nothing again.
3. ``ping`` answers 200; events other than ``push`` answer 202 (ignored); so do pushes that
   delete a branch, pushes to other refs than ``TUSK_WEBHOOK_REF`` (default: any branch, no
   tags) and, without being recorded, pushes while no action is configured.
4. A push fetches the pushed commit (``tusk.pps.gitcache``), then carries out the action:
   ``apply`` applies the spec folder at that SHA (``tusk.pps.apply``, pipeline versions
   record the SHA, remote and branch), ``commit`` makes the tree at that SHA (or a
   subfolder) the new content of a data repo's branch in one commit, as Pachyderm's git
   input did: files that are gone from git are deleted from the branch.

Exactly once: the action and the delivery's row are written in ONE metadata transaction
(``MetaStore.atomic``, which apply and every PFS call inside join). A crash before it commits
leaves neither the action's effects nor the row, so a redelivery runs the action then; after
it commits, both exist, so a redelivery only reads the row. Two deliveries of one id at once
serialise on the store's write lock, and the second finds the row inside its transaction.
What happens outside that transaction is idempotent by construction: fetching a commit,
extracting a checkout per SHA, and writing chunks (unreferenced chunks of a rolled back
commit are removed by ``tusk gc``). The price is that the write lock is held while a
``commit`` action stores the tree's files: meant for code-sized trees, not data-sized ones.

Failures are not recorded, so GitHub's "Redeliver" retries them once the cause is fixed:
a git fetch that fails answers 502, specs or files at that SHA that cannot be applied 422
(with the error's code), other errors their usual status (409 for an open commit on the
target branch, 503 for a store that is down).

The secret and the action are read from settings (``tusk.config.setting``) when the server
starts: ``TUSK_WEBHOOK_SECRET``, ``TUSK_WEBHOOK_ACTION`` (``apply`` or ``commit``),
``TUSK_WEBHOOK_SPECS``, ``TUSK_WEBHOOK_PRUNE``, ``TUSK_WEBHOOK_REPO``,
``TUSK_WEBHOOK_BRANCH``, ``TUSK_WEBHOOK_PATH``, ``TUSK_WEBHOOK_REF`` and
``TUSK_WEBHOOK_GIT_URL``, or the config file's ``webhook_*`` keys (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from tusk.auth.permissions import PIPELINE_CREATE, REPO_CREATE, REPO_WRITE
from tusk.auth.service import AuthService, Caller, check_principal
from tusk.errors import (
    InvalidArgument,
    RepoNotFound,
    SourceError,
    TuskError,
    Unauthorized,
)
from tusk.ids import check_branch_name, check_repo_name
from tusk.pfs.sources import LocalFile, Source
from tusk.pps.apply import Document, apply_documents, documents_of, spec_files
from tusk.pps.gitcache import GitCache, is_sha, without_credentials
from tusk.pps.service import PpsService
from tusk.storage.meta.store_webhooks import WebhookDeliveryRecord
from tusk.values import frozen

__all__ = [
    "WebhookConfig",
    "WebhookOutcome",
    "WebhookService",
    "prune_scratch",
    "signature_of",
]

GITHUB = "github"
ACTIONS = ("apply", "commit")
# Transports a URL from a payload may use; a configured TUSK_WEBHOOK_GIT_URL may use any.
PAYLOAD_PROTOCOLS = "http:https"
_DELIVERY = re.compile(r"^[\x21-\x7e]{1,128}$")
_EVENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def signature_of(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _repo_path(name: str, value: str) -> str:
    """A relative folder inside the git tree, as ``a/b`` ('' for the whole tree)."""
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts:
        raise InvalidArgument(
            f"{name} must be a folder inside the git repository (relative, no '..'), not {value!r}"
        )
    return "" if str(path) == "." else str(path)


@frozen
class WebhookConfig:
    """What the webhook does; ``from_settings`` reads and checks it."""

    secret: str | None = None
    action: str | None = None  # "apply", "commit", or None: pushes are ignored
    specs: str = "specs"  # apply: the spec folder (or file) inside the git tree
    prune: bool = False  # apply: delete pipelines the specs no longer declare
    repo: str | None = None  # commit: the data repo
    branch: str | None = None  # commit: its branch (default: the pushed branch's name)
    path: str = ""  # commit: the folder of the git tree to commit ('' for all of it)
    ref: str | None = None  # act on pushes to this ref only (default: any branch)
    git_url: str | None = None  # fetch from here instead of the payload's clone_url
    identity: str = "robot:github-webhook"  # with auth on, what it does is checked as this

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in ACTIONS:
            raise InvalidArgument(
                f"webhook action must be 'apply' or 'commit' (TUSK_WEBHOOK_ACTION), "
                f"not {self.action!r}"
            )
        if self.action == "commit" and not self.repo:
            raise InvalidArgument(
                "webhook action 'commit' needs the repo to commit into (TUSK_WEBHOOK_REPO)"
            )
        if self.repo is not None:
            check_repo_name(self.repo)
        check_principal(self.identity)
        if self.branch is not None:
            check_branch_name(self.branch)

    @classmethod
    def from_settings(cls) -> WebhookConfig:
        """The ``webhook_*`` settings: ``TUSK_WEBHOOK_*`` variables, else the config file."""
        from tusk.config import setting

        prune = (setting("webhook_prune") or "").strip().lower()
        if prune not in _TRUE + _FALSE:
            raise InvalidArgument(f"TUSK_WEBHOOK_PRUNE must be true or false, not {prune!r}")
        ref = setting("webhook_ref")
        if ref and not ref.startswith("refs/"):
            ref = f"refs/heads/{ref}"  # a branch name is the usual shorthand
        return cls(
            secret=setting("webhook_secret"),
            action=(setting("webhook_action") or "").strip().lower() or None,
            specs=_repo_path("TUSK_WEBHOOK_SPECS", setting("webhook_specs") or "specs"),
            prune=prune in _TRUE,
            repo=setting("webhook_repo"),
            branch=setting("webhook_branch"),
            path=_repo_path("TUSK_WEBHOOK_PATH", setting("webhook_path") or ""),
            ref=ref,
            git_url=setting("webhook_git_url"),
            identity=setting("webhook_identity") or "robot:github-webhook",
        )


@frozen
class WebhookOutcome:
    """The answer to a delivery: HTTP status and JSON body; ``replayed`` if it was recorded."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@frozen
class _Push:
    ref: str
    sha: str
    clone_url: str | None
    deleted: bool

    @property
    def name(self) -> str:
        """The branch or tag name of the ref."""
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> _Push:
        ref, sha = payload.get("ref"), payload.get("after")
        if not isinstance(ref, str) or not ref.startswith("refs/") or len(ref) > 255:
            raise InvalidArgument("push payload: 'ref' must be a full ref such as refs/heads/main")
        if any(c in ref for c in " \t\n\r\0~^:?*[\\") or ".." in ref:
            raise InvalidArgument(f"push payload: 'ref' {ref!r} is not a valid git ref")
        if not isinstance(sha, str) or not is_sha(sha):
            raise InvalidArgument("push payload: 'after' must be the full SHA of the pushed commit")
        repository = payload.get("repository")
        url = repository.get("clone_url") if isinstance(repository, dict) else None
        deleted = payload.get("deleted") is True or set(sha) == {"0"}
        return cls(ref, sha, url if isinstance(url, str) and url else None, deleted)


@frozen
class _Checkout:
    root: Path  # the tree of the pushed commit
    remote: str  # the repository's URL, without credentials


class WebhookService:
    """Webhook deliveries for one home: checks them, records them, acts on pushes."""

    def __init__(self, pps: PpsService, home: Path, config: WebhookConfig) -> None:
        self.pps = pps
        self.pfs = pps.pfs
        self.meta = pps.meta
        self.config = config
        self.root = Path(home) / "webhooks"
        self.git = GitCache(self.root)
        self.auth = AuthService(pps.meta)

    # The delivery

    def receive_github(
        self, event: str | None, delivery: str | None, signature: str | None, body: bytes
    ) -> WebhookOutcome:
        """Handle one delivery: see the module's documentation for what is answered when."""
        self._verify(signature, body)
        if event is None or not _EVENT.match(event):
            raise InvalidArgument("missing or malformed X-GitHub-Event header")
        if delivery is None or not _DELIVERY.match(delivery):
            raise InvalidArgument(
                "missing or malformed X-GitHub-Delivery header (1-128 visible ASCII characters)"
            )
        with self.meta.read() as tx:
            stored = tx.get_webhook_delivery(GITHUB, delivery)
        if stored is not None:
            return _replay(stored)
        payload = _json(body)
        said: dict[str, Any] = {"delivery": delivery, "event": event}
        if event == "ping":
            zen = payload.get("zen")
            return self._record(delivery, event, 200, {**said, "ok": True, "zen": zen})
        if event != "push":
            return self._record(delivery, event, 202, {**said, "ignored": f"{event} events"})
        push = _Push.parse(payload)
        said.update(ref=push.ref, sha=push.sha)
        if self.config.action is None:
            # Not recorded: a redelivery once an action is configured should run it.
            return WebhookOutcome(202, {**said, "ignored": "no webhook action is configured"})
        ignored = self._ignored(push)
        if ignored is not None:
            return self._record(delivery, event, 202, {**said, "ignored": ignored})
        said["action"] = self.config.action
        try:
            return self._act(delivery, event, push, said)
        except TuskError as exc:
            if exc.status != 400:
                raise
            # Well-formed, signed, but what is at that SHA cannot be applied.
            message = " ".join(exc.message.splitlines()) or exc.code
            return WebhookOutcome(422, {"error": {"code": exc.code, "message": message}})

    def _verify(self, signature: str | None, body: bytes) -> None:
        secret = self.config.secret
        if not secret:
            raise Unauthorized(
                "webhooks are off: no webhook secret is configured (TUSK_WEBHOOK_SECRET or "
                "webhook_secret in the config file)"
            )
        if not signature:
            raise Unauthorized("missing X-Hub-Signature-256 header: the payload must be signed")
        try:
            given = signature.strip().lower().encode("ascii")
        except UnicodeEncodeError:
            given = b""
        if not hmac.compare_digest(signature_of(secret, body).encode(), given):
            raise Unauthorized(
                "X-Hub-Signature-256 does not match the payload: check the webhook secret"
            )

    def _ignored(self, push: _Push) -> str | None:
        if push.deleted:
            return f"{push.ref} was deleted"
        if self.config.ref is not None:
            if push.ref != self.config.ref:
                return f"a push to {push.ref}; only pushes to {self.config.ref} act"
        elif not push.ref.startswith("refs/heads/"):
            return f"a push to {push.ref}, not a branch (set TUSK_WEBHOOK_REF to act on it)"
        return None

    def _record(
        self, delivery: str, event: str, status: int, body: dict[str, Any]
    ) -> WebhookOutcome:
        with self.meta.atomic() as tx:
            stored = tx.get_webhook_delivery(GITHUB, delivery)
            if stored is not None:
                return _replay(stored)
            tx.insert_webhook_delivery(_row(delivery, event, status, body))
        return WebhookOutcome(status, body)

    def _act(self, delivery: str, event: str, push: _Push, said: dict[str, Any]) -> WebhookOutcome:
        """Fetch the commit and check it out (outside any transaction), then act and record
        the delivery in one transaction."""
        url, protocols = self._source(push)
        with self.git.in_use():  # tusk gc prunes no checkout while a delivery runs
            git_dir = self.git.fetch(url, push.ref, push.sha, protocols=protocols)
            remote = without_credentials(push.clone_url or url)
            if self.config.action == "apply":
                # Kept: the pipelines' transforms run in it (their working_dir); gc keeps
                # it while a pipeline's current version or an unfinished job names it.
                tree = self.git.checkout(git_dir, push.sha, self.root / "checkouts" / push.sha)
                return self._in_transaction(delivery, event, push, said, _Checkout(tree, remote))
            scratch = self.root / "tmp"
            scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f"{push.sha[:12]}-", dir=scratch) as tmp:
                tree = self.git.checkout(git_dir, push.sha, Path(tmp) / "tree")
                return self._in_transaction(delivery, event, push, said, _Checkout(tree, remote))

    def _source(self, push: _Push) -> tuple[str, str | None]:
        """(URL to fetch from, transports allowed): the configured URL, else the payload's."""
        if self.config.git_url:
            return self.config.git_url, None
        url = push.clone_url
        if url is None:
            raise InvalidArgument(
                "push payload has no repository.clone_url; set TUSK_WEBHOOK_GIT_URL"
            )
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("http", "https") or not url.isprintable() or " " in url:
            raise InvalidArgument(
                f"repository.clone_url {without_credentials(url)!r} is not an http(s) URL; "
                "set TUSK_WEBHOOK_GIT_URL to fetch from elsewhere"
            )
        return url, PAYLOAD_PROTOCOLS

    def _in_transaction(
        self, delivery: str, event: str, push: _Push, said: dict[str, Any], checkout: _Checkout
    ) -> WebhookOutcome:
        caller = self.auth.caller_for(self.config.identity)
        try:
            with self.meta.atomic() as tx:
                stored = tx.get_webhook_delivery(GITHUB, delivery)
                if stored is not None:
                    return _replay(stored)  # a twin delivery got here first
                if self.config.action == "apply":
                    result = self._apply(push, checkout, caller)
                else:
                    result = self._commit(push, checkout, caller)
                body = {**said, "result": result}
                tx.insert_webhook_delivery(_row(delivery, event, 200, body))
                what = f"{self.config.action} of {push.ref} at {push.sha[:12]}"
                self.auth.audit_event(caller, "webhook", "github_push", "", "", what)
        finally:
            self.auth.flush_audit()
        return WebhookOutcome(200, body)

    # Actions (inside the delivery's transaction)

    def _apply(self, push: _Push, checkout: _Checkout, caller: Caller) -> dict[str, Any]:
        docs = self._documents(push, checkout)
        self.auth.require(caller, PIPELINE_CREATE, None, edge="webhook", operation="apply")
        result = apply_documents(
            self.pps, docs, prune=self.config.prune, caller=caller, edge="webhook"
        )
        return result.to_dict()

    def _documents(self, push: _Push, checkout: _Checkout) -> list[Document]:
        """Every document of the spec folder at that SHA, with its origin (as ``tusk apply``
        records it from a work tree: spec file, folder, git SHA, remote, branch, path)."""
        where = self.config.specs
        at = f"at {push.sha[:12]}"
        top = checkout.root / where if where else checkout.root
        if top.is_file() and not top.is_symlink():
            files = [top]
        elif top.is_dir() and not top.is_symlink():
            files = spec_files(top, _regular)
            if not files:
                raise SourceError(f"{where or 'the repository'}/ {at} holds no spec files")
        else:
            raise SourceError(
                f"no spec folder {where!r} {at} (set TUSK_WEBHOOK_SPECS to where the specs are)"
            )

        def origin_of(in_repo: str, file: Path) -> dict[str, Any]:
            return {
                "spec_file": str(file),
                "working_dir": str(file.parent),
                "git": {
                    "sha": push.sha,
                    "root": str(checkout.root),
                    "remote": checkout.remote,
                    "branch": push.name,
                    "dirty": False,
                    "path": in_repo,
                },
                "webhook": GITHUB,
            }

        named = [(f, f.relative_to(checkout.root).as_posix()) for f in files]
        return documents_of((f, in_repo, origin_of(in_repo, f)) for f, in_repo in named)

    def _commit(self, push: _Push, checkout: _Checkout, caller: Caller) -> dict[str, Any]:
        """The tree (or its folder) as the branch's content, in one commit."""
        repo = self.config.repo
        assert repo is not None  # WebhookConfig checks it
        branch = self.config.branch or push.name
        try:
            check_branch_name(branch)
        except InvalidArgument as exc:
            raise type(exc)(
                f"{exc.message} (the pushed {push.ref}); set TUSK_WEBHOOK_BRANCH"
            ) from exc
        where = self.config.path
        top = checkout.root / where if where else checkout.root
        if not top.is_dir() or top.is_symlink():
            raise SourceError(
                f"no folder {where!r} at {push.sha[:12]} (set TUSK_WEBHOOK_PATH to a folder)"
            )
        files = dict(_tree_files(top))
        try:
            self.pfs.inspect_repo(repo)
        except RepoNotFound:
            self.auth.require(caller, REPO_CREATE, None, edge="webhook", operation="commit")
            self.pfs.create_repo(repo, f"files of git {checkout.remote}")
            self.auth.grant_creator(caller, repo)
        self.auth.require(caller, REPO_WRITE, repo, edge="webhook", operation="commit")
        commit = self.pfs.start_commit(repo, branch, description=f"git {push.sha} {push.ref}")
        old = set()
        if commit.parent is not None:
            old = {p.lstrip("/") for p, _entry in self.pfs.walk_files(repo, commit.parent)}
        stale = sorted(old - set(files))
        if stale:
            self.pfs.delete_files(repo, commit.id, stale)
        if files:
            items: list[tuple[str | tuple[str, ...], Source]] = [
                (path, LocalFile(local)) for path, local in sorted(files.items())
            ]
            self.pfs.put_files(repo, commit.id, items)
        out: dict[str, Any] = {"repo": repo, "branch": branch, "files": len(files)}
        parent = commit.parent
        if parent is not None and (
            self.pfs.commit_record(commit.id).tree == self.pfs.commit_record(parent).tree
        ):
            # The push changed nothing here (say, only files outside TUSK_WEBHOOK_PATH).
            self.pfs.drop_open_commit(commit.id)
            return {**out, "commit": None, "deleted": 0, "unchanged": True}
        done = self.pfs.finish_commit(repo, commit.id)
        return {**out, "commit": done.id, "deleted": len(stale), "unchanged": False}


def prune_scratch(pps: PpsService, grace: float, dry_run: bool = False) -> int:
    """Remove what deliveries and killed processes leave under the home, unused for longer
    than ``grace`` seconds; how many folders (would) go (``tusk gc`` calls it).

    That is: webhook checkouts that no delivery used within ``grace`` and no pipeline's
    current version or unfinished job runs in, the webhook cache's temporary folders, and
    the scratch folders of dead scheduler processes of this host (their noted datum
    processes are ended first, as a starting scheduler does) and of dead processes' checks.
    """
    older_than = time.time() - grace
    cache = GitCache(pps.home / "webhooks")
    removed = cache.prune(older_than, _checkouts_in_use(pps, cache.root), dry_run)
    from tusk.pps import checkrun
    from tusk.pps.scheduler import remove_dead_scratch, scratch_roots  # with gc only

    roots = scratch_roots(pps.home) + checkrun.scratch_roots(pps.home)
    return removed + remove_dead_scratch(roots, older_than=older_than, dry_run=dry_run)


def _checkouts_in_use(pps: PpsService, root: Path) -> set[str]:
    """Names of the checkouts that pipelines may still run in (their working_dir)."""
    with pps.meta.read() as tx:
        versions = {(p.name, p.version) for p in tx.list_pipelines()}
        versions |= {
            (j.pipeline, j.version)
            for j in tx.list_jobs(states=["created", "running", "egressing"])
        }
        origins = [tx.get_pipeline_version(name, version) for name, version in versions]
    checkouts = (root / "checkouts").resolve()
    names: set[str] = set()
    for record in origins:
        if record is None:
            continue
        try:
            origin = json.loads(record.origin)
        except ValueError:
            continue
        git = origin.get("git") if isinstance(origin.get("git"), dict) else {}
        for where in (origin.get("working_dir"), git.get("root")):
            if isinstance(where, str):
                parts = Path(where).resolve().parts
                top = checkouts.parts
                if parts[: len(top)] == top and len(parts) > len(top):
                    names.add(parts[len(top)])
    return names


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _tree_files(top: Path) -> Iterator[tuple[str, str]]:
    """(path inside ``top``, local path) of every regular file; symlinks are left out."""
    for folder, _dirs, names in os.walk(top):  # symlinked folders are not entered
        for name in names:
            local = os.path.join(folder, name)
            if _regular(Path(local)):
                yield Path(local).relative_to(top).as_posix(), local


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"the payload is not JSON ({type(exc).__name__})") from exc
    if not isinstance(payload, dict):
        raise InvalidArgument("the payload must be a JSON object")
    return payload


def _row(delivery: str, event: str, status: int, body: dict[str, Any]) -> WebhookDeliveryRecord:
    return WebhookDeliveryRecord(GITHUB, delivery, event, status, json.dumps(body), time.time())


def _replay(stored: WebhookDeliveryRecord) -> WebhookOutcome:
    return WebhookOutcome(stored.status, json.loads(stored.response), replayed=True)
