"""``transaction_v2.API``: several changes made as one, as Pachyderm's transactions.

A client starts a transaction and sends its id in the ``pach-transaction`` metadata; each
RPC a transaction may hold (CreateRepo, DeleteRepo, StartCommit, FinishCommit,
SquashCommitSet, CreateBranch, DeleteBranch, StopJob) is then not run but added to it, after a
dry run of the whole transaction so far plus the new request (in one metadata transaction,
rolled back): a request that could not run is refused when it is added, and a StartCommit
answers with the id its commit will have. FinishTransaction runs every request in one
metadata transaction: all happen or none (the error names the request that failed). Commits
started in a transaction share its id as their commit set, so a pipeline reading two repos
changed in one transaction runs once.

Each request passes its own RPC's permission rule when it is added and again, with the
finishing caller's token, when the transaction runs. Files are not written in a transaction
(pachyderm-sdk refuses that itself): write to its commits once it has run.

Open transactions live in the server's memory (a restart of ``tusk up`` forgets them; nothing
of theirs was written). Pipelines (``create_pipeline_v2``) and ``update_job_state`` are not
taken into transactions: the first runs alone, the second is pachd's workers' own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2

from tusk.auth.service import Caller
from tusk.errors import InvalidArgument, NotFound, TuskError
from tusk.grpcapi.gen import transaction_pb2 as pb
from tusk.grpcapi.pfs import timestamp
from tusk.grpcapi.server import Edge, InTransaction, Rpc
from tusk.ids import new_commit_id

SERVICE = "transaction_v2.API"

RPCS = [
    Rpc(SERVICE, "StartTransaction", pb.StartTransactionRequest, "unary"),
    Rpc(SERVICE, "InspectTransaction", pb.InspectTransactionRequest, "unary"),
    Rpc(SERVICE, "DeleteTransaction", pb.DeleteTransactionRequest, "unary"),
    Rpc(SERVICE, "ListTransaction", pb.ListTransactionRequest, "unary"),
    Rpc(SERVICE, "FinishTransaction", pb.FinishTransactionRequest, "unary"),
    Rpc(SERVICE, "BatchTransaction", pb.BatchTransactionRequest, "unary"),
]

# The fields of a TransactionRequest, each the request of one RPC.
FIELDS = {
    "create_repo": "pfs_v2.API/CreateRepo",
    "delete_repo": "pfs_v2.API/DeleteRepo",
    "start_commit": "pfs_v2.API/StartCommit",
    "finish_commit": "pfs_v2.API/FinishCommit",
    "squash_commit_set": "pfs_v2.API/SquashCommitSet",
    "create_branch": "pfs_v2.API/CreateBranch",
    "delete_branch": "pfs_v2.API/DeleteBranch",
    "stop_job": "pps_v2.API/StopJob",
}
TRANSACTIONAL = {rpc: field for field, rpc in FIELDS.items()}
_NO_PIPELINE = (
    "a pipeline is not created inside a transaction in Tusk: create it after FinishTransaction"
)
_REFUSED = {
    "create_pipeline_v2": _NO_PIPELINE,
    "update_job_state": "UpdateJobState is Pachyderm's workers' own RPC; Tusk runs its jobs",
}
# RPCs Pachyderm would add to a transaction that Tusk refuses inside one (rather than run
# them at once, outside it).
NOT_IN_TRANSACTION = {"pps_v2.API/CreatePipeline": _NO_PIPELINE,
                      "pps_v2.API/CreatePipelineV2": _NO_PIPELINE}  # fmt: skip


class TransactionNotFound(NotFound):
    code = "transaction_not_found"


class _DryRun(Exception):
    """Rolls a dry run's metadata transaction back."""


class _Open:
    def __init__(self, txn_id: str, principal: str) -> None:
        self.info = pb.TransactionInfo(transaction=pb.Transaction(id=txn_id))
        self.info.started.CopyFrom(timestamp(time.time()))
        self.principal = principal


class Transactions:
    """The open transactions of one server, and the running of them."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self._open: dict[str, _Open] = {}
        self._lock = threading.RLock()  # one append or finish at a time

    def _get(self, txn_id: str, caller: Caller) -> _Open:
        found = self._open.get(txn_id)
        if found is None or not (caller.is_admin or found.principal == caller.principal):
            raise TransactionNotFound(f"transaction {txn_id[:64]} not found")
        return found

    def start(self, caller: Caller) -> str:
        txn_id = new_commit_id()
        with self._lock:
            self._open[txn_id] = _Open(txn_id, caller.principal)
        return txn_id

    def append(
        self, txn_id: str, rpc: str, request: Any, context: grpc.ServicerContext, caller: Caller
    ) -> Any:
        """Add ``request`` (of ``rpc``) to a transaction after a dry run; its answer."""
        with self._lock:
            found = self._get(txn_id, caller)
            item = pb.TransactionRequest()
            getattr(item, TRANSACTIONAL[rpc]).CopyFrom(request)
            requests = [*found.info.requests, item]
            responses, answer = self.run(txn_id, requests, list(found.info.responses), context,
                                         dry=True)  # fmt: skip
            found.info.requests.append(item)
            found.info.responses.append(responses[-1])
            found.info.version += 1
            return answer

    def finish(self, txn_id: str, context: grpc.ServicerContext, caller: Caller) -> Any:
        with self._lock:
            found = self._get(txn_id, caller)
            info = found.info
            responses, _ = self.run(txn_id, list(info.requests), list(info.responses), context)
            del self._open[txn_id]
        del info.responses[:]
        info.responses.extend(responses)
        return info

    def batch(self, requests: list[Any], context: grpc.ServicerContext) -> Any:
        """``requests`` run at once as one transaction."""
        info = pb.TransactionInfo(transaction=pb.Transaction(id=new_commit_id()), version=1)
        info.started.CopyFrom(timestamp(time.time()))
        info.requests.extend(requests)
        with self._lock:
            responses, _ = self.run(info.transaction.id, requests, [], context)
        info.responses.extend(responses)
        return info

    def inspect(self, txn_id: str, caller: Caller) -> Any:
        with self._lock:
            return self._get(txn_id, caller).info

    def delete(self, txn_id: str, caller: Caller) -> None:
        with self._lock:
            self._get(txn_id, caller)
            del self._open[txn_id]

    def listing(self, caller: Caller) -> list[Any]:
        """The open transactions the caller started (all of them for clusterAdmin)."""
        with self._lock:
            return [t.info for t in self._open.values()
                    if caller.is_admin or t.principal == caller.principal]  # fmt: skip

    def run(
        self,
        txn_id: str,
        requests: list[Any],
        planned: list[Any],
        context: grpc.ServicerContext,
        dry: bool = False,
    ) -> tuple[list[Any], Any]:
        """Run ``requests`` in one metadata transaction (rolled back when ``dry``): their
        responses (a StartCommit's names its commit) and the last one's answer."""
        responses: list[Any] = []
        answer: Any = None
        meta = self.edge.pfs.meta
        try:
            with meta.atomic():
                for i, item in enumerate(requests):
                    field = item.ListFields()[0][0].name if item.ListFields() else ""
                    if field in _REFUSED or field not in FIELDS:
                        raise InvalidArgument(_REFUSED.get(field, "an empty TransactionRequest"))
                    response = pb.TransactionResponse()
                    if field == "start_commit":
                        promised = planned[i].commit.id if i < len(planned) else ""
                        response.commit.id = promised or new_commit_id()
                    step = InTransaction(context, response.commit.id or None, txn_id)
                    method: Callable[..., Any] = self.edge.methods[FIELDS[field]]
                    try:
                        answer = method(getattr(item, field), step)
                    except TuskError as exc:
                        exc.message = (
                            f"request {i + 1} of {len(requests)} of transaction {txn_id}: "
                            f"{exc.message}"
                        )
                        exc.args = (exc.message,)
                        raise
                    if field == "start_commit":
                        response.commit.CopyFrom(answer)
                    responses.append(response)
                if dry:
                    raise _DryRun
        except _DryRun:
            pass
        finally:
            self.edge.auth.flush_audit()
        return responses, answer


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.txns: Transactions = edge.transactions

    def _gate(self, context: grpc.ServicerContext, rpc: str) -> Caller:
        return self.edge.gate(context, f"{SERVICE}/{rpc}")

    def StartTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.Transaction(id=self.txns.start(self._gate(context, "StartTransaction")))

    def InspectTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "InspectTransaction")
        return self.txns.inspect(request.transaction.id, caller)

    def DeleteTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.txns.delete(request.transaction.id, self._gate(context, "DeleteTransaction"))
        return empty_pb2.Empty()

    def ListTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "ListTransaction")
        return pb.TransactionInfos(transaction_info=self.txns.listing(caller))

    def FinishTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "FinishTransaction")
        return self.txns.finish(request.transaction.id, context, caller)

    def BatchTransaction(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._gate(context, "BatchTransaction")
        return self.txns.batch(list(request.requests), context)
