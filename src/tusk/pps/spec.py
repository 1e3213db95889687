"""Pipeline specs: Pachyderm's pipeline specification, read from JSON or YAML and validated.

Users bring the specs they wrote for Pachyderm 2.x, so keys are accepted in snake_case
(``parallelism_spec``) or camelCase (``parallelismSpec``), and ``egress.URL`` as Pachyderm
spells it. The models keep snake_case attribute names; :meth:`PipelineSpec.canonical` gives a
snake_case dict with every default filled in, the form that is stored and hashed.

Nothing is silently ignored. An unknown key anywhere is an error that names its path
(``input.cross[1].pfs.glb: unknown field``). Pachyderm fields that Tusk does not implement are
listed in :data:`UNSUPPORTED` with the reason, and refused with that reason. One exception:
``project: {name: P}`` on the pipeline, a pfs or a cron input names a project (``tusk create
project``): the pipeline and its output repo are stored as ``P/name``, and an input without a
project reads the pipeline's project, as in Pachyderm; ``{name: default}`` is the same as none.
Fields that only mean something on Kubernetes (``scheduling_spec``, ``pod_patch``...) are
recorded; resource requests and limits are honoured on this machine.

Every error is one :class:`~tusk.errors.InvalidSpec` line: ``invalid pipeline spec: <path>:
<what is wrong and what to do>``, several problems joined with ``"; "``.

Choices where Pachyderm leaves room:

- Durations (``datum_timeout``, ``job_timeout``, cron ``@every``) are Go duration strings
  (``"30s"``, ``"1h30m"``, ``"500ms"``) or numbers of seconds; stored as float seconds, > 0.
- ``join_on``/``group_by``/``outer_join`` outside a ``join``/``group`` would have no effect,
  so they are errors rather than silently ignored.
- ``lazy`` and ``empty_files`` together are refused, as Pachyderm does.
- Cron specs are 5-field cron expressions, descriptors (``@hourly``, ``@daily``...) or
  ``@every <duration>``, as Pachyderm (robfig/cron ``ParseStandard``) accepts.
- A cron input's repo defaults to ``<pipeline>_<cron name>`` (Pachyderm's default).
- Input names (pfs ``name``, default the repo; cron ``name``) must be unique across the
  input tree because each becomes ``/pfs/<name>``, except between the branches of a
  ``union`` (one branch is mounted per datum, as in Pachyderm); ``out`` is reserved.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import blake3
import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tusk.cronspec import check_cron, go_duration
from tusk.errors import InvalidSpec
from tusk.ids import DEFAULT_PROJECT, qualify
from tusk.pps import globs
from tusk.units import parse_size

DOCS = "docs/pipeline-spec.md"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_COMMIT_ID = re.compile(r"^[0-9a-f]{32}$")
_NAME_RULE = "use 1-63 letters, digits, '_' or '-'"

_K8S = "not supported by Tusk (runs locally, no Kubernetes); remove it"
_V1 = "a Pachyderm 1.x field with no effect in Pachyderm 2; remove it"
_FLAG = "a pachctl request flag, not part of a spec; remove it (tusk apply creates or updates)"

#: Pachyderm pipeline-spec fields Tusk refuses, by section, with the reason given to the user.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "spec": {
        "tf_job": "not supported by Tusk (TFJob needs Kubeflow on Kubernetes); remove it",
        "spec_commit": "set by Pachyderm itself; Tusk versions specs on its own: remove it",
        "datum_set_spec": "not supported by Tusk (it sizes datum sets itself); remove it",
        "determined": "not supported by Tusk (no Determined integration); remove it",
        "maximum_expected_uptime": (
            "not supported by Tusk (a service runs until it is stopped); remove it"
        ),
        "cache_size": _V1,
        "enable_stats": _V1,
        "max_queue_size": _V1,
        "chunk_spec": _V1,
        "standby": _V1,
        "hashtree_spec": _V1,
        "update": _FLAG,
        "reprocess": _FLAG,
        "dry_run": _FLAG,
    },
    "transform": {
        "dockerfile": _V1,
        "build": _V1,
        "debug": "not supported by Tusk (logging is not set per pipeline); remove it",
    },
    "input": {"git": "not supported by Tusk (git inputs were removed in Pachyderm 2); remove it"},
    "pfs": {
        "repo_type": "set by Pachyderm itself; remove it",
        "reference": "set by Pachyderm itself; remove it",
    },
    "cron": {
        "commit": "set by Pachyderm itself for the current tick; remove it",
    },
    "trigger": {
        "rate_limit_spec": (
            "not supported by Tusk; use cron_spec, which also fires on a new commit once a "
            "tick has passed since the trigger last fired"
        ),
    },
    "parallelism_spec": {
        "coefficient": (
            "not supported by Tusk (no cluster nodes to multiply); use constant: <workers>"
        ),
    },
}

# Which raw keys lead to which section, and whether the value is a list of that section.
_CHILDREN: dict[str, dict[str, tuple[str, bool]]] = {
    "spec": {
        "pipeline": ("pipeline", False),
        "transform": ("transform", False),
        "input": ("input", False),
        "parallelism_spec": ("parallelism_spec", False),
        "egress": ("egress", False),
    },
    "pfs": {"trigger": ("trigger", False)},
    "input": {
        "pfs": ("pfs", False),
        "cron": ("cron", False),
        "cross": ("input", True),
        "union": ("input", True),
        "join": ("input", True),
        "group": ("input", True),
    },
}

_INPUT_KINDS = ("pfs", "cross", "union", "join", "group", "cron")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake(key: str) -> str:
    """``parallelismSpec`` -> ``parallelism_spec``; ``s3Out`` -> ``s3_out``; ``URL`` -> ``url``."""
    return _CAMEL_HUMP.sub(r"_\1", key).lower()


def _error(message: str, sub: str = "") -> PydanticCustomError:
    """A validation error with Tusk's own message; ``sub`` is a path below the error's loc."""
    # The message goes through the context so braces in it are never read as placeholders.
    return PydanticCustomError("tusk", "{message}", {"message": message, "sub": sub})


def parse_duration(value: Any) -> float:
    """A Go duration string ("1h30m", "500ms") or a number of seconds -> seconds (> 0).

    Raises ValueError with a one-line message saying what is accepted.
    """
    hint = "use a duration like '30s', '5m', '1h30m' or a number of seconds"
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = go_duration(text, hint)
    else:
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration; {hint}")
    return seconds


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise _error(f"invalid {what} {value!r}; {_NAME_RULE}")
    return value


def _check_repo_ref(value: str) -> str:
    """``repo`` or ``project/repo`` (the stored name of a repo of another project)."""
    project, _, bare = value.rpartition("/")
    if not _NAME.match(bare) or (("/" in value) and not _NAME.match(project)):
        raise _error(
            f"invalid repo name {value!r}; {_NAME_RULE}, after 'project/' for a repo of "
            "another project"
        )
    return value


def _check_branch(value: str) -> str:
    _check_name(value, "branch name")
    if _COMMIT_ID.match(value):
        raise _error(f"branch name {value!r} looks like a commit id; pick another name")
    return value


def _check_input_name(value: str) -> str:
    if value in ("", ".", "..") or "/" in value or "\0" in value or "\n" in value:
        raise _error(
            f"invalid input name {value!r}; it becomes /pfs/<name>, so use one path segment "
            "without '/'"
        )
    if value == "out":
        raise _error("input name 'out' is reserved for /pfs/out, the output; set another name")
    return value


class _SpecModel(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        loc_by_alias=False,
    )


_QUANTITY = re.compile(
    r"^([+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(KiB|MiB|GiB|TiB|Ki|Mi|Gi|Ti|Pi|Ei|KB|kB|MB|GB|TB|k|M|G|T|P|E|m)?$"
)
_QUANTITY_FACTORS = {
    None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
    # Not Kubernetes quantities, but Pachyderm's own examples write them (e.g. "256MB").
    "KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
    "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40,
}  # fmt: skip


def parse_quantity(value: Any, what: str = "quantity") -> float:
    """A Kubernetes quantity (``1Gi``, ``500M``, ``500m``, ``2.5``, ``1e3``) -> a number.

    Raises ValueError with a one-line message saying what is accepted.
    """
    hint = f"use a {what} like '1Gi', '512Mi', '500M', '500m' or a plain number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a {what}; {hint}")
    m = _QUANTITY.match(str(value).strip())
    if m is None:
        raise ValueError(f"{value!r} is not a {what}; {hint}")
    number = float(m.group(1)) * _QUANTITY_FACTORS[m.group(2)]
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite {what}; {hint}")
    return number


class Gpu(_SpecModel):
    type: str = ""
    number: int = Field(default=0, ge=0)


class Resources(_SpecModel):
    """Pachyderm's ResourceSpec: ``cpu`` (cores), ``memory`` and ``disk`` (quantities, kept as
    written), ``gpu`` (type and number). The ``*_cores``/``*_bytes`` properties parse them."""

    cpu: float | None = None
    memory: str | None = None
    disk: str | None = None
    gpu: Gpu | None = None

    @field_validator("cpu", mode="before")
    @classmethod
    def _check_cpu(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            cores = parse_quantity(value, "CPU quantity")
        except ValueError as exc:
            raise _error(str(exc)) from None
        if cores <= 0:
            raise _error(f"{value!r}: CPU must be positive, e.g. 0.5, '500m' or 2")
        return cores

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _check_bytes(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            size = parse_quantity(value, "size")
        except ValueError as exc:
            raise _error(str(exc)) from None
        if size < 1:
            raise _error(f"{value!r}: a size must be at least one byte, e.g. '512Mi' or '1Gi'")
        return str(value).strip()

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else int(parse_quantity(self.memory))

    @property
    def disk_bytes(self) -> int | None:
        return None if self.disk is None else int(parse_quantity(self.disk))


class SecretMount(_SpecModel):
    """``transform.secrets[]``: a stored secret's key as an environment variable
    (``env_var`` + ``key``) or its keys as files under ``mount_path``."""

    name: str
    key: str = ""
    env_var: str = ""
    mount_path: str = ""

    @model_validator(mode="after")
    def _one_use(self) -> SecretMount:
        if not _NAME.match(self.name) and not re.match(
            r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", self.name
        ):
            raise _error(
                f"invalid secret name {self.name!r}; use the name given to tusk create secret",
                sub="name",
            )
        if self.env_var and self.mount_path:
            raise _error("set env_var (with key) or mount_path, not both", sub="env_var")
        if not self.env_var and not self.mount_path:
            raise _error(
                "set env_var (with key) to pass one key, or mount_path for files", sub="env_var"
            )
        if self.env_var and not self.key:
            raise _error("env_var needs the key whose value it gets", sub="key")
        if self.env_var and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.env_var):
            raise _error(f"{self.env_var!r} is not an environment variable name", sub="env_var")
        if self.mount_path and not self.mount_path.startswith("/"):
            raise _error(f"{self.mount_path!r} must be an absolute path", sub="mount_path")
        return self


_EMPTY_CMD = 'empty; give the command to run, e.g. ["python3", "/app/main.py"]'


class Transform(_SpecModel):
    """What to run for each datum. With an ``image`` each datum runs in that image's rootfs
    (``tusk.pps.images``), as ``user`` (else the image's User), ``cmd`` replacing the image's
    Entrypoint and Cmd when given; without one (or under ``--executor host``), ``cmd`` runs on
    this machine. ``network`` (a Tusk field, default off) lets an image's datums reach the
    network. ``secrets`` name stored secrets (``tusk create secret``); ``image_pull_secrets``
    name stored secrets holding a Docker ``.dockerconfigjson`` for registry pulls;
    ``memory_volume`` is a Kubernetes setting, recorded."""

    cmd: list[str] = Field(default_factory=list)
    stdin: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    working_dir: str | None = None
    err_cmd: list[str] = Field(default_factory=list)
    err_stdin: list[str] = Field(default_factory=list)
    accept_return_code: list[int] = Field(default_factory=list)
    user: str | None = None
    secrets: list[SecretMount] = Field(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list)
    memory_volume: bool = False
    network: bool | None = None  # None (left out of the canonical spec and its hash): off
    # One process works through a batch of datums, calling `tusk next datum` (tusk.pps.batching)
    datum_batching: bool | None = None  # None: left out of the canonical spec (off)

    @field_validator("cmd")
    @classmethod
    def _cmd_not_empty(cls, value: list[str]) -> list[str]:
        if value and not value[0]:
            raise _error(_EMPTY_CMD)
        return value

    @model_validator(mode="after")
    def _cmd_or_image(self) -> Transform:
        if not self.cmd and not self.image:
            if "cmd" in self.model_fields_set:
                raise _error(_EMPTY_CMD, sub="cmd")
            raise _error(
                "required field missing; give the command to run, or an image whose "
                "Entrypoint runs",
                sub="cmd",
            )
        return self


class Trigger(_SpecModel):
    """``input.pfs.trigger``: the input's branch follows ``branch`` of its repo, moving when the
    conditions hold (any one, or each with ``all``; none: every commit), as Pachyderm's branch
    triggers (tusk.pfs.triggers). Creating the pipeline creates the input's branch (default
    ``<pipeline>-trigger-<n>``) with this trigger, or sets it on the existing branch."""

    branch: str = "master"
    all: bool = False
    size: str | None = None
    commits: int | None = None
    cron_spec: str | None = None

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, value: str) -> str:
        return _check_branch(value)

    @field_validator("size", mode="before")
    @classmethod
    def _check_size(cls, value: Any) -> Any:
        if value in (None, "", 0):
            return None
        try:
            parse_size(value)
        except ValueError as exc:
            raise _error(str(exc)) from None
        return str(value).strip()

    @field_validator("commits")
    @classmethod
    def _check_commits(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise _error(f"{value} is negative; give a number of commits, e.g. 10")
        return value or None  # 0 is Pachyderm's "not set"

    @field_validator("cron_spec")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return check_cron(value)
        except ValueError as exc:
            raise _error(str(exc)) from None


class PfsInput(_SpecModel):
    """Files of one branch (or pinned commit) of a repo, cut into datums by ``glob``."""

    repo: str
    glob: str
    name: str = ""
    branch: str = "master"
    join_on: str = ""
    outer_join: bool = False
    group_by: str = ""
    lazy: bool = False
    empty_files: bool = False
    commit: str | None = None
    project: Project | None = None
    trigger: Trigger | None = None
    # Read through the S3 gateway (a bucket named for the input) instead of /pfs/<name>;
    # None, not False, so that specs without it keep their hash.
    s3: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("repo"), str):
            return {**data, "name": data["repo"].rpartition("/")[2]}  # project/repo -> repo
        return data

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str) -> str:
        return _check_repo_ref(value)

    @field_validator("branch")
    @classmethod
    def _check_branch(cls, value: str) -> str:
        return _check_branch(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_input_name(value)

    @field_validator("commit")
    @classmethod
    def _check_commit(cls, value: str | None) -> str | None:
        if value is not None and not _COMMIT_ID.match(value):
            raise _error(f"{value!r} is not a commit id; give all 32 hex digits of the commit")
        return value

    @field_validator("glob")
    @classmethod
    def _check_glob(cls, value: str) -> str:
        # As Pachyderm (pfsfile.CleanPath when a pipeline is created): "*" means "/*", "" and
        # "." mean "/", "./a//b/" means "/a/b". normalize_glob does the cleaning.
        try:
            globs.glob_to_regex(value)
        except InvalidSpec as exc:
            raise _error(exc.message) from None
        return globs.normalize_glob(value)

    @model_validator(mode="after")
    def _check_keys(self) -> PfsInput:
        groups = globs.glob_to_regex(self.glob).groups
        for field in ("join_on", "group_by"):
            template = getattr(self, field)
            try:
                refs = globs.template_groups(template)
            except InvalidSpec as exc:
                raise _error(exc.message, sub=field) from None
            bad = [ref for ref in refs if ref > groups]
            if bad:
                raise _error(
                    f"{template!r} uses ${bad[0]} but glob {self.glob!r} has {groups} capture "
                    "group(s); wrap the part to match in parentheses, e.g. glob '/(*).csv' "
                    "with '$1'",
                    sub=field,
                )
        if self.lazy and self.empty_files:
            raise _error("lazy and empty_files cannot both be true; keep one", sub="empty_files")
        if self.s3:
            # As Pachyderm: the gateway shows whole commits, so the input is one datum.
            if self.glob != "/":
                raise _error(
                    f"an s3 input is read whole through the S3 gateway: its glob must be '/', "
                    f"not {self.glob!r}",
                    sub="glob",
                )
            for field in ("lazy", "empty_files"):
                if getattr(self, field):
                    raise _error(
                        f"an s3 input is read through the S3 gateway, not from /pfs: remove "
                        f"{field}",
                        sub=field,
                    )
        if self.trigger is not None and self.commit is not None:
            raise _error("a pinned commit never moves; remove commit or trigger", sub="trigger")
        own = "branch" in self.model_fields_set  # else named for the pipeline later
        if self.trigger is not None and own and self.trigger.branch == self.branch:
            raise _error(
                f"the trigger follows {self.branch!r}, the branch it moves; set branch to "
                "another name (e.g. staging) or leave it out",
                sub="trigger.branch",
            )
        return self


class CronInput(_SpecModel):
    """A tick repo written on a schedule; a job runs on each tick."""

    name: str
    spec: str
    repo: str = ""
    overwrite: bool = False
    start: str | None = None
    project: Project | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_input_name(value)

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str) -> str:
        return value if value == "" else _check_repo_ref(value)

    @field_validator("spec")
    @classmethod
    def _check_spec(cls, value: str) -> str:
        try:
            return check_cron(value)
        except ValueError as exc:
            raise _error(str(exc)) from None

    @field_validator("start", mode="before")
    @classmethod
    def _check_start(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
            except ValueError:
                raise _error(
                    f"{value!r} is not an RFC 3339 time; write e.g. '2024-01-31T00:00:00Z'"
                ) from None
        else:
            raise _error(f"{value!r} is not an RFC 3339 time; write e.g. '2024-01-31T00:00:00Z'")
        if moment.tzinfo is None:
            raise _error(f"{value!s} has no time zone; add one, e.g. '2024-01-31T00:00:00Z'")
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Input(_SpecModel):
    """Exactly one of ``pfs``, ``cross``, ``union``, ``join``, ``group``, ``cron``."""

    pfs: PfsInput | None = None
    cross: list[Input] | None = None
    union: list[Input] | None = None
    join: list[Input] | None = None
    group: list[Input] | None = None
    cron: CronInput | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Input:
        kinds = [kind for kind in _INPUT_KINDS if getattr(self, kind) is not None]
        if not kinds:
            raise _error("empty input; set exactly one of pfs, cross, union, join, group or cron")
        if len(kinds) > 1:
            raise _error(
                f"sets {' and '.join(kinds)}; an input is exactly one of pfs, cross, union, "
                "join, group or cron: nest them instead, e.g. cross: [{pfs: ...}, {pfs: ...}]"
            )
        kind = kinds[0]
        children = getattr(self, kind)
        if isinstance(children, list):
            if not children:
                raise _error("empty; list at least one input", sub=kind)
            if kind in ("join", "group"):
                key = "join_on" if kind == "join" else "group_by"
                for i, child in enumerate(children):
                    if child.pfs is None:
                        raise _error(
                            f"a {kind} takes pfs inputs only; move other inputs out of the "
                            f"{kind} (e.g. cross the {kind} with them)",
                            sub=f"{kind}[{i}]",
                        )
                    # A join without join_on is valid in Pachyderm (validateInput in
                    # src/server/pps/server/api_server.go never asks for it): its worker keys each
                    # match by glob.Replace(path, join_on) (src/server/worker/datum/
                    # worker.go, processPFSTask), and ohmyglob's Replace of an empty template
                    # is "", so every match of that input has the key "" (hashed, in
                    # processKeyTask). A join of inputs without join_on is thus their cross;
                    # with join_on on some inputs, the others only meet keys that expand to
                    # "" (or appear alone when outer_join). datums._join does the same.
                    if kind == "group" and not child.pfs.group_by:
                        raise _error(
                            f"required in a {kind}; capture part of the path in the glob and "
                            f"name it, e.g. glob '/(*).csv' with {key} '$1'",
                            sub=f"{kind}[{i}].pfs.{key}",
                        )
        return self

    @property
    def kind(self) -> str:
        """Which of pfs, cross, union, join, group, cron this input is."""
        for kind in _INPUT_KINDS:
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("a validated Input always sets one kind")

    @property
    def children(self) -> list[Input]:
        """The nested inputs of a cross, union, join or group; [] for pfs and cron."""
        value = getattr(self, self.kind)
        return list(value) if isinstance(value, list) else []

    def leaves(self) -> Iterator[PfsInput | CronInput]:
        """Every pfs and cron input in the tree, depth first, in spec order."""
        if self.pfs is not None:
            yield self.pfs
        elif self.cron is not None:
            yield self.cron
        else:
            for child in self.children:
                yield from child.leaves()


class Project(_SpecModel):
    """Pachyderm's ``{name: ...}`` form of a project (a bare string is taken as its name)."""

    name: str = DEFAULT_PROJECT

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_name(value or DEFAULT_PROJECT, "project name")


class Pipeline(_SpecModel):
    name: str
    project: Project | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_name(value, "pipeline name")


class Metadata(_SpecModel):
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class ParallelismSpec(_SpecModel):
    constant: int = Field(default=1, ge=1)


_MISSING_INPUT = "required field missing; add it"


class Service(_SpecModel):
    """Pachyderm's service: the code is one long-lived server over the latest input commits,
    listening on ``internal_port``; Tusk forwards ``external_port`` on the server's listen
    address to it and restarts it on each new input commit (``tusk.pps.supervisor``).
    ``type`` and ``ip`` are Kubernetes settings, recorded."""

    internal_port: int = Field(ge=1, le=65535)
    external_port: int = Field(ge=1, le=65535)
    type: str = ""
    ip: str = ""

    @model_validator(mode="after")
    def _two_ports(self) -> Service:
        if self.internal_port == self.external_port:
            raise _error(
                f"internal_port and external_port are both {self.internal_port}: on one "
                "machine Tusk forwards the external port to the internal one, so give two "
                "different ports"
            )
        return self


class Spout(_SpecModel):
    """Pachyderm's spout: no input; the code runs as one long-lived process that writes into
    the pipeline's output repo itself (``tusk put file``, the SDK or the S3 gateway), restarted
    when it exits (``tusk.pps.supervisor``). With ``service`` it also listens on
    ``internal_port``, reachable on ``external_port`` (Pachyderm 2's spout service)."""

    service: Service | None = None


def _check_egress_url(value: str) -> str:
    if value.startswith(("file:///", "s3://")) and len(value) > len("s3://"):
        return value
    if value.startswith("/"):
        return value
    raise _error(
        f"{value!r} is not a supported egress URL; use file:///dir, an absolute path or "
        "s3://bucket/prefix"
    )


class ObjectStorageEgress(_SpecModel):
    url: str

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _check_egress_url(value)


class SqlFileFormat(_SpecModel):
    """Pachyderm's ``SQLDatabaseEgress.FileFormat``: ``CSV`` or ``JSON`` (lines) and the
    columns its files name (a CSV header, the JSON keys)."""

    type: Literal["CSV", "JSON"]
    columns: list[str] = Field(default_factory=list)

    @field_validator("type", mode="before")
    @classmethod
    def _check_type(cls, value: Any) -> Any:
        text = str(value).strip().upper() if isinstance(value, str | int) else value
        text = {"1": "CSV", "2": "JSON", "3": "PARQUET"}.get(text, text)  # proto enum numbers
        if text in ("CSV", "JSON"):
            return text
        if text == "PARQUET":
            raise _error("PARQUET is not supported by Tusk's SQL egress; use CSV or JSON")
        raise _error(f"{value!r} is not a file format; use CSV or JSON")

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: list[str]) -> list[str]:
        if any(not c.strip() for c in value) or len(set(value)) != len(value):
            raise _error("column names must be non-empty and distinct")
        return value


class SqlSecret(_SpecModel):
    name: str
    key: str


class SqlDatabaseEgress(_SpecModel):
    """Pachyderm's ``egress.sql_database``: rows of the output's files into the tables of a
    PostgreSQL or SQLite database (tusk.pps.egress), the password from a stored secret."""

    url: str
    file_format: SqlFileFormat
    secret: SqlSecret | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.split("+")[0] not in ("postgresql", "postgres", "sqlite"):
            raise _error(
                f"{value!r} is not a supported database URL; use "
                "postgresql://user@host[:port]/db or sqlite:////absolute/path.db"
            )
        if scheme.startswith("postgres") and ":" in rest.split("@")[0] and "@" in rest:
            raise _error("do not put the password in the URL; name a secret: {name, key}")
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> SqlDatabaseEgress:
        if self.secret is None and not self.url.startswith("sqlite"):
            raise _error(
                "required for a database server (the password: {name: S, key: K} of a secret "
                "made with tusk create secret)",
                sub="secret",
            )
        return self


class Egress(_SpecModel):
    """Where a finished output commit goes (tusk.pps.egress): ``URL`` (``file:///dir``,
    ``/dir`` or ``s3://b/p``; Pachyderm's ``object_storage.url`` is read as the same), or
    ``sql_database``. Exactly one."""

    url: str | None = Field(default=None, validation_alias=AliasChoices("URL", "url"))
    object_storage: ObjectStorageEgress | None = None
    sql_database: SqlDatabaseEgress | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_egress_url(value)

    @model_validator(mode="after")
    def _one_target(self) -> Egress:
        # Pachyderm's worker reads object_storage.url as URL: stored as URL, one form to hash.
        url = self.url
        if self.object_storage is not None:
            if url is not None and url != self.object_storage.url:
                raise _error("give URL or object_storage.url, not both")
            url = self.object_storage.url
        if (url is None) == (self.sql_database is None):
            raise _error(
                "give exactly one of URL (object storage or a folder) and sql_database"
                if url is not None
                else "give URL (s3://bucket/prefix, file:///dir) or sql_database"
            )
        if self.object_storage is None:
            return self
        return self.model_copy(update={"url": url, "object_storage": None})


class PipelineSpec(_SpecModel):
    """A whole pipeline spec. Build it with :func:`load_spec` (which also reports refused
    Pachyderm fields by name); ``canonical()`` is its stored form."""

    pipeline: Pipeline
    transform: Transform
    input: Input | None = None  # required, but for a spout
    spout: Spout | None = None
    service: Service | None = None
    description: str = ""
    metadata: Metadata = Field(default_factory=Metadata)
    parallelism_spec: ParallelismSpec = Field(default_factory=ParallelismSpec)
    datum_tries: int = Field(default=3, ge=1)
    datum_timeout: float | None = None
    job_timeout: float | None = None
    output_branch: str = "master"
    egress: Egress | None = None
    # Write the output through the S3 gateway's bucket "out" instead of /pfs/out.
    s3_out: bool | None = None
    reprocess_spec: Literal["until_success", "every_job"] = "until_success"
    salt: str | None = None
    autoscaling: bool = False
    # Resources: limits are enforced on each datum process and requests admit datums to this
    # machine (tusk.pps.resources); the rest only means something on Kubernetes: recorded.
    resource_requests: Resources | None = None
    resource_limits: Resources | None = None
    sidecar_resource_requests: Resources | None = None
    sidecar_resource_limits: Resources | None = None
    scheduling_spec: dict[str, Any] | None = None
    pod_spec: str | None = None
    pod_patch: str | None = None
    tolerations: list[dict[str, Any]] | None = None

    @field_validator("datum_timeout", "job_timeout", mode="before")
    @classmethod
    def _check_duration(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise _error(str(exc)) from None

    @field_validator("output_branch")
    @classmethod
    def _check_output_branch(cls, value: str) -> str:
        return _check_branch(value)

    @model_validator(mode="after")
    def _check_tree(self) -> PipelineSpec:
        if self.spout is not None and self.service is not None:
            raise _error(
                "a spout's port goes inside it, as in Pachyderm 2: spout: {service: {...}}"
            )
        if self.s3_out and (self.spout is not None or self.service is not None):
            raise _error(
                "s3_out is for pipelines that run on datums, not spouts or services (as "
                "Pachyderm): remove s3_out and write with the S3 gateway's own buckets",
                sub="s3_out",
            )
        s3_inputs = [
            leaf
            for leaf in (self.input.leaves() if self.input else [])
            if isinstance(leaf, PfsInput) and leaf.s3
        ]
        if self.service is not None and s3_inputs:
            raise _error(
                "a service reads its inputs from /pfs: remove s3 from its inputs", sub="input"
            )
        if self.spout is not None:
            if self.input is not None:
                raise _error(
                    "a spout has no input: it writes its output repo itself; remove input "
                    "(or spout, for a pipeline that runs on its input's datums)"
                )
            return self
        if self.input is None:
            raise _error(_MISSING_INPUT, sub="input")
        problems: list[str] = []
        names: dict[str, str] = {}
        tree = _with_trigger_branches(self.input, self.pipeline.name)
        new_input = _check_input_tree(tree, "input", None, self.name, names, problems)
        if problems:
            raise _error("; ".join(problems))
        if new_input is self.input:
            return self
        return self.model_copy(update={"input": new_input})

    @property
    def project(self) -> str:
        return self.pipeline.project.name if self.pipeline.project else DEFAULT_PROJECT

    @property
    def name(self) -> str:
        """The pipeline's (and its output repo's) stored name: ``project/name`` outside the
        default project."""
        return qualify(self.project, self.pipeline.name)

    def inputs(self) -> list[PfsInput | CronInput]:
        """Every leaf input (pfs and cron), depth first, in spec order (none for a spout)."""
        return list(self.input.leaves()) if self.input is not None else []

    def uses_s3(self) -> bool:
        """Whether the pipeline's datums need an S3 gateway session (an input read with
        ``s3: true``, or ``s3_out``)."""
        return bool(self.s3_out) or any(
            isinstance(leaf, PfsInput) and leaf.s3 for leaf in self.inputs()
        )

    def input_branches(self) -> list[tuple[str, str]]:
        """(repo, branch) of every leaf input, in order; a cron input reads (its repo, master).

        Not deduplicated: a repo read twice (under two names) appears twice.
        """
        return [
            (leaf.repo, "master") if isinstance(leaf, CronInput) else (leaf.repo, leaf.branch)
            for leaf in self.inputs()
        ]

    def canonical(self) -> dict[str, Any]:
        """snake_case dict with defaults filled and unset optional fields left out.

        Stable for hashing and storage; ``load_spec(spec.canonical()) == spec``.
        """
        return self.model_dump(mode="json", exclude_none=True)


def _check_input_tree(
    node: Input,
    path: str,
    parent: str | None,
    pipeline: str,
    names: dict[str, str],
    problems: list[str],
) -> Input:
    """Whole-tree rules: unique input names (the branches of a union may share one),
    join/group-only fields, cron repo defaults.

    Returns the node with cron repos filled in (the same object when nothing changed).
    """
    project = pipeline.rpartition("/")[0] or DEFAULT_PROJECT
    if node.pfs is not None:
        pfs = node.pfs
        where = f"{path}.pfs"
        # An input reads its own project's repo, else the pipeline's project's (Pachyderm's).
        repo = qualify(pfs.project.name if pfs.project else project, pfs.repo)
        # The stored repo names its project, except default's bare names: those keep
        # {name: default} when the pipeline is elsewhere, so that the spec reads the same again.
        keep = Project() if "/" not in repo and project != DEFAULT_PROJECT else None
        if repo != pfs.repo or pfs.project != keep:
            pfs = pfs.model_copy(update={"repo": repo, "project": keep})
            node = node.model_copy(update={"pfs": pfs})
        _claim_name(pfs.name, f"{where}.name", names, problems)
        if pfs.repo == pipeline:
            problems.append(
                f"{where}.repo: {pfs.repo!r} is this pipeline's own output repo; a pipeline "
                "cannot read its own output"
            )
        if parent != "join" and pfs.join_on:
            problems.append(f"{where}.join_on: only used inside a join input; remove it")
        if parent != "join" and pfs.outer_join:
            problems.append(f"{where}.outer_join: only used inside a join input; remove it")
        if parent != "group" and pfs.group_by:
            problems.append(f"{where}.group_by: only used inside a group input; remove it")
        return node
    if node.cron is not None:
        cron = node.cron
        where = f"{path}.cron"
        _claim_name(cron.name, f"{where}.name", names, problems)
        cron_project = cron.project.name if cron.project else project
        if cron.repo:
            repo = qualify(cron_project, cron.repo)
            keep = Project() if "/" not in repo and project != DEFAULT_PROJECT else None
            if repo == cron.repo and cron.project == keep:
                return node
            updated = cron.model_copy(update={"repo": repo, "project": keep})
            return node.model_copy(update={"cron": updated})
        bare = f"{pipeline.rpartition('/')[2]}_{cron.name}"
        repo = qualify(cron_project, bare)
        if not _NAME.match(bare):
            problems.append(
                f"{where}.repo: the default repo name {repo!r} is not a valid repo name "
                f"({_NAME_RULE}); set repo"
            )
            return node
        return node.model_copy(
            update={"cron": cron.model_copy(update={"repo": repo, "project": None})}
        )
    kind = node.kind
    old = node.children
    if kind in ("join", "group", "union") and any(
        isinstance(leaf, PfsInput) and leaf.s3 for leaf in node.leaves()
    ):
        # As Pachyderm (validateInput): what a bucket means for such datums is not clear.
        problems.append(
            f"{path}.{kind}: s3 inputs in {kind} expressions are not supported (as in "
            "Pachyderm); read that input from /pfs, or cross it with the others"
        )
    if kind != "union":
        new = [
            _check_input_tree(child, f"{path}.{kind}[{i}]", kind, pipeline, names, problems)
            for i, child in enumerate(old)
        ]
    else:
        # As Pachyderm (ppsutil.ValidateNames): a datum of a union comes from one branch only,
        # so its branches may reuse a name (each is checked against the names claimed before
        # the union, not against its sibling branches); inputs after the union (crossed with
        # it) may use none of the names any branch presents.
        new = []
        presented: dict[str, str] = {}
        for i, child in enumerate(old):
            own = dict(names)
            new.append(
                _check_input_tree(child, f"{path}.{kind}[{i}]", kind, pipeline, own, problems)
            )
            for name, where in own.items():
                presented.setdefault(name, where)
        names.update(presented)
    if all(a is b for a, b in zip(old, new, strict=True)):
        return node
    return node.model_copy(update={kind: new})


def _with_trigger_branches(
    node: Input, pipeline: str, counts: dict[str, int] | None = None
) -> Input:
    """The tree with a branch named for each pfs input with a trigger and no branch of its
    own: ``<pipeline>-trigger-<n>``, counted per repo from 1 in spec order (as Pachyderm)."""
    counts = {} if counts is None else counts
    pfs = node.pfs
    if pfs is not None:
        if pfs.trigger is None or "branch" in pfs.model_fields_set:
            return node
        counts[pfs.repo] = counts.get(pfs.repo, 0) + 1
        branch = f"{pipeline}-trigger-{counts[pfs.repo]}"
        return node.model_copy(update={"pfs": pfs.model_copy(update={"branch": branch})})
    old = node.children
    new = [_with_trigger_branches(child, pipeline, counts) for child in old]
    if all(a is b for a, b in zip(old, new, strict=True)):
        return node
    return node.model_copy(update={node.kind: new})


def _claim_name(name: str, where: str, names: dict[str, str], problems: list[str]) -> None:
    if name in names:
        problems.append(
            f"{where}: input name {name!r} is already used by {names[name]}; each input is "
            "mounted at /pfs/<name>, so give one of them another name with `name`"
        )
    else:
        names[name] = where


def spec_hash(spec: PipelineSpec) -> str:
    """BLAKE3 hex of the canonical JSON (sorted keys): changes whenever any field does."""
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return blake3.blake3(text.encode("utf-8")).hexdigest()


def load_spec(data: Any, source: str = "") -> PipelineSpec:
    """Validate one parsed spec (a dict from :func:`parse_specs`).

    Raises InvalidSpec with every problem on one line; ``source`` (a file name) prefixes it.
    """
    prefix = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise InvalidSpec(
            f"{prefix}invalid pipeline spec: expected a mapping with pipeline, transform and "
            f"input, got {type(data).__name__}; see {DOCS}"
        )
    problems: list[str] = []
    cleaned = _prepare(data, "spec", "", problems)
    if not problems and not {_snake(str(k)) for k in cleaned} & {"input", "spout"}:
        # Said here, not only by the model (which checks after every field is valid), so that
        # it is reported beside the other problems of the spec.
        problems.append(f"input: {_MISSING_INPUT}")
    try:
        spec = PipelineSpec.model_validate(cleaned)
    except ValidationError as exc:
        problems.extend(_root_causes(exc, problems))
    if problems:
        unique = list(dict.fromkeys(p.replace("\n", " ") for p in problems))
        raise InvalidSpec(f"{prefix}invalid pipeline spec: {'; '.join(unique)}; see {DOCS}")
    return spec


def _loc_path(loc: tuple[Any, ...]) -> str:
    """A pydantic loc as a snake_case spec path (``input.cross[1].pfs``)."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join_path(path, _snake(str(part)))
    return path


def _snake_path(path: str) -> str:
    return ".".join(_snake(part) for part in path.split("."))


def _root_causes(exc: ValidationError, reported: list[str]) -> list[str]:
    """pydantic's problems (as :func:`_describe` words them) without those that only follow
    from another one, so the user sees the cause:

    - a required field missing beside a refused field (``spout`` instead of ``input``,
      ``tf_job`` instead of ``transform``): removing the refused field comes first;
    - a required field missing beside an unknown field that looks like it (``glb`` for
      ``glob``): one line, the unknown field with "did you mean".
    """
    import difflib

    errors = exc.errors()
    refused_parents = set()
    for problem in reported:
        path = problem.split(": ", 1)[0]
        refused_parents.add(_snake_path(path.rpartition(".")[0]))
    missing: dict[str, list[str]] = {}
    for err in errors:
        if err["type"] == "missing" and err["loc"]:
            missing.setdefault(_loc_path(err["loc"][:-1]), []).append(str(err["loc"][-1]))
    meant: dict[int, str] = {}  # index of an unknown-field error -> the missing field it means
    for i, err in enumerate(errors):
        if err["type"] == "extra_forbidden" and err["loc"]:
            parent = _loc_path(err["loc"][:-1])
            unknown = _snake(str(err["loc"][-1]))
            close = difflib.get_close_matches(unknown, missing.get(parent, []), n=1, cutoff=0.6)
            if close:
                meant[i] = close[0]
                missing[parent].remove(close[0])
    explained = {(_loc_path(errors[i]["loc"][:-1]), field) for i, field in meant.items()}
    out: list[str] = []
    for i, (err, text) in enumerate(zip(errors, _describe(exc), strict=True)):
        loc = err["loc"]
        if err["type"] == "missing" and loc:
            parent = _loc_path(loc[:-1])
            if parent in refused_parents or (parent, str(loc[-1])) in explained:
                continue
        out.append(f"{text} (did you mean {meant[i]!r}?)" if i in meant else text)
    return out


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_default_project(value: Any) -> bool:
    if value in ("default", "", None):
        return True
    return isinstance(value, dict) and set(value) <= {"name"} and value.get("name") == "default"


def _prepare(data: Any, section: str, path: str, problems: list[str]) -> Any:
    """Walk the raw spec: report refused and doubly-given fields with their paths, drop the
    default project. Everything else is left to pydantic."""
    if not isinstance(data, dict):
        return data
    refused = UNSUPPORTED.get(section, {})
    children = _CHILDREN.get(section, {})
    out: dict[Any, Any] = {}
    seen: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            out[key] = value
            continue
        snake = _snake(key)
        where = _join_path(path, key)
        if snake in seen:
            problems.append(f"{where}: given twice (as {seen[snake]!r} and {key!r}); keep one")
            continue
        seen[snake] = key
        if section == "pipeline" and snake == "project" and _is_default_project(value):
            continue  # the default project is the same as none: specs hash the same either way
        if snake in refused:
            problems.append(f"{where}: {refused[snake]}")
            continue
        child = children.get(snake)
        if child is not None:
            sub, many = child
            if many and isinstance(value, list):
                value = [
                    _prepare(item, sub, f"{where}[{i}]", problems) for i, item in enumerate(value)
                ]
            elif not many:
                value = _prepare(value, sub, where, problems)
        out[key] = value
    return out


_PLAIN_MESSAGES = {
    "missing": "required field missing; add it",
    "extra_forbidden": "unknown field",
    "model_type": "should be a mapping (key: value pairs)",
    "model_attributes_type": "should be a mapping (key: value pairs)",
    "dict_type": "should be a mapping (key: value pairs)",
    "list_type": "should be a list",
    "string_type": "should be a string (quote it)",
}


def _describe(exc: ValidationError) -> list[str]:
    """pydantic's errors as ``path: message`` strings."""
    out = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else _join_path(path, str(part))
        kind = err["type"]
        if kind == "tusk":
            ctx = err.get("ctx") or {}
            sub = str(ctx.get("sub", ""))
            if sub:
                path = f"{path}{sub}" if sub.startswith("[") else _join_path(path, sub)
            message = str(ctx.get("message", err["msg"]))
        elif kind in _PLAIN_MESSAGES:
            message = _PLAIN_MESSAGES[kind]
        else:
            message = err["msg"]
            message = message[:1].lower() + message[1:]
        value = err.get("input")
        if kind not in ("tusk", "missing", "extra_forbidden") and isinstance(
            value, str | int | float | bool
        ):
            shown = repr(value)
            message += f" (got {shown[:40] + '...' if len(shown) > 40 else shown})"
        out.append(f"{path}: {message}" if path else message)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


def parse_specs(text: str | bytes, source: str = "spec") -> list[dict[str, Any]]:
    """Every pipeline spec in a JSON or YAML document.

    A file may hold several specs: YAML documents separated by ``---``, JSON objects one
    after another (as ``pachctl create pipeline`` accepts), or a JSON/YAML list of specs.
    Malformed input raises InvalidSpec naming ``source`` and the line; so does a file with
    no spec at all.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidSpec(
                f"{source}: not UTF-8 text (bad byte at offset {exc.start}); save the spec "
                "as UTF-8 JSON or YAML"
            ) from None
    text = text.lstrip("\ufeff")
    stripped = text.lstrip()
    docs: list[Any]
    if stripped.startswith(("{", "[")):
        try:
            docs = _parse_json_stream(text)
        except json.JSONDecodeError as json_exc:
            # YAML flow style ({a: 1}) also starts with a brace, and YAML takes what Pachyderm's
            # YAML reader takes beyond JSON (trailing commas, tabs). If both fail, the parser
            # that got further into the file names the real line and cause (JSON's on a tie).
            docs, yaml_error, yaml_at = _try_yaml(text, source)
            if yaml_error is not None:
                if yaml_at > json_exc.pos:
                    raise yaml_error from None
                raise InvalidSpec(
                    f"{source}:{json_exc.lineno}:{json_exc.colno}: invalid JSON: {json_exc.msg}; "
                    "fix the syntax there"
                ) from None
        except ValueError as exc:
            # A key given twice: YAML reads JSON too, and its error has the line.
            docs, yaml_error, _ = _try_yaml(text, source)
            if yaml_error is not None:
                raise yaml_error from None
            raise InvalidSpec(f"{source}: invalid JSON: {exc}; keep one of them") from None
    else:
        docs = _parse_yaml(text, source)
    specs: list[dict[str, Any]] = []
    for doc in docs:
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            if not isinstance(item, dict):
                raise InvalidSpec(
                    f"{source}: spec {len(specs) + 1} is a {type(item).__name__}, not a mapping; "
                    "each spec is a mapping with pipeline, transform and input"
                )
            specs.append(item)
    if not specs:
        raise InvalidSpec(
            f"{source}: no pipeline spec found; write a mapping with pipeline, transform and input"
        )
    return specs


def _parse_json_stream(text: str) -> list[Any]:
    """JSON values one after another, as ``pachctl`` reads them; a line of ``---`` (or
    ``...``) between two of them is skipped, as a YAML reader would."""
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)
    docs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return docs
        separator = _DOC_SEPARATOR.match(text, pos)
        if separator is not None:
            pos = separator.end()
            continue
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)


_DOC_SEPARATOR = re.compile(r"(?:---|\.\.\.)[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z)")


def _parse_yaml(text: str, source: str) -> list[Any]:
    docs, error, _ = _try_yaml(text, source)
    if error is not None:
        raise error
    return docs


def _load_yaml(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc is not None]


def _try_yaml(text: str, source: str) -> tuple[list[Any], InvalidSpec | None, int]:
    """(documents, None, 0), or ([], the error naming the line, its offset in ``text``).

    PyYAML refuses tabs as separating whitespace (``key:\tvalue``, ``{a: 1,\tb: 2}``,
    tab-indented JSON), which YAML 1.2 and Pachyderm's reader (Go's yaml.v3) take. So when
    PyYAML fails on a text with tabs, it is read again with those tabs as spaces; if that
    fails too, the first error is the one reported.
    """
    try:
        return _load_yaml(text), None, 0
    except yaml.YAMLError as exc:
        first = exc
    if "\t" in text:
        untabbed = _untab(text)
        if untabbed != text:
            try:
                return _load_yaml(untabbed), None, 0
            except yaml.YAMLError:
                pass
    if isinstance(first, yaml.MarkedYAMLError):
        mark = first.problem_mark or first.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(first.problem or first.context or "syntax error").split())
        error = InvalidSpec(f"{where}: invalid YAML: {problem}; fix the syntax there")
        return [], error, mark.index if mark else -1
    problem = " ".join(str(first).split())
    return [], InvalidSpec(f"{source}: invalid YAML: {problem}; fix the syntax"), -1


_INDICATORS = frozenset(":-,?")
_TOKEN_START = frozenset(" \t[{,:")


def _untab(text: str) -> str:
    """``text`` with the tabs that YAML 1.2 reads as separating whitespace made spaces: every
    tab inside a flow collection (``{...}``, ``[...]``), after an indicator (``key:\t``,
    ``-\t``) and before a comment or the end of a line. Tabs in quoted scalars, inside plain
    scalars (``echo a\tb``) and in block indentation (refused by every YAML reader) stay."""
    out: list[str] = []
    depth = 0  # flow collections open
    quote = ""  # the quote of the scalar we are in, if any
    escaped = False
    comment = False
    indent = True  # still in the line's leading whitespace
    last = ""  # the last character that is not a space or tab on this line
    n = len(text)
    for i, c in enumerate(text):
        prev = text[i - 1] if i else "\n"
        if quote:
            if escaped:
                escaped = False
            elif quote == '"' and c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
            out.append(c)
            continue
        if c == "\n":
            comment, indent, last = False, True, ""
            out.append(c)
            continue
        if comment:
            out.append(c)
            continue
        if c in " \t":
            if c == "\t" and not (indent and depth == 0):
                j = i
                while j < n and text[j] in " \t":
                    j += 1
                ends = j >= n or text[j] in "#\r\n"
                if depth > 0 or ends or last in _INDICATORS:
                    c = " "
            out.append(c)
            continue
        start = indent or prev in _TOKEN_START
        indent = False
        if c == "#" and prev in " \t\n":
            comment = True
        elif c in "\"'" and start:
            quote = c
        elif c in "[{" and start:
            depth += 1
        elif c in "]}" and depth > 0:
            depth -= 1
        last = c
        out.append(c)
    return "".join(out)


def render_jsonnet(
    template: str | os.PathLike[str],
    args: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
    source: str = "",
    optional: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Every pipeline spec a Jsonnet template renders (``pachctl create pipeline --jsonnet``).

    ``template`` is the file to evaluate (its imports are found beside it), or with ``text``
    the name of a template read elsewhere (a URL, stdin). ``args`` are the top-level
    arguments: strings are passed as strings, as ``pachctl --arg name=value`` passes them;
    other values (numbers, lists, mappings from an ``.args.yaml`` file) as JSON values. The
    result is one spec or a list of specs. A template error raises InvalidSpec with jsonnet's
    own message and its file:line; a missing or unknown argument is named, except that the
    ``optional`` arguments are passed only if the template has such a parameter (``tusk
    apply --arg`` gives its arguments to every template that takes them).
    """
    label = source or str(template)
    try:
        import _jsonnet  # the `jsonnet` package: imported only when a template is rendered
    except ImportError:  # pragma: no cover - a declared dependency
        raise InvalidSpec(
            f"{label}: rendering jsonnet templates needs the jsonnet package; install it with: "
            "pip install jsonnet"
        ) from None
    tla_vars: dict[str, str] = {}
    tla_codes: dict[str, str] = {}
    for name, value in (args or {}).items():
        if isinstance(value, str):
            tla_vars[str(name)] = value
        else:
            tla_codes[str(name)] = json.dumps(value)
    while True:
        try:
            if text is None:
                rendered = _jsonnet.evaluate_file(
                    str(template), tla_vars=tla_vars, tla_codes=tla_codes
                )
            else:
                rendered = _jsonnet.evaluate_snippet(
                    str(template), text, tla_vars=tla_vars, tla_codes=tla_codes
                )
        except RuntimeError as exc:
            unknown = _JSONNET_UNKNOWN.search(str(exc).partition("\n")[0])
            name = unknown.group(1) if unknown else ""
            if name in optional and (name in tla_vars or name in tla_codes):
                tla_vars.pop(name, None)  # not a parameter of this template: leave it out
                tla_codes.pop(name, None)
                continue
            raise InvalidSpec(_jsonnet_error(str(exc), label)) from None
        return parse_specs(rendered, label)


_JSONNET_UNKNOWN = re.compile(r"function has no parameter (\S+)")
_JSONNET_LOCATION = re.compile(r"^\S+?:(?:\d+:\d+(?:-\d+)?|\(\d+:\d+\)-\(\d+:\d+\))")


def _jsonnet_error(raw: str, label: str) -> str:
    """jsonnet's error text as one line: its message and where (the first located frame)."""
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    head = lines[0] if lines else "jsonnet failed"
    missing = re.search(r"function parameter (\S+?) not bound in call", head)
    if missing:
        name = missing.group(1)
        return f"{label}: the template needs the argument {name!r}; pass it with --arg {name}=VALUE"
    unknown = _JSONNET_UNKNOWN.search(head)
    if unknown:
        name = unknown.group(1)
        return f"{label}: the template has no parameter {name!r}; remove the argument {name}"
    where = ""
    for frame in lines[1:]:  # the innermost frame in the user's files, not in std.jsonnet
        located = _JSONNET_LOCATION.match(frame)
        if located and not located.group(0).startswith(("std.jsonnet:", "<std>")):
            where = located.group(0)
            break
    message = f"invalid jsonnet template: {head}"
    if where:
        return f"{message} (at {where})"
    if _JSONNET_LOCATION.search(head.partition(": ")[2]):
        return message  # a static error: jsonnet put file:line:column in the message
    return f"{label}: {message}"


__all__ = [
    "DOCS",
    "UNSUPPORTED",
    "CronInput",
    "Egress",
    "Gpu",
    "Input",
    "Metadata",
    "ParallelismSpec",
    "PfsInput",
    "Pipeline",
    "PipelineSpec",
    "Resources",
    "SecretMount",
    "Transform",
    "load_spec",
    "parse_duration",
    "parse_quantity",
    "parse_specs",
    "render_jsonnet",
    "spec_hash",
]
