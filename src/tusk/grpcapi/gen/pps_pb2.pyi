import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tusk.grpcapi.gen import pfs_pb2 as _pfs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNKNOWN: _ClassVar[JobState]
    JOB_CREATED: _ClassVar[JobState]
    JOB_STARTING: _ClassVar[JobState]
    JOB_RUNNING: _ClassVar[JobState]
    JOB_FAILURE: _ClassVar[JobState]
    JOB_SUCCESS: _ClassVar[JobState]
    JOB_KILLED: _ClassVar[JobState]
    JOB_EGRESSING: _ClassVar[JobState]
    JOB_FINISHING: _ClassVar[JobState]
    JOB_UNRUNNABLE: _ClassVar[JobState]

class PipelineState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIPELINE_STATE_UNKNOWN: _ClassVar[PipelineState]
    PIPELINE_STARTING: _ClassVar[PipelineState]
    PIPELINE_RUNNING: _ClassVar[PipelineState]
    PIPELINE_RESTARTING: _ClassVar[PipelineState]
    PIPELINE_FAILURE: _ClassVar[PipelineState]
    PIPELINE_PAUSED: _ClassVar[PipelineState]
    PIPELINE_STANDBY: _ClassVar[PipelineState]
    PIPELINE_CRASHING: _ClassVar[PipelineState]

class PipelineType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIPELINT_TYPE_UNKNOWN: _ClassVar[PipelineType]
    PIPELINE_TYPE_TRANSFORM: _ClassVar[PipelineType]
    PIPELINE_TYPE_SPOUT: _ClassVar[PipelineType]
    PIPELINE_TYPE_SERVICE: _ClassVar[PipelineType]

class DatumState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[DatumState]
    FAILED: _ClassVar[DatumState]
    SUCCESS: _ClassVar[DatumState]
    SKIPPED: _ClassVar[DatumState]
    STARTING: _ClassVar[DatumState]
    RECOVERED: _ClassVar[DatumState]
JOB_STATE_UNKNOWN: JobState
JOB_CREATED: JobState
JOB_STARTING: JobState
JOB_RUNNING: JobState
JOB_FAILURE: JobState
JOB_SUCCESS: JobState
JOB_KILLED: JobState
JOB_EGRESSING: JobState
JOB_FINISHING: JobState
JOB_UNRUNNABLE: JobState
PIPELINE_STATE_UNKNOWN: PipelineState
PIPELINE_STARTING: PipelineState
PIPELINE_RUNNING: PipelineState
PIPELINE_RESTARTING: PipelineState
PIPELINE_FAILURE: PipelineState
PIPELINE_PAUSED: PipelineState
PIPELINE_STANDBY: PipelineState
PIPELINE_CRASHING: PipelineState
PIPELINT_TYPE_UNKNOWN: PipelineType
PIPELINE_TYPE_TRANSFORM: PipelineType
PIPELINE_TYPE_SPOUT: PipelineType
PIPELINE_TYPE_SERVICE: PipelineType
UNKNOWN: DatumState
FAILED: DatumState
SUCCESS: DatumState
SKIPPED: DatumState
STARTING: DatumState
RECOVERED: DatumState

class Pipeline(_message.Message):
    __slots__ = ("name", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: _pfs_pb2.Project
    def __init__(self, name: _Optional[str] = ..., project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("pipeline", "id")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    id: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class Datum(_message.Message):
    __slots__ = ("job", "id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    job: Job
    id: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job", "pipeline_version", "output_commit", "restart", "data_processed", "data_skipped", "data_total", "data_failed", "data_recovered", "state", "reason", "created", "started", "finished")
    JOB_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    DATA_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    DATA_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DATA_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FAILED_FIELD_NUMBER: _ClassVar[int]
    DATA_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    pipeline_version: int
    output_commit: _pfs_pb2.Commit
    restart: int
    data_processed: int
    data_skipped: int
    data_total: int
    data_failed: int
    data_recovered: int
    state: JobState
    reason: str
    created: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., pipeline_version: _Optional[int] = ..., output_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., restart: _Optional[int] = ..., data_processed: _Optional[int] = ..., data_skipped: _Optional[int] = ..., data_total: _Optional[int] = ..., data_failed: _Optional[int] = ..., data_recovered: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PipelineInfo(_message.Message):
    __slots__ = ("pipeline", "version", "stopped", "state", "reason", "last_job_state", "parallelism", "type", "user_spec_json", "effective_spec_json")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    version: int
    stopped: bool
    state: PipelineState
    reason: str
    last_job_state: JobState
    parallelism: int
    type: PipelineType
    user_spec_json: str
    effective_spec_json: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., version: _Optional[int] = ..., stopped: _Optional[bool] = ..., state: _Optional[_Union[PipelineState, str]] = ..., reason: _Optional[str] = ..., last_job_state: _Optional[_Union[JobState, str]] = ..., parallelism: _Optional[int] = ..., type: _Optional[_Union[PipelineType, str]] = ..., user_spec_json: _Optional[str] = ..., effective_spec_json: _Optional[str] = ...) -> None: ...

class DatumInfo(_message.Message):
    __slots__ = ("datum", "state", "data")
    DATUM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    state: DatumState
    data: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.FileInfo]
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ..., state: _Optional[_Union[DatumState, str]] = ..., data: _Optional[_Iterable[_Union[_pfs_pb2.FileInfo, _Mapping]]] = ...) -> None: ...

class CreatePipelineV2Request(_message.Message):
    __slots__ = ("create_pipeline_request_json", "dry_run", "update", "reprocess")
    CREATE_PIPELINE_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request_json: str
    dry_run: bool
    update: bool
    reprocess: bool
    def __init__(self, create_pipeline_request_json: _Optional[str] = ..., dry_run: _Optional[bool] = ..., update: _Optional[bool] = ..., reprocess: _Optional[bool] = ...) -> None: ...

class CreatePipelineV2Response(_message.Message):
    __slots__ = ("effective_create_pipeline_request_json",)
    EFFECTIVE_CREATE_PIPELINE_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    effective_create_pipeline_request_json: str
    def __init__(self, effective_create_pipeline_request_json: _Optional[str] = ...) -> None: ...

class InspectPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "details")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    details: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., details: _Optional[bool] = ...) -> None: ...

class ListPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "history", "details", "jq_filter", "commit_set", "projects")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    JQ_FILTER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    history: int
    details: bool
    jq_filter: str
    commit_set: _pfs_pb2.CommitSet
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., history: _Optional[int] = ..., details: _Optional[bool] = ..., jq_filter: _Optional[str] = ..., commit_set: _Optional[_Union[_pfs_pb2.CommitSet, _Mapping]] = ..., projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ...) -> None: ...

class DeletePipelineRequest(_message.Message):
    __slots__ = ("pipeline", "all", "force", "keep_repo", "must_exist")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    KEEP_REPO_FIELD_NUMBER: _ClassVar[int]
    MUST_EXIST_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    all: bool
    force: bool
    keep_repo: bool
    must_exist: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., all: _Optional[bool] = ..., force: _Optional[bool] = ..., keep_repo: _Optional[bool] = ..., must_exist: _Optional[bool] = ...) -> None: ...

class StartPipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class StopPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "must_exist")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    MUST_EXIST_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    must_exist: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., must_exist: _Optional[bool] = ...) -> None: ...

class InspectJobRequest(_message.Message):
    __slots__ = ("job", "wait", "details")
    JOB_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    wait: bool
    details: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., wait: _Optional[bool] = ..., details: _Optional[bool] = ...) -> None: ...

class ListJobRequest(_message.Message):
    __slots__ = ("pipeline", "input_commit", "history", "details", "jq_filter", "projects", "pagination_marker", "number", "reverse")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    JQ_FILTER_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_MARKER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    input_commit: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Commit]
    history: int
    details: bool
    jq_filter: str
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    pagination_marker: _timestamp_pb2.Timestamp
    number: int
    reverse: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., input_commit: _Optional[_Iterable[_Union[_pfs_pb2.Commit, _Mapping]]] = ..., history: _Optional[int] = ..., details: _Optional[bool] = ..., jq_filter: _Optional[str] = ..., projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ..., pagination_marker: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., number: _Optional[int] = ..., reverse: _Optional[bool] = ...) -> None: ...

class ListDatumRequest(_message.Message):
    __slots__ = ("job", "pagination_marker", "number", "reverse")
    JOB_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_MARKER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    job: Job
    pagination_marker: str
    number: int
    reverse: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., pagination_marker: _Optional[str] = ..., number: _Optional[int] = ..., reverse: _Optional[bool] = ...) -> None: ...

class InspectDatumRequest(_message.Message):
    __slots__ = ("datum",)
    DATUM_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ...) -> None: ...

class SubscribeJobRequest(_message.Message):
    __slots__ = ("pipeline", "details")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    details: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., details: _Optional[bool] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("pipeline", "job", "data_filters", "datum", "master", "follow", "tail", "use_loki_backend", "since")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FILTERS_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    USE_LOKI_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    job: Job
    data_filters: _containers.RepeatedScalarFieldContainer[str]
    datum: Datum
    master: bool
    follow: bool
    tail: int
    use_loki_backend: bool
    since: _duration_pb2.Duration
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., data_filters: _Optional[_Iterable[str]] = ..., datum: _Optional[_Union[Datum, _Mapping]] = ..., master: _Optional[bool] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., use_loki_backend: _Optional[bool] = ..., since: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LogMessage(_message.Message):
    __slots__ = ("pipeline_name", "job_id", "worker_id", "datum_id", "master", "user", "ts", "message", "project_name")
    PIPELINE_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DATUM_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    pipeline_name: str
    job_id: str
    worker_id: str
    datum_id: str
    master: bool
    user: bool
    ts: _timestamp_pb2.Timestamp
    message: str
    project_name: str
    def __init__(self, pipeline_name: _Optional[str] = ..., job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., datum_id: _Optional[str] = ..., master: _Optional[bool] = ..., user: _Optional[bool] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., project_name: _Optional[str] = ...) -> None: ...
