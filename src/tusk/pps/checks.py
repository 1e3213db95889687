"""Checks: commands that must pass on a commit or a merge result before the branch moves.

Declared in spec files that ``tusk apply`` reads, beside pipelines and repos::

    kind: check
    name: no-empty
    repo: data
    branch: master            # a glob: release-* covers every release branch
    on: [merge]               # commit and/or merge (default both)
    cmd: [sh, -c, 'test -s /pfs/data/rows.csv']
    image: python:3.12-slim   # optional: run in this image (pinned by digest when applied)
    # or, instead of cmd: `pipeline: validate`, a pipeline reading data whose job on the
    # candidate must succeed
    timeout: 10m              # a Go duration or seconds (default 10m)
    env: {MIN_ROWS: "100"}

A check runs like a datum (:class:`tusk.pps.executor.LocalExecutor`: on the host, in the
bubblewrap sandbox where it works, or in its image), reading the candidate commit at
``/pfs/<repo>`` (nothing else of the store) before the branch head moves: when a commit to a
branch it covers finishes (``on: [commit]``), and on a merge result before ``tusk merge`` moves
the target (``on: [merge]``); a protected branch can also require checks on every merge
(``tusk protect branch --require-check``). :mod:`tusk.pfs.gates` decides when; this module
runs them and records each result (state, exit code, duration, log) per commit.

This module is the declaration (the document, validated); :mod:`tusk.pps.checkrun` runs
them, light enough for a ``tusk merge`` or ``tusk put file`` process to load.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tusk.errors import InvalidSpec, NotFound, TuskError
from tusk.ids import check_repo_name, split_repo
from tusk.pfs.gates import TRIGGERS
from tusk.pps.models import CheckInfo
from tusk.pps.spec import parse_duration
from tusk.storage.meta.store_checks import CheckRecord

if TYPE_CHECKING:
    from tusk.pps.service import PpsService

DEFAULT_TIMEOUT = 600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class CheckSpec(BaseModel):
    """A ``kind: check`` document."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = "check"
    name: str
    description: str = ""
    repo: str
    branch: str = "master"
    on: list[str] = Field(default_factory=lambda: list(TRIGGERS))
    cmd: list[str] = Field(default_factory=list)
    stdin: list[str] = Field(default_factory=list)
    pipeline: str | None = None
    image: str | None = None
    image_digest: str | None = None  # pinned when applied (never written by hand)
    timeout: float = DEFAULT_TIMEOUT
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid check name {value[:80]!r}: use 1-63 letters, digits, '_' or '-'"
            )
        return value

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        return check_repo_name(value)

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not value or len(value) > 255 or not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!/-]+", value):
            raise ValueError(f"invalid branch glob {value[:80]!r}: a branch name or a glob of one")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _on(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("on: give commit and/or merge")
        bad = [v for v in value if v not in TRIGGERS]
        if bad:
            raise ValueError(f"on: {bad[0]!r} is not a trigger; give commit and/or merge")
        return sorted(set(value))

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _what(self) -> CheckSpec:
        if self.kind != "check":
            raise ValueError(f"kind is {self.kind!r}, not 'check'")
        if self.pipeline is not None:
            if self.cmd or self.stdin or self.image:
                raise ValueError(
                    "pipeline: a check runs either a pipeline or a command (cmd, stdin, "
                    "image), not both"
                )
            check_repo_name(self.pipeline)
        elif not self.cmd:
            raise ValueError(
                "cmd: a check needs a command to run (cmd: [sh, -c, '...']) or a pipeline "
                "whose job must succeed (pipeline: NAME)"
            )
        return self

    @property
    def input_name(self) -> str:
        """The check's folder under /pfs: its repo's name (without a project)."""
        return split_repo(self.repo)[1]

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"kind"})

    def info(self) -> CheckInfo:
        return CheckInfo(
            self.name, self.repo, self.branch, list(self.on), list(self.cmd), list(self.stdin),
            self.image, self.image_digest, self.timeout, dict(self.env), self.description,
        )  # fmt: skip


def parse_check(doc: dict[str, Any], label: str = "") -> CheckSpec:
    """A ``kind: check`` document, validated: InvalidSpec naming every problem otherwise."""
    if isinstance(doc, dict) and "on" not in doc:  # YAML 1.1 reads a bare `on:` as true
        doc = {("on" if k is True or k == "true" else k): v for k, v in doc.items()}
    try:
        return CheckSpec.model_validate(doc)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'check'}: {_message(e)}" for e in exc.errors()
        )
        name = doc.get("name") if isinstance(doc, dict) else None
        what = f"check {name}" if isinstance(name, str) else "check"
        raise InvalidSpec(f"{label + ': ' if label else ''}invalid {what}: {errors}") from None
    except TuskError as exc:
        raise InvalidSpec(f"{label + ': ' if label else ''}{exc.message}") from None


def _message(error: Any) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def record_of(spec: CheckSpec, created_at: float, now: float) -> CheckRecord:
    return CheckRecord(
        spec.name, spec.repo, spec.branch, "commit" in spec.on, "merge" in spec.on,
        json.dumps(spec.canonical(), sort_keys=True), created_at, now,
    )  # fmt: skip


def spec_of(record: CheckRecord) -> CheckSpec:
    return CheckSpec.model_validate(json.loads(record.spec))


def need_check(pps: PpsService, name: str) -> CheckRecord:
    with pps.meta.read() as tx:
        record = tx.get_check(name)
    if record is None:
        raise NotFound(f"check {name} is not defined (tusk list check lists them)")
    return record
