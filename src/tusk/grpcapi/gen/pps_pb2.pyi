import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
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

class TolerationOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMPTY: _ClassVar[TolerationOperator]
    EXISTS: _ClassVar[TolerationOperator]
    EQUAL: _ClassVar[TolerationOperator]

class TaintEffect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALL_EFFECTS: _ClassVar[TaintEffect]
    NO_SCHEDULE: _ClassVar[TaintEffect]
    PREFER_NO_SCHEDULE: _ClassVar[TaintEffect]
    NO_EXECUTE: _ClassVar[TaintEffect]
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
EMPTY: TolerationOperator
EXISTS: TolerationOperator
EQUAL: TolerationOperator
ALL_EFFECTS: TaintEffect
NO_SCHEDULE: TaintEffect
PREFER_NO_SCHEDULE: TaintEffect
NO_EXECUTE: TaintEffect

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
    __slots__ = ("pipeline", "version", "stopped", "state", "reason", "last_job_state", "parallelism", "type", "details", "user_spec_json", "effective_spec_json")
    class Details(_message.Message):
        __slots__ = ("transform", "parallelism_spec", "egress", "created_at", "output_branch", "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "description", "salt", "service", "spout", "datum_timeout", "job_timeout", "datum_tries", "scheduling_spec", "pod_spec", "pod_patch", "s3_out", "metadata", "reprocess_spec", "autoscaling", "sidecar_resource_requests", "updated_at")
        TRANSFORM_FIELD_NUMBER: _ClassVar[int]
        PARALLELISM_SPEC_FIELD_NUMBER: _ClassVar[int]
        EGRESS_FIELD_NUMBER: _ClassVar[int]
        CREATED_AT_FIELD_NUMBER: _ClassVar[int]
        OUTPUT_BRANCH_FIELD_NUMBER: _ClassVar[int]
        RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
        RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
        SIDECAR_RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
        INPUT_FIELD_NUMBER: _ClassVar[int]
        DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
        SALT_FIELD_NUMBER: _ClassVar[int]
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        SPOUT_FIELD_NUMBER: _ClassVar[int]
        DATUM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        DATUM_TRIES_FIELD_NUMBER: _ClassVar[int]
        SCHEDULING_SPEC_FIELD_NUMBER: _ClassVar[int]
        POD_SPEC_FIELD_NUMBER: _ClassVar[int]
        POD_PATCH_FIELD_NUMBER: _ClassVar[int]
        S3_OUT_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        REPROCESS_SPEC_FIELD_NUMBER: _ClassVar[int]
        AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
        SIDECAR_RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
        UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
        transform: Transform
        parallelism_spec: ParallelismSpec
        egress: Egress
        created_at: _timestamp_pb2.Timestamp
        output_branch: str
        resource_requests: ResourceSpec
        resource_limits: ResourceSpec
        sidecar_resource_limits: ResourceSpec
        input: Input
        description: str
        salt: str
        service: Service
        spout: Spout
        datum_timeout: _duration_pb2.Duration
        job_timeout: _duration_pb2.Duration
        datum_tries: int
        scheduling_spec: SchedulingSpec
        pod_spec: str
        pod_patch: str
        s3_out: bool
        metadata: Metadata
        reprocess_spec: str
        autoscaling: bool
        sidecar_resource_requests: ResourceSpec
        updated_at: _timestamp_pb2.Timestamp
        def __init__(self, transform: _Optional[_Union[Transform, _Mapping]] = ..., parallelism_spec: _Optional[_Union[ParallelismSpec, _Mapping]] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_branch: _Optional[str] = ..., resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., sidecar_resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., description: _Optional[str] = ..., salt: _Optional[str] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., spout: _Optional[_Union[Spout, _Mapping]] = ..., datum_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., datum_tries: _Optional[int] = ..., scheduling_spec: _Optional[_Union[SchedulingSpec, _Mapping]] = ..., pod_spec: _Optional[str] = ..., pod_patch: _Optional[str] = ..., s3_out: _Optional[bool] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., reprocess_spec: _Optional[str] = ..., autoscaling: _Optional[bool] = ..., sidecar_resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
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
    details: PipelineInfo.Details
    user_spec_json: str
    effective_spec_json: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., version: _Optional[int] = ..., stopped: _Optional[bool] = ..., state: _Optional[_Union[PipelineState, str]] = ..., reason: _Optional[str] = ..., last_job_state: _Optional[_Union[JobState, str]] = ..., parallelism: _Optional[int] = ..., type: _Optional[_Union[PipelineType, str]] = ..., details: _Optional[_Union[PipelineInfo.Details, _Mapping]] = ..., user_spec_json: _Optional[str] = ..., effective_spec_json: _Optional[str] = ...) -> None: ...

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

class Transform(_message.Message):
    __slots__ = ("image", "cmd", "err_cmd", "env", "secrets", "image_pull_secrets", "stdin", "err_stdin", "accept_return_code", "debug", "user", "working_dir", "dockerfile", "memory_volume", "datum_batching")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ERR_CMD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    ERR_STDIN_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_RETURN_CODE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DATUM_BATCHING_FIELD_NUMBER: _ClassVar[int]
    image: str
    cmd: _containers.RepeatedScalarFieldContainer[str]
    err_cmd: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretMount]
    image_pull_secrets: _containers.RepeatedScalarFieldContainer[str]
    stdin: _containers.RepeatedScalarFieldContainer[str]
    err_stdin: _containers.RepeatedScalarFieldContainer[str]
    accept_return_code: _containers.RepeatedScalarFieldContainer[int]
    debug: bool
    user: str
    working_dir: str
    dockerfile: str
    memory_volume: bool
    datum_batching: bool
    def __init__(self, image: _Optional[str] = ..., cmd: _Optional[_Iterable[str]] = ..., err_cmd: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Iterable[_Union[SecretMount, _Mapping]]] = ..., image_pull_secrets: _Optional[_Iterable[str]] = ..., stdin: _Optional[_Iterable[str]] = ..., err_stdin: _Optional[_Iterable[str]] = ..., accept_return_code: _Optional[_Iterable[int]] = ..., debug: _Optional[bool] = ..., user: _Optional[str] = ..., working_dir: _Optional[str] = ..., dockerfile: _Optional[str] = ..., memory_volume: _Optional[bool] = ..., datum_batching: _Optional[bool] = ...) -> None: ...

class SecretMount(_message.Message):
    __slots__ = ("name", "key", "mount_path", "env_var")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_VAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    mount_path: str
    env_var: str
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., mount_path: _Optional[str] = ..., env_var: _Optional[str] = ...) -> None: ...

class PFSInput(_message.Message):
    __slots__ = ("name", "repo", "branch", "commit", "glob", "join_on", "outer_join", "group_by", "lazy", "empty_files", "s3", "trigger", "repo_type", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    GLOB_FIELD_NUMBER: _ClassVar[int]
    JOIN_ON_FIELD_NUMBER: _ClassVar[int]
    OUTER_JOIN_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FILES_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REPO_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    repo: str
    branch: str
    commit: str
    glob: str
    join_on: str
    outer_join: bool
    group_by: str
    lazy: bool
    empty_files: bool
    s3: bool
    trigger: _pfs_pb2.Trigger
    repo_type: str
    project: str
    def __init__(self, name: _Optional[str] = ..., repo: _Optional[str] = ..., branch: _Optional[str] = ..., commit: _Optional[str] = ..., glob: _Optional[str] = ..., join_on: _Optional[str] = ..., outer_join: _Optional[bool] = ..., group_by: _Optional[str] = ..., lazy: _Optional[bool] = ..., empty_files: _Optional[bool] = ..., s3: _Optional[bool] = ..., trigger: _Optional[_Union[_pfs_pb2.Trigger, _Mapping]] = ..., repo_type: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class CronInput(_message.Message):
    __slots__ = ("name", "repo", "commit", "spec", "overwrite", "start", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    repo: str
    commit: str
    spec: str
    overwrite: bool
    start: _timestamp_pb2.Timestamp
    project: str
    def __init__(self, name: _Optional[str] = ..., repo: _Optional[str] = ..., commit: _Optional[str] = ..., spec: _Optional[str] = ..., overwrite: _Optional[bool] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., project: _Optional[str] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("pfs", "join", "group", "cross", "union", "cron")
    PFS_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CROSS_FIELD_NUMBER: _ClassVar[int]
    UNION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    pfs: PFSInput
    join: _containers.RepeatedCompositeFieldContainer[Input]
    group: _containers.RepeatedCompositeFieldContainer[Input]
    cross: _containers.RepeatedCompositeFieldContainer[Input]
    union: _containers.RepeatedCompositeFieldContainer[Input]
    cron: CronInput
    def __init__(self, pfs: _Optional[_Union[PFSInput, _Mapping]] = ..., join: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., group: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., cross: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., union: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., cron: _Optional[_Union[CronInput, _Mapping]] = ...) -> None: ...

class ParallelismSpec(_message.Message):
    __slots__ = ("constant",)
    CONSTANT_FIELD_NUMBER: _ClassVar[int]
    constant: int
    def __init__(self, constant: _Optional[int] = ...) -> None: ...

class Egress(_message.Message):
    __slots__ = ("URL", "object_storage", "sql_database")
    URL_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORAGE_FIELD_NUMBER: _ClassVar[int]
    SQL_DATABASE_FIELD_NUMBER: _ClassVar[int]
    URL: str
    object_storage: _pfs_pb2.ObjectStorageEgress
    sql_database: _pfs_pb2.SQLDatabaseEgress
    def __init__(self, URL: _Optional[str] = ..., object_storage: _Optional[_Union[_pfs_pb2.ObjectStorageEgress, _Mapping]] = ..., sql_database: _Optional[_Union[_pfs_pb2.SQLDatabaseEgress, _Mapping]] = ...) -> None: ...

class GPUSpec(_message.Message):
    __slots__ = ("type", "number")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    type: str
    number: int
    def __init__(self, type: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class ResourceSpec(_message.Message):
    __slots__ = ("cpu", "memory", "gpu", "disk")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory: str
    gpu: GPUSpec
    disk: str
    def __init__(self, cpu: _Optional[float] = ..., memory: _Optional[str] = ..., gpu: _Optional[_Union[GPUSpec, _Mapping]] = ..., disk: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("internal_port", "external_port", "ip", "type")
    INTERNAL_PORT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_PORT_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    internal_port: int
    external_port: int
    ip: str
    type: str
    def __init__(self, internal_port: _Optional[int] = ..., external_port: _Optional[int] = ..., ip: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Spout(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: Service
    def __init__(self, service: _Optional[_Union[Service, _Mapping]] = ...) -> None: ...

class SchedulingSpec(_message.Message):
    __slots__ = ("node_selector", "priority_class_name")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    node_selector: _containers.ScalarMap[str, str]
    priority_class_name: str
    def __init__(self, node_selector: _Optional[_Mapping[str, str]] = ..., priority_class_name: _Optional[str] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("annotations", "labels")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    annotations: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, annotations: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TFJob(_message.Message):
    __slots__ = ("tf_job",)
    TF_JOB_FIELD_NUMBER: _ClassVar[int]
    tf_job: str
    def __init__(self, tf_job: _Optional[str] = ...) -> None: ...

class DatumSetSpec(_message.Message):
    __slots__ = ("number", "size_bytes", "per_worker")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    number: int
    size_bytes: int
    per_worker: int
    def __init__(self, number: _Optional[int] = ..., size_bytes: _Optional[int] = ..., per_worker: _Optional[int] = ...) -> None: ...

class Toleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect", "toleration_seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    TOLERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: TolerationOperator
    value: str
    effect: TaintEffect
    toleration_seconds: _wrappers_pb2.Int64Value
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[_Union[TolerationOperator, str]] = ..., value: _Optional[str] = ..., effect: _Optional[_Union[TaintEffect, str]] = ..., toleration_seconds: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class Determined(_message.Message):
    __slots__ = ("workspaces",)
    WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    workspaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workspaces: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePipelineRequest(_message.Message):
    __slots__ = ("pipeline", "tf_job", "transform", "parallelism_spec", "egress", "update", "output_branch", "s3_out", "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "description", "reprocess", "service", "spout", "datum_set_spec", "datum_timeout", "job_timeout", "salt", "datum_tries", "scheduling_spec", "pod_spec", "pod_patch", "spec_commit", "metadata", "reprocess_spec", "autoscaling", "tolerations", "sidecar_resource_requests", "dry_run", "determined", "maximum_expected_uptime")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    TF_JOB_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_SPEC_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    S3_OUT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPOUT_FIELD_NUMBER: _ClassVar[int]
    DATUM_SET_SPEC_FIELD_NUMBER: _ClassVar[int]
    DATUM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    DATUM_TRIES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_PATCH_FIELD_NUMBER: _ClassVar[int]
    SPEC_COMMIT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_SPEC_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    DETERMINED_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EXPECTED_UPTIME_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    tf_job: TFJob
    transform: Transform
    parallelism_spec: ParallelismSpec
    egress: Egress
    update: bool
    output_branch: str
    s3_out: bool
    resource_requests: ResourceSpec
    resource_limits: ResourceSpec
    sidecar_resource_limits: ResourceSpec
    input: Input
    description: str
    reprocess: bool
    service: Service
    spout: Spout
    datum_set_spec: DatumSetSpec
    datum_timeout: _duration_pb2.Duration
    job_timeout: _duration_pb2.Duration
    salt: str
    datum_tries: int
    scheduling_spec: SchedulingSpec
    pod_spec: str
    pod_patch: str
    spec_commit: _pfs_pb2.Commit
    metadata: Metadata
    reprocess_spec: str
    autoscaling: bool
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    sidecar_resource_requests: ResourceSpec
    dry_run: bool
    determined: Determined
    maximum_expected_uptime: _duration_pb2.Duration
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., tf_job: _Optional[_Union[TFJob, _Mapping]] = ..., transform: _Optional[_Union[Transform, _Mapping]] = ..., parallelism_spec: _Optional[_Union[ParallelismSpec, _Mapping]] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ..., update: _Optional[bool] = ..., output_branch: _Optional[str] = ..., s3_out: _Optional[bool] = ..., resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., sidecar_resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., description: _Optional[str] = ..., reprocess: _Optional[bool] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., spout: _Optional[_Union[Spout, _Mapping]] = ..., datum_set_spec: _Optional[_Union[DatumSetSpec, _Mapping]] = ..., datum_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., salt: _Optional[str] = ..., datum_tries: _Optional[int] = ..., scheduling_spec: _Optional[_Union[SchedulingSpec, _Mapping]] = ..., pod_spec: _Optional[str] = ..., pod_patch: _Optional[str] = ..., spec_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., reprocess_spec: _Optional[str] = ..., autoscaling: _Optional[bool] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., sidecar_resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., dry_run: _Optional[bool] = ..., determined: _Optional[_Union[Determined, _Mapping]] = ..., maximum_expected_uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StopJobRequest(_message.Message):
    __slots__ = ("job", "reason")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job: Job
    reason: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class UpdateJobStateRequest(_message.Message):
    __slots__ = ("job", "state", "reason")
    JOB_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job: Job
    state: JobState
    reason: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class RestartDatumRequest(_message.Message):
    __slots__ = ("job", "data_filters")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FILTERS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    data_filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., data_filters: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePipelineTransaction(_message.Message):
    __slots__ = ("create_pipeline_request", "user_json", "effective_json", "created_by")
    CREATE_PIPELINE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    USER_JSON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request: CreatePipelineRequest
    user_json: str
    effective_json: str
    created_by: str
    def __init__(self, create_pipeline_request: _Optional[_Union[CreatePipelineRequest, _Mapping]] = ..., user_json: _Optional[str] = ..., effective_json: _Optional[str] = ..., created_by: _Optional[str] = ...) -> None: ...
