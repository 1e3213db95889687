"""The gRPC server: generic handlers over Tusk's services, behind the one permission check.

Each RPC is a method of a handler class named as the RPC (``CreateRepo``), registered under
its service (``pfs_v2.API``) with the request message it parses. The caller's token comes in
the ``authn-token`` metadata, as pachyderm-sdk and pachctl send it; ``Edge.gate`` passes it
to :meth:`AuthService.authorize` with the RPC's full name, so an RPC without a rule in
``tusk.auth.permissions.GRPC`` is refused (and a test names it first). Tusk's errors become
gRPC status codes with the one-line message (NOT_FOUND, INVALID_ARGUMENT, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, NoReturn

import grpc

from tusk.auth.service import AuthService, Caller
from tusk.errors import InUse, InvalidArgument, TuskError
from tusk.ids import DEFAULT_PROJECT
from tusk.pfs.service import PfsService
from tusk.pps.service import PpsService
from tusk.values import frozen

EDGE = "grpc"
TOKEN_METADATA = "authn-token"
TXN_METADATA = "pach-transaction"
MAX_MESSAGE = 64 << 20  # bigger than pachyderm-sdk's own 20 MiB receive limit

_STATUS = {
    "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "branch_protected": grpc.StatusCode.FAILED_PRECONDITION,  # a rule of the branch
    "check_failed": grpc.StatusCode.FAILED_PRECONDITION,
    "image_pull_denied": grpc.StatusCode.PERMISSION_DENIED,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "storage_error": grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: TuskError) -> grpc.StatusCode:
    """The gRPC status of a Tusk error (as Pachyderm's for the same case)."""
    if exc.code in _STATUS:
        return _STATUS[exc.code]
    if exc.status == 404:
        return grpc.StatusCode.NOT_FOUND
    if exc.status == 400:
        return grpc.StatusCode.INVALID_ARGUMENT
    if exc.status == 409:
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, exc: TuskError) -> NoReturn:
    context.abort(status_of(exc), exc.message)
    raise AssertionError("context.abort raises")  # pragma: no cover


@frozen
class Rpc:
    service: str  # "pfs_v2.API"
    name: str  # "CreateRepo"
    request: Any  # the request message class
    shape: str  # "unary", "server_stream" (a generator) or "client_stream"

    @property
    def full(self) -> str:
        return f"{self.service}/{self.name}"


class Edge:
    """What every handler class gets: the services, the gate, every RPC's method (by
    ``service/Rpc``) and the server's open transactions."""

    def __init__(self, pfs: PfsService, pps: PpsService, auth: AuthService) -> None:
        from tusk.grpcapi.transaction import Transactions

        self.pfs = pfs
        self.pps = pps
        self.auth = auth
        self.methods: dict[str, Callable[..., Any]] = {}
        self.transactions = Transactions(self)

    def gate(self, context: grpc.ServicerContext, rpc: str, repo: str | None = None) -> Caller:
        """The one permission check for ``rpc`` (on ``repo``), with the caller's token."""
        token = next(
            (str(v) for k, v in context.invocation_metadata() if k == TOKEN_METADATA), None
        )
        return self.auth.authorize(EDGE, rpc, token, repo=repo)


class InTransaction:
    """The context of a request run as part of a transaction: the caller's own, plus the id
    a StartCommit gives its commit and the transaction's id (the commit set)."""

    def __init__(self, context: grpc.ServicerContext, commit_id: str | None, txn_id: str) -> None:
        self._context = context
        self.commit_id = commit_id
        self.commit_set = txn_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def transaction_of(context: grpc.ServicerContext) -> str:
    """The transaction a call is part of (``pach-transaction`` metadata), or ""."""
    if isinstance(context, InTransaction):
        return ""  # it is being run as one
    return next((str(v) for k, v in context.invocation_metadata() if k == TXN_METADATA), "")


def page(items: list[Any], number: int = 0, reverse: bool = False) -> list[Any]:
    """A listing as a request asks for it: ``reverse``d, then the first ``number`` (0: all)."""
    if reverse:
        items = items[::-1]
    return items[:number] if number > 0 else items


def in_projects(name: str, projects: Any) -> bool:
    """Whether the stored ``name`` (``project/x``, or bare in default) is in one of the
    ``Project`` messages of a request (none: every project)."""
    wanted = {p.name or DEFAULT_PROJECT for p in projects}
    return not wanted or (name.rpartition("/")[0] or DEFAULT_PROJECT) in wanted


_HANDLERS = {
    "unary": grpc.unary_unary_rpc_method_handler,
    "client_stream": grpc.stream_unary_rpc_method_handler,
    "server_stream": grpc.unary_stream_rpc_method_handler,
}


def _wrap(edge: Edge, rpc: Rpc, method: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """A grpc handler calling ``method(request, context)``; Tusk errors become statuses. An
    RPC a transaction may hold, called in one, is added to it instead."""
    from tusk.grpcapi.transaction import NOT_IN_TRANSACTION, TRANSACTIONAL

    if rpc.full in TRANSACTIONAL or rpc.full in NOT_IN_TRANSACTION:
        direct = method

        def method(request: Any, context: grpc.ServicerContext) -> Any:
            txn = transaction_of(context)
            if not txn:
                return direct(request, context)
            if rpc.full in NOT_IN_TRANSACTION:
                raise InvalidArgument(NOT_IN_TRANSACTION[rpc.full])
            caller = edge.gate(context, "transaction_v2.API/FinishTransaction")
            return edge.transactions.append(txn, rpc.full, request, context, caller)

    handler: Callable[..., Any]
    if rpc.shape == "server_stream":

        def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(request, context)
            except TuskError as exc:
                abort(context, exc)

    else:

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(request, context)
            except TuskError as exc:
                abort(context, exc)

    return _HANDLERS[rpc.shape](
        handler, request_deserializer=rpc.request.FromString, response_serializer=_serialize
    )


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def handlers(edge: Edge) -> list[grpc.GenericRpcHandler]:
    """The generic handlers of every service Tusk serves."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for module in _modules():
        impl = module.Handlers(edge)
        for rpc in module.RPCS:
            method = edge.methods[rpc.full] = getattr(impl, rpc.name)
            by_service.setdefault(rpc.service, {})[rpc.name] = _wrap(edge, rpc, method)
    served = [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]
    return [*served, _NotServed()]


class _NotServed(grpc.GenericRpcHandler):
    """Asked last: any other method answers UNIMPLEMENTED, naming itself (grpc's own answer
    is a bare "Method not found!")."""

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = str(handler_call_details.method).lstrip("/")

        def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method} is not served by Tusk (docs/grpc.md lists what is)",
            )
            yield b""  # pragma: no cover - abort raises

        return grpc.stream_stream_rpc_method_handler(refuse)


def served_rpcs() -> list[str]:
    """``service/Rpc`` of every RPC served (each must have a permission rule)."""
    return [rpc.full for module in _modules() for rpc in module.RPCS]


def _modules() -> list[Any]:
    from tusk.grpcapi import auth, pfs, pps, transaction, version

    return [version, auth, pfs, pps, transaction]


def start_grpc(
    pfs: PfsService, pps: PpsService, auth: AuthService, host: str, port: int
) -> tuple[grpc.Server, int]:
    """Serve on ``host:port`` (0: any free port); the server and its port. InUse when taken."""
    logging.getLogger("grpc").setLevel(logging.ERROR)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="tusk-grpc"),
        options=[
            ("grpc.so_reuseport", 0),  # a taken port is an error, not a shared one
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    server.add_generic_rpc_handlers(handlers(Edge(pfs, pps, auth)))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        server.stop(None)
        raise InUse(f"gRPC port {port} on {host} is taken")
    server.start()
    return server, bound
