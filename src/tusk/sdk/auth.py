"""The auth half of the client API: a server's tokens, roles and audit log.

Auth belongs to a server (``tusk up`` / ``tusk serve``); the in-process client has none, and
its transport answers every call here with one InvalidArgument that says so. These calls
go through the transport's ``rest`` (one REST call), the only server-only door of the seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from tusk.api.wire import url_segment as _seg
from tusk.sdk.projects import ProjectScope

if TYPE_CHECKING:
    from tusk.sdk.local import LocalTransport
    from tusk.sdk.remote import HttpTransport


class AuthMethods(ProjectScope):
    _t: LocalTransport | HttpTransport

    def auth_activate(self) -> str:
        """Turn auth on; returns the root token (user:root, clusterAdmin), shown this once.

        Needs no token; raises Conflict when auth is already on.
        """
        return str(self._t.rest("auth_activate", "POST", "/auth/activate")["token"])

    def auth_deactivate(self) -> None:
        """Turn auth off (user:root only): tokens and roles go, the audit log stays."""
        self._t.rest("auth_deactivate", "POST", "/auth/deactivate")

    def whoami(self) -> dict[str, Any]:
        """Who this client's token is: ``{principal, token_id, cluster_roles, active}``."""
        return cast("dict[str, Any]", self._t.rest("whoami", "GET", "/auth/whoami"))

    def create_token(
        self,
        principal: str | None = None,
        ttl: float | None = None,
        description: str = "",
        s3: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """A new token for ``principal`` (default: the caller; others need clusterAdmin).

        ``ttl``: seconds until it expires (None: never). ``s3``: the token is also a key pair
        for the S3 gateway; ``info["s3"]`` then holds ``access_key_id`` and
        ``secret_access_key``. Returns ``(info, token)``; the token is shown this once.
        """
        body: dict[str, Any] = {"principal": principal, "ttl": ttl, "description": description}
        if s3:
            body["s3"] = True
        out = self._t.rest("create_token", "POST", "/auth/tokens", json=body)
        info = cast("dict[str, Any]", out["info"])
        if s3:
            info = {**info, "s3": dict(out["s3"])}
        return info, str(out["token"])

    def list_tokens(self) -> list[dict[str, Any]]:
        """The caller's tokens (every token for clusterAdmin), never their secrets."""
        return cast("list[dict[str, Any]]", self._t.rest("list_tokens", "GET", "/auth/tokens"))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by its id: it is refused from its next request on."""
        url = f"/auth/tokens/{_seg(token_id)}"
        return cast("dict[str, Any]", self._t.rest("revoke_token", "DELETE", url))

    def get_repo_roles(self, repo: str) -> dict[str, list[str]]:
        """Who has which role on a repo: ``{principal: [roles]}``."""
        url = f"/auth/repos/{_seg(self._repo(repo))}/roles"
        return cast("dict[str, list[str]]", self._t.rest("get_repo_roles", "GET", url))

    def set_repo_roles(
        self, repo: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Replace ``principal``'s roles on a repo (``[]`` or ``["none"]``: remove them).

        Returns the repo's roles after the change.
        """
        body = {"principal": principal, "roles": list(roles)}
        url = f"/auth/repos/{_seg(self._repo(repo))}/roles"
        return cast("dict[str, list[str]]", self._t.rest("set_repo_roles", "PUT", url, json=body))

    def get_project_roles(self, project: str) -> dict[str, list[str]]:
        """Who has which role on a project: ``{principal: [roles]}``."""
        url = f"/auth/projects/{_seg(project)}/roles"
        return cast("dict[str, list[str]]", self._t.rest("get_project_roles", "GET", url))

    def set_project_roles(
        self, project: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Replace ``principal``'s roles on a project (projectOwner or clusterAdmin):
        projectViewer, projectWriter, projectOwner, or a repo role (repoReader, repoWriter,
        repoOwner) that then holds on every repo of the project; ``[]`` or ``["none"]``
        remove them. Returns the project's roles after the change.
        """
        body = {"principal": principal, "roles": list(roles)}
        url = f"/auth/projects/{_seg(project)}/roles"
        out = self._t.rest("set_project_roles", "PUT", url, json=body)
        return cast("dict[str, list[str]]", out)

    def get_cluster_roles(self) -> dict[str, list[str]]:
        """Who has which cluster role: ``{principal: [roles]}`` (clusterAdmin)."""
        out = self._t.rest("get_cluster_roles", "GET", "/auth/cluster/roles")
        return cast("dict[str, list[str]]", out)

    def set_cluster_roles(self, principal: str, roles: Sequence[str]) -> dict[str, list[str]]:
        """Replace ``principal``'s cluster roles (clusterAdmin); returns them all after."""
        body = {"principal": principal, "roles": list(roles)}
        out = self._t.rest("set_cluster_roles", "PUT", "/auth/cluster/roles", json=body)
        return cast("dict[str, list[str]]", out)

    def check_repo(self, repo: str) -> dict[str, Any]:
        """The caller's roles and permissions on a repo: ``{principal, repo, roles, ...}``."""
        url = f"/auth/repos/{_seg(self._repo(repo))}/check"
        return cast("dict[str, Any]", self._t.rest("check_repo", "GET", url))

    def audit(
        self,
        user: str | None = None,
        repo: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (clusterAdmin).

        ``user``: one principal's entries; ``repo``: one repo's; ``since``: seconds back from
        now; ``limit``: at most this many entries.
        """
        params = {
            "user": user,
            "repo": self._repo(repo) if repo else None,
            "since": since,
            "limit": limit,
        }
        out = self._t.rest("audit", "GET", "/audit", params=params)
        return cast("list[dict[str, Any]]", out)
