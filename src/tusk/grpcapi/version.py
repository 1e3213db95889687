"""``versionpb_v2.API``: GetVersion, which pachctl and pachyderm-sdk call first."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from tusk._version import __version__
from tusk.grpcapi.gen import version_pb2 as v
from tusk.grpcapi.server import Edge, Rpc

# The Pachyderm release whose protocol Tusk speaks: clients compare their own with it.
PACHYDERM_MAJOR, PACHYDERM_MINOR, PACHYDERM_MICRO = 2, 12, 0

RPCS = [Rpc("versionpb_v2.API", "GetVersion", empty_pb2.Empty, "unary")]


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def GetVersion(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.edge.gate(context, "versionpb_v2.API/GetVersion")
        return v.Version(
            major=PACHYDERM_MAJOR,
            minor=PACHYDERM_MINOR,
            micro=PACHYDERM_MICRO,
            additional=f"tusk-{__version__}",
            platform="tusk",
        )
