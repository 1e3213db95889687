import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tusk.grpcapi.gen import pfs_pb2 as _pfs_pb2
from tusk.grpcapi.gen import pps_pb2 as _pps_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionRequest(_message.Message):
    __slots__ = ("create_repo", "delete_repo", "start_commit", "finish_commit", "squash_commit_set", "create_branch", "delete_branch", "update_job_state", "stop_job", "create_pipeline_v2")
    CREATE_REPO_FIELD_NUMBER: _ClassVar[int]
    DELETE_REPO_FIELD_NUMBER: _ClassVar[int]
    START_COMMIT_FIELD_NUMBER: _ClassVar[int]
    FINISH_COMMIT_FIELD_NUMBER: _ClassVar[int]
    SQUASH_COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    CREATE_BRANCH_FIELD_NUMBER: _ClassVar[int]
    DELETE_BRANCH_FIELD_NUMBER: _ClassVar[int]
    UPDATE_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    STOP_JOB_FIELD_NUMBER: _ClassVar[int]
    CREATE_PIPELINE_V2_FIELD_NUMBER: _ClassVar[int]
    create_repo: _pfs_pb2.CreateRepoRequest
    delete_repo: _pfs_pb2.DeleteRepoRequest
    start_commit: _pfs_pb2.StartCommitRequest
    finish_commit: _pfs_pb2.FinishCommitRequest
    squash_commit_set: _pfs_pb2.SquashCommitSetRequest
    create_branch: _pfs_pb2.CreateBranchRequest
    delete_branch: _pfs_pb2.DeleteBranchRequest
    update_job_state: _pps_pb2.UpdateJobStateRequest
    stop_job: _pps_pb2.StopJobRequest
    create_pipeline_v2: _pps_pb2.CreatePipelineTransaction
    def __init__(self, create_repo: _Optional[_Union[_pfs_pb2.CreateRepoRequest, _Mapping]] = ..., delete_repo: _Optional[_Union[_pfs_pb2.DeleteRepoRequest, _Mapping]] = ..., start_commit: _Optional[_Union[_pfs_pb2.StartCommitRequest, _Mapping]] = ..., finish_commit: _Optional[_Union[_pfs_pb2.FinishCommitRequest, _Mapping]] = ..., squash_commit_set: _Optional[_Union[_pfs_pb2.SquashCommitSetRequest, _Mapping]] = ..., create_branch: _Optional[_Union[_pfs_pb2.CreateBranchRequest, _Mapping]] = ..., delete_branch: _Optional[_Union[_pfs_pb2.DeleteBranchRequest, _Mapping]] = ..., update_job_state: _Optional[_Union[_pps_pb2.UpdateJobStateRequest, _Mapping]] = ..., stop_job: _Optional[_Union[_pps_pb2.StopJobRequest, _Mapping]] = ..., create_pipeline_v2: _Optional[_Union[_pps_pb2.CreatePipelineTransaction, _Mapping]] = ...) -> None: ...

class TransactionResponse(_message.Message):
    __slots__ = ("commit",)
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    commit: _pfs_pb2.Commit
    def __init__(self, commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TransactionInfo(_message.Message):
    __slots__ = ("transaction", "requests", "responses", "started", "version")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    requests: _containers.RepeatedCompositeFieldContainer[TransactionRequest]
    responses: _containers.RepeatedCompositeFieldContainer[TransactionResponse]
    started: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., requests: _Optional[_Iterable[_Union[TransactionRequest, _Mapping]]] = ..., responses: _Optional[_Iterable[_Union[TransactionResponse, _Mapping]]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class TransactionInfos(_message.Message):
    __slots__ = ("transaction_info",)
    TRANSACTION_INFO_FIELD_NUMBER: _ClassVar[int]
    transaction_info: _containers.RepeatedCompositeFieldContainer[TransactionInfo]
    def __init__(self, transaction_info: _Optional[_Iterable[_Union[TransactionInfo, _Mapping]]] = ...) -> None: ...

class BatchTransactionRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TransactionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[TransactionRequest, _Mapping]]] = ...) -> None: ...

class StartTransactionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InspectTransactionRequest(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class DeleteTransactionRequest(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class ListTransactionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FinishTransactionRequest(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...
