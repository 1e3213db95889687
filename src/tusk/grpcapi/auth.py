"""``auth_v2.API``: WhoAmI, with which Pachyderm's clients learn who their token is.

Tusk's tokens, roles and audit log (``tusk auth``) are the same on every edge; the other
auth RPCs (activation, role bindings, robot tokens) are not served over gRPC yet: use
``tusk auth`` or the REST API.
"""

from __future__ import annotations

from typing import Any

import grpc

from tusk.grpcapi.gen import auth_pb2 as pb
from tusk.grpcapi.server import Edge, Rpc

SERVICE = "auth_v2.API"

RPCS = [Rpc(SERVICE, "WhoAmI", pb.WhoAmIRequest, "unary")]


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def WhoAmI(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self.edge.gate(context, f"{SERVICE}/WhoAmI")
        if not caller.active:  # Pachyderm's answer while auth is off (its clients test for it)
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the auth service is not activated")
        return pb.WhoAmIResponse(username=caller.principal)
