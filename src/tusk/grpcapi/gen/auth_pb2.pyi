import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_TYPE_UNKNOWN: _ClassVar[ResourceType]
    CLUSTER: _ClassVar[ResourceType]
    REPO: _ClassVar[ResourceType]
    SPEC_REPO: _ClassVar[ResourceType]
    PROJECT: _ClassVar[ResourceType]
    JOB: _ClassVar[ResourceType]

class Permission(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMISSION_UNKNOWN: _ClassVar[Permission]
    CLUSTER_MODIFY_BINDINGS: _ClassVar[Permission]
    CLUSTER_GET_BINDINGS: _ClassVar[Permission]
    CLUSTER_AUTH_ACTIVATE: _ClassVar[Permission]
    CLUSTER_AUTH_DEACTIVATE: _ClassVar[Permission]
    CLUSTER_AUTH_GET_ROBOT_TOKEN: _ClassVar[Permission]
    CLUSTER_AUTH_REVOKE_USER_TOKENS: _ClassVar[Permission]
    REPO_READ: _ClassVar[Permission]
    REPO_WRITE: _ClassVar[Permission]
    REPO_MODIFY_BINDINGS: _ClassVar[Permission]
    REPO_DELETE: _ClassVar[Permission]
    REPO_INSPECT_COMMIT: _ClassVar[Permission]
    REPO_LIST_COMMIT: _ClassVar[Permission]
    REPO_DELETE_COMMIT: _ClassVar[Permission]
    REPO_CREATE_BRANCH: _ClassVar[Permission]
    REPO_LIST_BRANCH: _ClassVar[Permission]
    REPO_DELETE_BRANCH: _ClassVar[Permission]
    REPO_INSPECT_FILE: _ClassVar[Permission]
    REPO_LIST_FILE: _ClassVar[Permission]
    REPO_ADD_PIPELINE_READER: _ClassVar[Permission]
    REPO_REMOVE_PIPELINE_READER: _ClassVar[Permission]
    REPO_ADD_PIPELINE_WRITER: _ClassVar[Permission]
    PIPELINE_LIST_JOB: _ClassVar[Permission]
    PROJECT_CREATE: _ClassVar[Permission]
    PROJECT_DELETE: _ClassVar[Permission]
    PROJECT_LIST_REPO: _ClassVar[Permission]
    PROJECT_CREATE_REPO: _ClassVar[Permission]
    PROJECT_MODIFY_BINDINGS: _ClassVar[Permission]
RESOURCE_TYPE_UNKNOWN: ResourceType
CLUSTER: ResourceType
REPO: ResourceType
SPEC_REPO: ResourceType
PROJECT: ResourceType
JOB: ResourceType
PERMISSION_UNKNOWN: Permission
CLUSTER_MODIFY_BINDINGS: Permission
CLUSTER_GET_BINDINGS: Permission
CLUSTER_AUTH_ACTIVATE: Permission
CLUSTER_AUTH_DEACTIVATE: Permission
CLUSTER_AUTH_GET_ROBOT_TOKEN: Permission
CLUSTER_AUTH_REVOKE_USER_TOKENS: Permission
REPO_READ: Permission
REPO_WRITE: Permission
REPO_MODIFY_BINDINGS: Permission
REPO_DELETE: Permission
REPO_INSPECT_COMMIT: Permission
REPO_LIST_COMMIT: Permission
REPO_DELETE_COMMIT: Permission
REPO_CREATE_BRANCH: Permission
REPO_LIST_BRANCH: Permission
REPO_DELETE_BRANCH: Permission
REPO_INSPECT_FILE: Permission
REPO_LIST_FILE: Permission
REPO_ADD_PIPELINE_READER: Permission
REPO_REMOVE_PIPELINE_READER: Permission
REPO_ADD_PIPELINE_WRITER: Permission
PIPELINE_LIST_JOB: Permission
PROJECT_CREATE: Permission
PROJECT_DELETE: Permission
PROJECT_LIST_REPO: Permission
PROJECT_CREATE_REPO: Permission
PROJECT_MODIFY_BINDINGS: Permission

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("username", "expiration")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    username: str
    expiration: _timestamp_pb2.Timestamp
    def __init__(self, username: _Optional[str] = ..., expiration: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("root_token",)
    ROOT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    root_token: str
    def __init__(self, root_token: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("pach_token",)
    PACH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pach_token: str
    def __init__(self, pach_token: _Optional[str] = ...) -> None: ...

class DeactivateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeactivateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRobotTokenRequest(_message.Message):
    __slots__ = ("robot", "ttl")
    ROBOT_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    robot: str
    ttl: int
    def __init__(self, robot: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class GetRobotTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class RevokeAuthTokenRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class RevokeAuthTokenResponse(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("type", "name")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    type: ResourceType
    name: str
    def __init__(self, type: _Optional[_Union[ResourceType, str]] = ..., name: _Optional[str] = ...) -> None: ...

class Roles(_message.Message):
    __slots__ = ("roles",)
    class RolesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.ScalarMap[str, bool]
    def __init__(self, roles: _Optional[_Mapping[str, bool]] = ...) -> None: ...

class RoleBinding(_message.Message):
    __slots__ = ("entries",)
    class EntriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Roles
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Roles, _Mapping]] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.MessageMap[str, Roles]
    def __init__(self, entries: _Optional[_Mapping[str, Roles]] = ...) -> None: ...

class GetRoleBindingRequest(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class GetRoleBindingResponse(_message.Message):
    __slots__ = ("binding",)
    BINDING_FIELD_NUMBER: _ClassVar[int]
    binding: RoleBinding
    def __init__(self, binding: _Optional[_Union[RoleBinding, _Mapping]] = ...) -> None: ...

class ModifyRoleBindingRequest(_message.Message):
    __slots__ = ("resource", "principal", "roles")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    principal: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., principal: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class ModifyRoleBindingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("resource", "permissions")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    permissions: _containers.RepeatedScalarFieldContainer[Permission]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., permissions: _Optional[_Iterable[_Union[Permission, str]]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("authorized", "satisfied", "missing", "principal")
    AUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    SATISFIED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    authorized: bool
    satisfied: _containers.RepeatedScalarFieldContainer[Permission]
    missing: _containers.RepeatedScalarFieldContainer[Permission]
    principal: str
    def __init__(self, authorized: _Optional[bool] = ..., satisfied: _Optional[_Iterable[_Union[Permission, str]]] = ..., missing: _Optional[_Iterable[_Union[Permission, str]]] = ..., principal: _Optional[str] = ...) -> None: ...

class GetPermissionsRequest(_message.Message):
    __slots__ = ("resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class GetPermissionsResponse(_message.Message):
    __slots__ = ("permissions", "roles")
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    permissions: _containers.RepeatedScalarFieldContainer[Permission]
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, permissions: _Optional[_Iterable[_Union[Permission, str]]] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...
