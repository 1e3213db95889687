"""``AuthService``: tokens, roles, the audit log, and ``authorize``, the one gate.

Every edge (REST now; the S3 gateway, console and gRPC as they come) calls
:meth:`AuthService.authorize` with its edge name, the operation, the bearer token and the repo
the operation touches; the rule comes from :mod:`tusk.auth.permissions`. Handlers that touch a
second resource call :meth:`AuthService.require` with the caller ``authorize`` returned.

Auth is off until :meth:`activate` (then everything is allowed and nothing audited: the
embedded, single-user case). Once on, each request reads its token's row and the caller's
role bindings in one read transaction: a revoked token is refused on its very next request.

Tokens are ``tusk_<id>_<secret>``: a 16-hex-digit id (the row's key, shown in listings) and
a 256-bit secret from :mod:`secrets`. The store keeps only HMAC-SHA256 of the secret under a
random key made at activation, compared with :func:`hmac.compare_digest`. A slow password
hash (argon2, scrypt) guards guessable passwords; these secrets are random and 256 bits long,
so a keyed fast hash is as safe against a stolen database and costs microseconds, not the
116-346 ms argon2's default verify took here on every request (docs/auth.md has the numbers).

A token made for S3 (``create_token(s3=True)``) doubles as an S3 key pair: its id is the
access key id and its secret the secret access key. SigV4 needs that secret in clear on the
server to check a signature, so such a token also keeps its secret sealed (AES-GCM,
:mod:`tusk.auth.sealing`, under the key outside the store that secrets use; the token id is
the associated data); :meth:`AuthService.s3_token` opens it for the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import field
from pathlib import Path
from typing import Any

from tusk.auth import sealing
from tusk.auth.permissions import (
    AUTHENTICATED,
    CLUSTER_ADMIN,
    CLUSTER_ROLES,
    ON_PROJECT,
    PROJECT_CREATE_REPO,
    PROJECT_OWN,
    PROJECT_ROLES,
    PUBLIC,
    REPO_CREATE,
    REPO_READ,
    REPO_ROLES,
    RULES,
    Rule,
    permissions_of,
)
from tusk.errors import (
    Conflict,
    InvalidArgument,
    InvalidName,
    NotFound,
    PermissionDenied,
    ProjectNotFound,
    RepoNotFound,
    StorageError,
    Unauthorized,
)
from tusk.ids import DEFAULT_PROJECT, check_project_name, check_repo_name, split_repo
from tusk.storage.meta.store import MetaStore, MetaTx
from tusk.storage.meta.store_auth import AuditRecord, TokenRecord
from tusk.values import frozen

ROOT = "user:root"
_DEFERRED = threading.local()  # denials audited inside a transaction, written after it
# A pipeline of another project than default is pipeline:project/name, as its repo is.
_PRINCIPAL = re.compile(
    r"^(?:(user|robot):[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}"
    r"|pipeline:(?:[A-Za-z0-9_-]{1,63}/)?[A-Za-z0-9_-]{1,63})$"
)
_TOKEN = re.compile(r"^tusk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_TTL = 10 * 365 * 86400.0
_KNOWN = {"repo": REPO_ROLES, "project": ON_PROJECT, "cluster": CLUSTER_ROLES}
Bound = set[tuple[str, str]]  # (resource_type, role) on a repo and its project, or a project


def _bound_permissions(bound: Bound) -> set[str]:
    """What roles bound on a repo ("repo") and on its project ("project") allow there."""
    out: set[str] = set()
    for kind, role in bound:
        out |= (REPO_ROLES if kind == "repo" else ON_PROJECT).get(role, set())
    return out


def _bound_text(bound: Bound, project: str) -> str:
    shown = sorted(role if kind == "repo" else f"{role} on project {project}"
                   for kind, role in bound)  # fmt: skip
    return ", ".join(shown) or "no role"


def _canonical(repo: str | None) -> str | None:
    """A repo as stored (``default/images`` is ``images``); a bad name is left to its handler."""
    if repo is None:
        return None
    try:
        return check_repo_name(repo)
    except InvalidName:
        return repo


@frozen
class Caller:
    """Who a request comes from. ``principal`` is "" while auth is off (everyone may)."""

    principal: str
    token_id: str = ""
    cluster_roles: frozenset[str] = frozenset()
    active: bool = True

    @property
    def is_admin(self) -> bool:
        return not self.active or "clusterAdmin" in self.cluster_roles


OFF = Caller("", active=False)


@frozen
class TokenInfo:
    id: str
    principal: str
    description: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    state: str  # "active", "expired" or "revoked"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@frozen
class RepoAccess:
    """What ``tusk auth check repo`` shows: a caller's roles and permissions on one repo."""

    principal: str
    repo: str
    roles: list[str] = field(default_factory=list)
    permissions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _role_hint(resource_type: str, role: str) -> str:
    if resource_type == "repo" and role in PROJECT_ROLES:
        return f"; {role} is a project role: set it on a project (tusk auth set project ...)"
    if resource_type == "project" and role == "projectReader":
        return (
            "; Pachyderm's read-only project role is projectViewer (it lists the repos); "
            "repoReader on a project reads every repo of it"
        )
    return ""


def check_principal(principal: str) -> str:
    if not isinstance(principal, str) or not _PRINCIPAL.match(principal):
        raise InvalidArgument(
            f"invalid identity {str(principal)[:80]!r}: use user:NAME, robot:NAME or "
            "pipeline:NAME (letters, digits, . _ @ + -)"
        )
    return principal


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None when there is none)."""
    if header is None or header == "":
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("malformed Authorization header: send 'Authorization: Bearer <token>'")
    return value.strip()


def _token_info(r: TokenRecord, now: float) -> TokenInfo:
    state = "active"
    if r.revoked_at is not None:
        state = "revoked"
    elif r.expires_at is not None and r.expires_at <= now:
        state = "expired"
    return TokenInfo(
        r.id, r.principal, r.description, r.created_by, r.created_at, r.expires_at,
        r.revoked_at, state,
    )  # fmt: skip


class AuthService:
    """Auth over one metadata store. ``key_dir``: the home whose ``secrets.key`` seals the
    secrets of S3 tokens (unless ``$TUSK_SECRET_KEY`` is set); only S3 tokens need it."""

    def __init__(self, meta: MetaStore, key_dir: Path | None = None) -> None:
        self.meta = meta
        self.key_dir = Path(key_dir) if key_dir is not None else None
        self._key: bytes | None = None
        self._key_lock = threading.Lock()

    def _sealing_key(self) -> bytes:
        with self._key_lock:
            if self._key is None:
                self._key = sealing.load_key(self.key_dir)
            return self._key

    # The gate

    def authorize(
        self,
        edge: str,
        operation: str,
        token: str | None,
        *,
        repo: str | None = None,
        project: str | None = None,
        detail: str = "",
    ) -> Caller:
        """The one check: may the holder of ``token`` do ``operation`` on ``edge`` (to ``repo``,
        or to ``project`` for a rule that names a project)?

        The caller's roles on a repo are those bound on the repo plus those bound on its
        project, read with the token in one query. For a rule naming a project, ``repo`` is
        taken as the project when ``project`` is not given (an edge passes the value of the
        path parameter its rule names). Returns the caller; raises Unauthorized (no valid
        token) or PermissionDenied (a rule it does not meet, or an operation without a rule).
        Changes and denials are audited.
        """
        rule = RULES.get(f"{edge}.{operation}")
        if rule is not None and rule.project is not None and project is None:
            project, repo = repo, None
        repo = _canonical(repo)
        scope = project if project is not None else split_repo(repo)[0] if repo else None
        kind, resource = ("project", project) if project is not None else ("repo", repo)
        with self.meta.read() as tx:
            settings = tx.auth_settings()
            if settings.get("active") != "1":
                if rule is None:
                    raise PermissionDenied(f"{edge} operation {operation} has no permission rule")
                return OFF
            bound: Bound | None = None
            if rule is None or rule.permission == PUBLIC:
                caller: Caller = Caller("", active=True)
            else:
                try:
                    caller, bound = self._authenticate(tx, settings, token, repo, scope)
                except Unauthorized as exc:
                    if rule.change:
                        self._audit(edge, operation, "", resource, False, exc.message, kind)
                    raise
            problem = (
                self._problem(tx, caller, rule, repo, bound, project) if rule else "it has no rule"
            )
        if problem is not None:
            what = f"{operation} on {kind} {resource}" if resource else operation
            message = f"{caller.principal or 'anonymous'} may not {what}: {problem}"
            self._audit(edge, operation, caller.principal, resource, False, detail or message, kind)
            raise PermissionDenied(message)
        # Auth's own changes are audited by the methods below, with what they changed.
        own = operation.startswith("auth_")
        if rule is not None and rule.change and rule.permission != PUBLIC and not own:
            self._audit(edge, operation, caller.principal, resource, True, detail, kind)
        return caller

    def require(
        self, caller: Caller, permission: str, repo: str | None, *, edge: str, operation: str
    ) -> None:
        """A second check inside a handler (a body's other repo, a spec's inputs; for
        REPO_CREATE, the new repo: outside project default it needs projectWriter there)."""
        if not caller.active:
            return
        on_project = permission == PROJECT_OWN  # then ``repo`` names a project
        repo = repo if on_project else _canonical(repo)
        with self.meta.read() as tx:
            if on_project:
                rule = Rule(permission, project="project")
                problem = self._problem(tx, caller, rule, None, project=repo)
            else:
                rule = Rule(permission, "repo" if repo else None)
                problem = self._problem(tx, caller, rule, repo)
        if problem is not None:
            kind = "project" if on_project else "repo"
            what = f"{operation} ({permission} on {kind} {repo})" if repo else operation
            message = f"{caller.principal} may not {what}: {problem}"
            self._audit(edge, operation, caller.principal, repo, False, message)
            raise PermissionDenied(message)

    def readable(self, caller: Caller, repos: Iterable[str]) -> set[str]:
        """Which of ``repos`` the caller may read (every one while auth is off)."""
        wanted = set(repos)
        if not caller.active or REPO_READ in permissions_of(set(caller.cluster_roles)):
            return wanted
        with self.meta.read() as tx:
            direct = tx.repos_with_roles(caller.principal)  # each repo role reads
            projects = {
                name for name, role in tx.project_roles_of(caller.principal)
                if REPO_READ in ON_PROJECT.get(role, set())
            }  # fmt: skip
        return {r for r in wanted if r in direct or split_repo(r)[0] in projects}

    def _authenticate(
        self,
        tx: MetaTx,
        settings: dict[str, str],
        token: str | None,
        repo: str | None = None,
        project: str | None = None,
    ) -> tuple[Caller, Bound]:
        """The caller a token names, and its roles on ``repo`` and ``project`` (one query for
        the token and every kind of binding)."""
        if token is None:
            raise Unauthorized(
                "auth is on: this request needs a token (tusk auth login, $TUSK_TOKEN or "
                "'Authorization: Bearer <token>')"
            )
        m = _TOKEN.match(token)
        if m is None:
            raise Unauthorized("that is not a Tusk token (tusk_<16 hex digits>_<43 characters>)")
        record, roles = tx.token_with_roles(m.group(1), repo, project)
        digest = self._digest(settings, m.group(2))
        if record is None or not hmac.compare_digest(record.digest, digest):
            raise Unauthorized(f"token {m.group(1)} is not valid: log in with another")
        if record.revoked_at is not None:
            raise Unauthorized(f"token {record.id} was revoked: log in with another")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise Unauthorized(f"token {record.id} has expired: ask for a new one")
        cluster = {role for kind, role in roles if kind == "cluster"}
        bound = {(kind, role) for kind, role in roles if kind != "cluster"}
        return Caller(record.principal, record.id, frozenset(cluster)), bound

    def _problem(
        self,
        tx: MetaTx,
        caller: Caller,
        rule: Rule,
        repo: str | None,
        bound: Bound | None = None,
        project: str | None = None,
    ) -> str | None:
        """Why ``caller`` fails ``rule`` on ``repo`` (or ``project``, for a rule naming one);
        ``bound``: its roles on the repo and its project, or on the project, if read already.
        None when it passes."""
        need = rule.permission
        if need in (PUBLIC, AUTHENTICATED):
            return None
        have = permissions_of(set(caller.cluster_roles))
        if need in have:
            return None
        if need == REPO_CREATE:
            if caller.principal.startswith("pipeline:"):
                return "pipelines may not"
            where = split_repo(repo)[0] if repo else DEFAULT_PROJECT
            if where == DEFAULT_PROJECT:
                return None  # any user or robot, as today (Pachyderm: projectWriter on default)
            roles = {
                (k, r) for k, r in tx.roles_of(caller.principal, None, where) if k != "cluster"
            }
            if PROJECT_CREATE_REPO in _bound_permissions(roles):
                return None
            return (
                f"it needs projectWriter on project {where} (has {_bound_text(roles, where)} there)"
            )
        if need == CLUSTER_ADMIN:
            return "it needs clusterAdmin"
        if rule.project is not None:
            if project is None:
                return f"it needs {need} on a project"
            if bound is None:
                bound = {(k, r) for k, r in tx.roles_of(caller.principal, None, project)
                         if k == "project"}  # fmt: skip
            if need in _bound_permissions(bound):
                return None
            needed = next(name for name, perms in PROJECT_ROLES.items() if need in perms)
            return f"it needs {needed} (has {_bound_text(bound, project)} there)"
        if rule.repo is None:
            holders = " or ".join(  # the narrowest first: clusterAdmin holds every one
                sorted((n for n, perms in CLUSTER_ROLES.items() if need in perms),
                       key=lambda n: n == "clusterAdmin")
            )  # fmt: skip
            return f"it needs a cluster role with {need} ({holders})"
        if repo is None:
            return f"it needs {need} on a repo"
        where = split_repo(repo)[0]
        if bound is None:
            bound = {(k, r) for k, r in tx.roles_of(caller.principal, repo, where)
                     if k != "cluster"}  # fmt: skip
        if need in _bound_permissions(bound):
            return None
        needed = next(name for name, perms in REPO_ROLES.items() if need in perms)
        return (
            f"it needs {needed} on the repo or on project {where} "
            f"(has {_bound_text(bound, where)} there)"
        )

    def _digest(self, settings: dict[str, str], secret: str) -> str:
        key = bytes.fromhex(settings["key"])
        return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()

    def _audit(
        self,
        edge: str,
        operation: str,
        principal: str,
        resource: str | None,
        allowed: bool,
        detail: str,
        resource_type: str = "repo",
    ) -> None:
        record = AuditRecord(
            time.time(), principal or "anonymous", edge, operation,
            resource_type if resource else "", resource or "", allowed, detail[:500],
        )  # fmt: skip
        if not allowed and self.meta.in_atomic():
            # A denial inside a transaction (apply) would roll back with it: kept for after.
            pending = getattr(_DEFERRED, "records", None) or []
            _DEFERRED.records = [*pending, record]
            return
        with self.meta.write() as tx:
            tx.add_audit([record])

    def flush_audit(self) -> None:
        """Write the denials kept while a transaction ran (call after it ends)."""
        if self.meta.in_atomic():
            return
        pending = getattr(_DEFERRED, "records", None)
        if pending:
            _DEFERRED.records = []
            with self.meta.write() as tx:
                tx.add_audit(pending)

    def audit_event(
        self, caller: Caller, edge: str, operation: str, resource_type: str, resource: str,
        detail: str = "",
    ) -> None:  # fmt: skip
        """Record a change a handler made beyond its route's own entry (when auth is on)."""
        if caller.active:
            self._audit(edge, operation, caller.principal, resource, True, detail, resource_type)

    def caller_for(self, principal: str) -> Caller:
        """An identity the server acts as without a token (a webhook's robot); OFF if auth is."""
        check_principal(principal)
        with self.meta.read() as tx:
            if tx.auth_settings().get("active") != "1":
                return OFF
            roles = frozenset(role for _kind, role in tx.roles_of(principal, None))
        return Caller(principal, "", roles)

    def csrf_for(self, token: str) -> str:
        """The CSRF token that goes with a console session's token: an HMAC of it under the
        auth key, so only this server can make one and it needs no storage."""
        with self.meta.read() as tx:
            key = tx.auth_settings().get("key", "")
        return hmac.new(key.encode(), token.encode(), hashlib.sha256).hexdigest()

    # Activation

    def is_active(self) -> bool:
        with self.meta.read() as tx:
            return tx.auth_settings().get("active") == "1"

    def activate(self) -> tuple[TokenInfo, str]:
        """Turn auth on; the root identity gets clusterAdmin and a token, returned once."""
        with self.meta.write() as tx:
            if tx.auth_settings().get("active") == "1":
                raise Conflict("auth is already active; tusk auth deactivate turns it off")
            settings = {"active": "1", "key": secrets.token_hex(32)}
            tx.set_auth_settings(dict(settings))
            tx.set_roles("cluster", "", ROOT, ["clusterAdmin"])
            info, token = self._mint(tx, settings, ROOT, None, "root token", ROOT)
            tx.add_audit([AuditRecord(time.time(), ROOT, "rest", "auth_activate", "", "",
                                      True, "auth activated")])  # fmt: skip
        return info, token

    def deactivate(self, caller: Caller) -> None:
        if caller.principal != ROOT:
            raise PermissionDenied(f"{caller.principal} may not deactivate auth: only {ROOT} may")
        with self.meta.write() as tx:
            tx.delete_all_auth()
            tx.add_audit([AuditRecord(time.time(), caller.principal, "rest", "auth_deactivate",
                                      "", "", True, "auth deactivated")])  # fmt: skip

    # Tokens

    def _mint(
        self,
        tx: MetaTx,
        settings: dict[str, str],
        principal: str,
        ttl: float | None,
        description: str,
        created_by: str,
        sealing_key: bytes | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token; with ``sealing_key`` (an S3 token), its secret is also kept sealed."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        sealed = (
            None
            if sealing_key is None
            else sealing.seal(sealing_key, secret.encode(), token_id.encode())
        )
        record = TokenRecord(
            token_id, principal, self._digest(settings, secret), description, created_by, now,
            None if ttl is None else now + ttl, None, sealed,
        )  # fmt: skip
        tx.insert_token(record)
        return _token_info(record, now), f"tusk_{token_id}_{secret}"

    def create_token(
        self,
        caller: Caller,
        principal: str | None = None,
        ttl: float | None = None,
        description: str = "",
        s3: bool = False,
    ) -> tuple[TokenInfo, str]:
        """A new token for ``principal`` (default: the caller); for others, clusterAdmin.

        ``s3``: the token is also an S3 key pair (its id and secret; see :meth:`s3_token`).
        """
        principal = check_principal(principal or caller.principal)
        if ttl is not None and not (0 < ttl <= MAX_TTL):
            raise InvalidArgument("ttl must be between 1 second and 10 years")
        if principal != caller.principal and not caller.is_admin:
            raise PermissionDenied(
                f"{caller.principal} may not create tokens for {principal}: it needs clusterAdmin"
            )
        key = self._sealing_key() if s3 else None  # before the transaction: it may make a file
        with self.meta.write() as tx:
            settings = self._need_active(tx)
            info, token = self._mint(
                tx, settings, principal, ttl, description, caller.principal, key
            )
            what = f"for {principal}{' (S3 keys)' if s3 else ''}"
            tx.add_audit([AuditRecord(time.time(), caller.principal, "rest", "auth_create_token",
                                      "token", info.id, True, what)])  # fmt: skip
        return info, token

    def s3_token(self, access_key_id: str) -> str | None:
        """The token ``tusk_<id>_<secret>`` whose id is ``access_key_id``, if it was made for
        S3 and is active (not revoked, not expired); else None.

        For the S3 gateway: it checks a request's SigV4 signature with the secret, then
        passes the token to :meth:`authorize` like any edge.
        """
        if not isinstance(access_key_id, str) or not _TOKEN_ID.match(access_key_id):
            return None
        with self.meta.read() as tx:
            record = tx.get_token(access_key_id)
        if record is None or record.sealed is None or record.revoked_at is not None:
            return None
        if record.expires_at is not None and record.expires_at <= time.time():
            return None
        try:
            secret = sealing.unseal(self._sealing_key(), record.sealed, access_key_id.encode())
        except StorageError:
            raise StorageError(
                f"the S3 secret of token {access_key_id} cannot be unsealed with the key in "
                f"{sealing.key_location(self.key_dir)}: it was made under another key (give "
                "every server the same $TUSK_SECRET_KEY, or make a new token)"
            ) from None
        return f"tusk_{access_key_id}_{secret.decode()}"

    def mint_for_pipeline(
        self, pipeline: str, ttl: float, s3: bool = False, description: str = "job token"
    ) -> tuple[str, str] | None:
        """A job's token for ``pipeline:<name>`` (id, token), or None while auth is off.

        ``s3``: also S3 keys (the id and the secret), as ``create_token(s3=True)`` makes."""
        if not self.is_active():
            return None
        key = self._sealing_key() if s3 else None  # before the transaction: it may make a file
        with self.meta.write() as tx:
            settings = tx.auth_settings()
            if settings.get("active") != "1":
                return None
            principal = f"pipeline:{pipeline}"
            info, token = self._mint(tx, settings, principal, ttl, description, principal, key)
        return info.id, token

    def revoke_quietly(self, token_id: str) -> None:
        """Revoke a token the system minted (a job's, when the job ends)."""
        with self.meta.write() as tx:
            tx.revoke_token(token_id, time.time())

    def list_tokens(self, caller: Caller) -> list[TokenInfo]:
        now = time.time()
        with self.meta.read() as tx:
            self._need_active(tx)
            records = tx.list_tokens(None if caller.is_admin else caller.principal)
        return [_token_info(r, now) for r in records]

    def revoke_token(self, caller: Caller, token_id: str) -> TokenInfo:
        with self.meta.write() as tx:
            self._need_active(tx)
            record = tx.get_token(token_id) if re.fullmatch(r"[0-9a-f]{16}", token_id) else None
            if record is None:
                raise NotFound(f"token {token_id[:40]} not found (tusk auth list-tokens)")
            if record.principal != caller.principal and not caller.is_admin:
                raise PermissionDenied(
                    f"{caller.principal} may not revoke {record.principal}'s token: it needs "
                    "clusterAdmin"
                )
            tx.revoke_token(token_id, time.time())
            entry = AuditRecord(
                time.time(), caller.principal, "rest", "auth_revoke_token", "token", token_id,
                True, f"of {record.principal}",
            )  # fmt: skip
            tx.add_audit([entry])
            record = tx.get_token(token_id)
        assert record is not None
        return _token_info(record, time.time())

    def _need_active(self, tx: MetaTx) -> dict[str, str]:
        settings = tx.auth_settings()
        if settings.get("active") != "1":
            raise Conflict("auth is not active: tusk auth activate turns it on")
        return settings

    # Roles

    def _need_resource(self, tx: MetaTx, resource_type: str, resource: str) -> None:
        if resource_type not in _KNOWN:
            raise InvalidArgument(
                f"roles are set on a repo, a project or the cluster, not {resource_type[:40]!r}"
            )
        if resource_type == "repo" and tx.get_repo(resource) is None:
            raise RepoNotFound(f"repo {resource} not found")
        if resource_type == "project" and tx.get_project(check_project_name(resource)) is None:
            raise ProjectNotFound(
                f"project {resource} not found (list them with: tusk list project)"
            )

    def get_roles(self, resource_type: str, resource: str) -> dict[str, list[str]]:
        """Who has which role on a repo, a project or the cluster (``""``)."""
        if resource_type == "repo":
            resource = _canonical(resource) or resource
        with self.meta.read() as tx:
            self._need_active(tx)
            self._need_resource(tx, resource_type, resource)
            out: dict[str, list[str]] = {}
            for principal, role in tx.bindings_on(resource_type, resource):
                out.setdefault(principal, []).append(role)
        return out

    def set_roles(
        self, caller: Caller, resource_type: str, resource: str, principal: str,
        roles: Iterable[str],
    ) -> dict[str, list[str]]:  # fmt: skip
        """Replace ``principal``'s roles on a repo, a project or the cluster (``[]`` or
        ``none``: remove them). A project takes its own roles (projectViewer, projectWriter,
        projectOwner) and the repo roles, which then hold on every repo of the project."""
        principal = check_principal(principal)
        if resource_type == "repo":
            resource = _canonical(resource) or resource
        known = _KNOWN.get(resource_type, {})
        wanted = [r for r in roles if r != "none"]
        for role in wanted:
            if role not in known:
                raise InvalidArgument(
                    f"unknown {resource_type} role {str(role)[:40]!r}: use one of "
                    f"{', '.join(known)} (or none){_role_hint(resource_type, str(role))}"
                )
        with self.meta.write() as tx:
            self._need_active(tx)
            self._need_resource(tx, resource_type, resource)
            if principal == ROOT and resource_type == "cluster" and "clusterAdmin" not in wanted:
                raise InvalidArgument(f"{ROOT} keeps clusterAdmin")
            tx.set_roles(resource_type, resource, principal, wanted)
            tx.add_audit([AuditRecord(
                time.time(), caller.principal, "rest", f"auth_set_{resource_type}_roles",
                resource_type, resource, True, f"{principal}: {', '.join(wanted) or 'none'}",
            )])  # fmt: skip
        return self.get_roles(resource_type, resource)

    def check_repo(self, caller: Caller, repo: str) -> RepoAccess:
        """The caller's roles on a repo (those on its project shown as ``ROLE (project P)``)
        and what they allow there."""
        repo = _canonical(repo) or repo
        roles, perms = self.access(caller, "repo", repo)
        repo_perms = sorted(p for p in perms if p.startswith("repo."))
        return RepoAccess(caller.principal, repo, roles, repo_perms)

    def access(
        self, caller: Caller, resource_type: str, resource: str
    ) -> tuple[list[str], set[str]]:
        """The caller's roles on a repo, a project or the cluster (``""``) and the
        permissions they give there (a repo's include those of roles on its project, shown
        as ``ROLE (project P)``; the cluster's roles hold everywhere)."""
        if resource_type == "repo":
            resource = _canonical(resource) or resource
        with self.meta.read() as tx:
            self._need_active(tx)
            self._need_resource(tx, resource_type, resource)
            bound: Bound = set()
            if resource_type == "repo":
                project = split_repo(resource)[0]
                bound = {(k, r) for k, r in tx.roles_of(caller.principal, resource, project)
                         if k != "cluster"}  # fmt: skip
            elif resource_type == "project":
                project = resource
                bound = {(k, r) for k, r in tx.roles_of(caller.principal, None, resource)
                         if k == "project"}  # fmt: skip
        roles = sorted(r for k, r in bound if k == "repo")
        roles += sorted(f"{r} (project {project})" for k, r in bound if k == "project")
        perms = _bound_permissions(bound) | permissions_of(set(caller.cluster_roles))
        return roles + sorted(caller.cluster_roles), perms

    def grant_creator(self, caller: Caller, repo: str) -> None:
        """The creator of a repo owns it (a user or robot; not while auth is off)."""
        if caller.active and caller.principal and not caller.principal.startswith("pipeline:"):
            with self.meta.write() as tx:
                tx.set_roles("repo", repo, caller.principal, ["repoOwner"])

    def grant_pipeline(self, caller: Caller, name: str, inputs: Iterable[str]) -> None:
        """A pipeline reads its inputs and writes its output repo; its creator owns that."""
        if not caller.active:
            return
        identity = f"pipeline:{name}"
        with self.meta.write() as tx:
            for binding_repo in [r for r in set(inputs) if r != name]:
                current = {role for kind, role in tx.roles_of(identity, binding_repo)
                           if kind == "repo"}  # fmt: skip
                if not current:
                    tx.set_roles("repo", binding_repo, identity, ["repoReader"])
            tx.set_roles("repo", name, identity, ["repoWriter"])
        self.grant_creator(caller, name)

    def forget_repo(self, repo: str) -> None:
        """A deleted repo's bindings go (a new repo of that name starts with none)."""
        with self.meta.write() as tx:
            tx.delete_bindings("repo", _canonical(repo) or repo)

    def grant_project_creator(self, caller: Caller, project: str) -> None:
        """The creator of a project is its projectOwner, as in Pachyderm (a user or robot;
        nothing while auth is off)."""
        if caller.active and caller.principal and not caller.principal.startswith("pipeline:"):
            with self.meta.write() as tx:
                tx.set_roles("project", project, caller.principal, ["projectOwner"])

    def forget_project(self, project: str) -> None:
        """A deleted project's bindings go (a new project of that name starts with none)."""
        with self.meta.write() as tx:
            tx.delete_bindings("project", project)

    # The audit log

    def audit(
        self,
        *,
        principal: str | None = None,
        repo: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """The audit log, newest first."""
        with self.meta.read() as tx:
            return tx.audit(principal=principal, resource=repo, since=since, limit=limit)
