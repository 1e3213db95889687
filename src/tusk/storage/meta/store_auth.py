"""SQL for auth (mixed into ``MetaTx``): settings, tokens, role bindings, the audit log.

Only :mod:`tusk.auth` calls these; it decides what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen
class TokenRecord:
    id: str
    principal: str
    digest: str  # hex HMAC-SHA256 of the secret under the store's auth key
    description: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    sealed: bytes | None = None  # tokens made for S3: the secret, sealed (tusk.auth.sealing)


@frozen
class AuditRecord:
    ts: float
    principal: str
    edge: str
    operation: str
    resource_type: str
    resource: str
    allowed: bool
    detail: str
    id: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, **{k: v for k, v in self.__dict__.items() if k != "id"}}


# Built once: every authenticated request runs these three, and building a statement costs
# more than SQLite takes to run it.
_SETTINGS = sa.select(t.auth_settings.c.key, t.auth_settings.c.value)
_TOKEN = sa.select(t.auth_tokens).where(t.auth_tokens.c.id == sa.bindparam("id"))
_rb = t.role_bindings.c
# The cluster, one repo and one project (the repo's, or the one a project rule names).
_ON = sa.or_(
    _rb.resource_type == "cluster",
    sa.and_(_rb.resource_type == "repo", _rb.resource == sa.bindparam("repo")),
    sa.and_(_rb.resource_type == "project", _rb.resource == sa.bindparam("project")),
)
_ROLES = sa.select(_rb.resource_type, _rb.role).where(
    _rb.principal == sa.bindparam("principal"), _ON
)

# A token's row with its principal's roles on the cluster, one repo and its project: one
# query per request.
_tk = t.auth_tokens
_TOKEN_ROLES = (
    sa.select(_tk, _rb.resource_type, _rb.role)
    .select_from(
        _tk.outerjoin(
            t.role_bindings,
            sa.and_(_rb.principal == _tk.c.principal, _ON),
        )
    )
    .where(_tk.c.id == sa.bindparam("id"))
)


class AuthTxMixin:
    conn: Connection
    is_sqlite: bool

    # Settings

    def auth_settings(self) -> dict[str, str]:
        return {key: value for key, value in self.conn.execute(_SETTINGS)}

    def set_auth_settings(self, values: dict[str, str | None]) -> None:
        c = t.auth_settings.c
        for key, value in values.items():
            self.conn.execute(t.auth_settings.delete().where(c.key == key))
            if value is not None:
                self.conn.execute(t.auth_settings.insert().values(key=key, value=value))

    # Tokens

    def insert_token(self, record: TokenRecord) -> None:
        self.conn.execute(t.auth_tokens.insert().values(**record.__dict__))

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self.conn.execute(_TOKEN, {"id": token_id}).first()
        return None if row is None else TokenRecord(*row)

    def token_with_roles(
        self, token_id: str, repo: str | None, project: str | None = None
    ) -> tuple[TokenRecord | None, list[tuple[str, str]]]:
        """A token, and (resource_type, role) of its principal on the cluster, ``repo`` and
        ``project`` (resource_type "cluster", "repo" or "project")."""
        values = {"id": token_id, "repo": repo or "", "project": project or ""}
        rows = self.conn.execute(_TOKEN_ROLES, values).all()
        if not rows:
            return None, []
        n = len(_tk.c)
        roles = [(r[n], r[n + 1]) for r in rows if r[n] is not None]
        return TokenRecord(*rows[0][:n]), roles

    def list_tokens(self, principal: str | None = None) -> list[TokenRecord]:
        q = sa.select(t.auth_tokens).order_by(t.auth_tokens.c.created_at)
        if principal is not None:
            q = q.where(t.auth_tokens.c.principal == principal)
        return [TokenRecord(*row) for row in self.conn.execute(q)]

    def revoke_token(self, token_id: str, now: float) -> None:
        c = t.auth_tokens.c
        self.conn.execute(
            t.auth_tokens.update()
            .where(c.id == token_id, c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoke_tokens_of(self, principal: str, now: float) -> int:
        c = t.auth_tokens.c
        done = self.conn.execute(
            t.auth_tokens.update()
            .where(c.principal == principal, c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(done.rowcount or 0)

    def delete_all_auth(self) -> None:
        """Deactivation: tokens, bindings and settings go (the audit log stays)."""
        for table in (t.auth_tokens, t.role_bindings, t.auth_settings):
            self.conn.execute(table.delete())

    # Role bindings

    def roles_of(
        self, principal: str, repo: str | None, project: str | None = None
    ) -> list[tuple[str, str]]:
        """(resource_type, role) bound to ``principal`` on the cluster, ``repo`` and
        ``project``."""
        values = {"principal": principal, "repo": repo or "", "project": project or ""}
        return [(kind, role) for kind, role in self.conn.execute(_ROLES, values)]

    def repos_with_roles(self, principal: str) -> set[str]:
        c = t.role_bindings.c
        q = sa.select(c.resource).where(c.principal == principal, c.resource_type == "repo")
        return {r.resource for r in self.conn.execute(q)}

    def project_roles_of(self, principal: str) -> list[tuple[str, str]]:
        """(project, role) bound to ``principal`` on projects."""
        c = t.role_bindings.c
        q = sa.select(c.resource, c.role).where(
            c.principal == principal, c.resource_type == "project"
        )
        return [(r.resource, r.role) for r in self.conn.execute(q)]

    def bindings_on(self, resource_type: str, resource: str) -> list[tuple[str, str]]:
        """(principal, role) bound on one resource."""
        c = t.role_bindings.c
        q = (
            sa.select(c.principal, c.role)
            .where(c.resource_type == resource_type, c.resource == resource)
            .order_by(c.principal, c.role)
        )
        return [(r.principal, r.role) for r in self.conn.execute(q)]

    def set_roles(
        self, resource_type: str, resource: str, principal: str, roles: Iterable[str]
    ) -> None:
        """Replace ``principal``'s roles on one resource."""
        c = t.role_bindings.c
        self.conn.execute(
            t.role_bindings.delete().where(
                c.resource_type == resource_type,
                c.resource == resource,
                c.principal == principal,
            )
        )
        for role in sorted(set(roles)):
            self.conn.execute(
                t.role_bindings.insert().values(
                    resource_type=resource_type, resource=resource, principal=principal, role=role
                )
            )

    def delete_bindings(self, resource_type: str, resource: str) -> None:
        c = t.role_bindings.c
        self.conn.execute(
            t.role_bindings.delete().where(c.resource_type == resource_type, c.resource == resource)
        )

    def delete_bindings_of(self, principal: str) -> None:
        self.conn.execute(t.role_bindings.delete().where(t.role_bindings.c.principal == principal))

    # Audit

    def add_audit(self, records: Iterable[AuditRecord]) -> None:
        rows = [{k: v for k, v in r.__dict__.items() if k != "id"} for r in records]
        if rows:
            self.conn.execute(t.audit_log.insert(), rows)

    def audit(
        self,
        *,
        principal: str | None = None,
        resource: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Newest first."""
        c = t.audit_log.c
        q = sa.select(t.audit_log).order_by(c.id.desc()).limit(limit)
        if principal is not None:
            q = q.where(c.principal == principal)
        if resource is not None:
            q = q.where(c.resource == resource)
        if since is not None:
            q = q.where(c.ts >= since)
        return [
            AuditRecord(
                r.ts,
                r.principal,
                r.edge,
                r.operation,
                r.resource_type,
                r.resource,
                bool(r.allowed),
                r.detail,
                r.id,
            )
            for r in self.conn.execute(q)
        ]
