"""``auth_v2.API``: who a token is, activation, robot tokens, role bindings and permission
checks, mapped onto Tusk's own tokens and roles (``tusk auth``; the same on every edge).

Pachyderm's resources are Tusk's: a ``REPO`` named ``project/repo`` (``default/x`` is Tusk's
bare ``x``), a ``PROJECT`` and the ``CLUSTER``. Roles are Tusk's, which carry Pachyderm's
names (repoReader, repoWriter, repoOwner, projectViewer, projectWriter, projectOwner,
clusterAdmin, pipelineCreator); Tusk's permissions are reported as the Pachyderm permissions
they grant (``repo.read`` is ``REPO_READ``, ``REPO_LIST_FILE``, ...). A robot's principal is
``robot:<name>``, as Pachyderm's. OIDC, groups and the root token's rotation are not served.
"""

from __future__ import annotations

from typing import Any

import grpc

from tusk.auth import permissions as perm
from tusk.errors import InvalidArgument
from tusk.grpcapi.gen import auth_pb2 as pb
from tusk.grpcapi.server import EDGE, Edge, Rpc
from tusk.ids import DEFAULT_PROJECT, qualify

SERVICE = "auth_v2.API"

RPCS = [
    Rpc(SERVICE, "WhoAmI", pb.WhoAmIRequest, "unary"),
    Rpc(SERVICE, "Activate", pb.ActivateRequest, "unary"),
    Rpc(SERVICE, "Deactivate", pb.DeactivateRequest, "unary"),
    Rpc(SERVICE, "GetRobotToken", pb.GetRobotTokenRequest, "unary"),
    Rpc(SERVICE, "RevokeAuthToken", pb.RevokeAuthTokenRequest, "unary"),
    Rpc(SERVICE, "GetRoleBinding", pb.GetRoleBindingRequest, "unary"),
    Rpc(SERVICE, "ModifyRoleBinding", pb.ModifyRoleBindingRequest, "unary"),
    Rpc(SERVICE, "Authorize", pb.AuthorizeRequest, "unary"),
    Rpc(SERVICE, "GetPermissions", pb.GetPermissionsRequest, "unary"),
]

# Tusk's permissions as the Pachyderm permissions each grants.
GRANTS: dict[str, list[int]] = {
    perm.REPO_READ: [
        pb.REPO_READ, pb.REPO_INSPECT_COMMIT, pb.REPO_LIST_COMMIT, pb.REPO_LIST_BRANCH,
        pb.REPO_INSPECT_FILE, pb.REPO_LIST_FILE, pb.REPO_ADD_PIPELINE_READER,
        pb.PIPELINE_LIST_JOB,
    ],
    perm.REPO_WRITE: [
        pb.REPO_WRITE, pb.REPO_DELETE_COMMIT, pb.REPO_CREATE_BRANCH, pb.REPO_DELETE_BRANCH,
        pb.REPO_REMOVE_PIPELINE_READER, pb.REPO_ADD_PIPELINE_WRITER,
    ],
    perm.REPO_OWN: [pb.REPO_MODIFY_BINDINGS, pb.REPO_DELETE],
    perm.PROJECT_LIST_REPO: [pb.PROJECT_LIST_REPO],
    perm.PROJECT_CREATE_REPO: [pb.PROJECT_CREATE_REPO],
    perm.PROJECT_OWN: [pb.PROJECT_DELETE, pb.PROJECT_MODIFY_BINDINGS],
    perm.REPO_CREATE: [pb.PROJECT_CREATE],
    perm.CLUSTER_ADMIN: [
        pb.CLUSTER_MODIFY_BINDINGS, pb.CLUSTER_GET_BINDINGS, pb.CLUSTER_AUTH_ACTIVATE,
        pb.CLUSTER_AUTH_DEACTIVATE, pb.CLUSTER_AUTH_GET_ROBOT_TOKEN,
        pb.CLUSTER_AUTH_REVOKE_USER_TOKENS,
    ],
}  # fmt: skip
_KINDS = {pb.CLUSTER: "cluster", pb.REPO: "repo", pb.PROJECT: "project"}


def resource_of(resource: Any) -> tuple[str, str]:
    """(Tusk's resource type, stored name) of a ``Resource``."""
    kind = _KINDS.get(resource.type)
    if kind is None:
        name = pb.ResourceType.Name(resource.type) if resource.type in (0, 3, 5) else "?"
        raise InvalidArgument(f"roles are bound on a REPO, a PROJECT or the CLUSTER, not {name}")
    if kind == "cluster":
        return kind, ""
    if kind == "repo":
        project, _, bare = resource.name.rpartition("/")
        return kind, qualify(project or DEFAULT_PROJECT, bare)
    return kind, resource.name


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.auth = edge.auth

    def _gate(self, context: grpc.ServicerContext, rpc: str) -> Any:
        caller = self.edge.gate(context, f"{SERVICE}/{rpc}")
        if not caller.active:  # Pachyderm's answer while auth is off (its clients test for it)
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the auth service is not activated")
        return caller

    def WhoAmI(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.WhoAmIResponse(username=self._gate(context, "WhoAmI").principal)

    def Activate(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Auth on; the answer is the root token (Tusk makes its own: ``root_token`` is not
        taken, a chosen secret would be a weaker one)."""
        self.edge.gate(context, f"{SERVICE}/Activate")
        if request.root_token:
            raise InvalidArgument(
                "Tusk makes the root token itself: send Activate without root_token"
            )
        _info, token = self.auth.activate()
        return pb.ActivateResponse(pach_token=token)

    def Deactivate(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.auth.deactivate(self._gate(context, "Deactivate"))
        return pb.DeactivateResponse()

    def GetRobotToken(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "GetRobotToken")
        if not request.robot:
            raise InvalidArgument("no robot given: set GetRobotTokenRequest.robot")
        robot = request.robot if request.robot.startswith("robot:") else f"robot:{request.robot}"
        ttl = float(request.ttl) if request.ttl > 0 else None
        _info, token = self.auth.create_token(caller, robot, ttl, "robot token (gRPC)")
        return pb.GetRobotTokenResponse(token=token)

    def RevokeAuthToken(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "RevokeAuthToken")
        parts = request.token.split("_")
        if len(parts) < 3 or parts[0] != "tusk":
            raise InvalidArgument("not a Tusk token: they look like tusk_<id>_<secret>")
        self.auth.revoke_token(caller, parts[1])
        return pb.RevokeAuthTokenResponse(number=1)

    def GetRoleBinding(self, request: Any, context: grpc.ServicerContext) -> Any:
        kind, name = resource_of(request.resource)
        caller = self._gate(context, "GetRoleBinding")
        need = {"repo": perm.REPO_READ, "cluster": perm.CLUSTER_ADMIN}.get(kind)  # project: any
        if need is not None:
            self.auth.require(caller, need, name or None, edge=EDGE, operation="GetRoleBinding")
        binding = pb.RoleBinding()
        for principal, roles in self.auth.get_roles(kind, name).items():
            for role in roles:
                binding.entries[principal].roles[role] = True
        return pb.GetRoleBindingResponse(binding=binding)

    def ModifyRoleBinding(self, request: Any, context: grpc.ServicerContext) -> Any:
        kind, name = resource_of(request.resource)
        caller = self._gate(context, "ModifyRoleBinding")
        need = {"repo": perm.REPO_OWN, "project": perm.PROJECT_OWN}.get(kind, perm.CLUSTER_ADMIN)
        self.auth.require(caller, need, name or None, edge=EDGE, operation="ModifyRoleBinding")
        self.auth.set_roles(caller, kind, name, request.principal, list(request.roles))
        return pb.ModifyRoleBindingResponse()

    def _granted(self, context: grpc.ServicerContext, rpc: str, resource: Any) -> tuple:
        kind, name = resource_of(resource)
        caller = self._gate(context, rpc)
        roles, tusk_perms = self.auth.access(caller, kind, name)
        granted = {p for tp in tusk_perms for p in GRANTS.get(tp, ())}
        return caller, roles, granted

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller, _roles, granted = self._granted(context, "Authorize", request.resource)
        asked = list(request.permissions)
        satisfied = [p for p in asked if p in granted]
        missing = [p for p in asked if p not in granted]
        return pb.AuthorizeResponse(
            authorized=not missing, satisfied=satisfied, missing=missing,
            principal=caller.principal,
        )  # fmt: skip

    def GetPermissions(self, request: Any, context: grpc.ServicerContext) -> Any:
        _caller, roles, granted = self._granted(context, "GetPermissions", request.resource)
        return pb.GetPermissionsResponse(permissions=sorted(granted), roles=roles)
