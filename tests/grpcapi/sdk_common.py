"""What the pachyderm-sdk scripts of tests/grpcapi share (they run in the SDK's own venv,
from this folder, so a plain import finds it)."""

import grpc


def code(call):
    """``"ok"``, or ``[status name, details]`` of the gRPC error ``call()`` raised."""
    try:
        call()
    except grpc.RpcError as exc:
        return [exc.code().name, exc.details()]
    return "ok"
