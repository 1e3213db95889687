from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Version(_message.Message):
    __slots__ = ("major", "minor", "micro", "additional", "git_commit", "git_tree_modified", "build_date", "go_version", "platform")
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    MICRO_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_FIELD_NUMBER: _ClassVar[int]
    GIT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    GIT_TREE_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    BUILD_DATE_FIELD_NUMBER: _ClassVar[int]
    GO_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    major: int
    minor: int
    micro: int
    additional: str
    git_commit: str
    git_tree_modified: str
    build_date: str
    go_version: str
    platform: str
    def __init__(self, major: _Optional[int] = ..., minor: _Optional[int] = ..., micro: _Optional[int] = ..., additional: _Optional[str] = ..., git_commit: _Optional[str] = ..., git_tree_modified: _Optional[str] = ..., build_date: _Optional[str] = ..., go_version: _Optional[str] = ..., platform: _Optional[str] = ...) -> None: ...
