"""JSON request bodies of the REST API (responses are the result dataclasses' ``to_dict``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoCreate(_Body):
    name: str = Field(
        description="1-63 letters, digits, '_' or '-'; 'project/name' for a repo of another "
        "project than default."
    )
    description: str = ""
    update: bool = Field(False, description="Change the description of an existing repo.")


class ProjectCreate(_Body):
    name: str = Field(description="1-63 letters, digits, '_' or '-'.")
    description: str = ""
    update: bool = Field(False, description="Change the description of an existing project.")


class Trigger(_Body):
    branch: str = Field(description="The branch of the same repo that this branch follows.")
    size: str | None = Field(None, description="Fire once this much was added: '100MB'.")
    commits: int | None = Field(None, ge=0, description="Fire after this many commits.")
    cron_spec: str | None = Field(
        None, description="Fire once a tick passed since the last firing: '@every 1h'."
    )
    all: bool = Field(False, description="Every condition set must hold (default: any).")


class BranchCreate(_Body):
    name: str
    head: str | None = Field(
        None, description="A branch, commit id or ancestor ref (master^2) to point at."
    )
    provenance: list[str] = Field(default_factory=list, description="Branches: 'repo@branch'.")
    trigger: Trigger | None = Field(
        None, description="Move this branch to another branch's head when conditions hold."
    )


class TagCreate(_Body):
    name: str = Field(description="The tag's name (a branch's rules: letters, digits, . _ -).")
    commit: str = Field(description="The commit it names: an id, a branch, a tag, with ^N/~N.")


class MergeContent(_Body):
    content: str = Field(description="The path's merged content, base64 (within the body limit).")


class MergeRequest(_Body):
    source: str = Field(description="What to merge: a branch, commit id or tag of this repo.")
    message: str | None = Field(None, description="The merge commit's description.")
    strategy: str = Field(
        "fail", description="Conflicts not in resolve: fail (commit nothing), ours or theirs."
    )
    resolve: dict[str, str | MergeContent] = Field(
        default_factory=dict,
        description="Per conflicting path: 'ours', 'theirs', or {content: base64}.",
    )
    dry_run: bool = Field(False, description="Report conflicts and changes; commit nothing.")
    run_pipelines: bool = Field(
        False,
        description="Run the downstream pipelines on the merge first; move the branch and every "
        "output branch together (one commit set) only if all jobs succeed.",
    )
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="With run_pipelines: seconds to wait."
    )


class ImportRequest(_Body):
    path: str = Field("/", description="The folder of the branch the objects go to.")
    url: str = Field(
        description="s3://bucket/prefix: the objects to refer to (the server reads it)."
    )
    exclude: list[str] = Field(default_factory=list, description="Globs of keys to leave out.")
    endpoint_url: str | None = Field(None, description="An S3-compatible endpoint.")
    description: str = Field("", description="The commit's description.")


class MaterializeRequest(_Body):
    path: str = Field("/", description="Copy the referenced files at or below this path.")
    description: str = Field("", description="The commit's description.")


class Protect(_Body):
    require_checks: list[str] = Field(
        default_factory=list,
        description="Checks (by name) every merge into the branch must pass on its result.",
    )


class Retention(_Body):
    keep_last: int | None = Field(None, ge=1, description="Keep the N newest of each branch.")
    keep_within: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Keep what finished within these seconds."
    )
    keep_tagged: bool = Field(True, description="Keep tagged commits.")


class CommitStart(_Body):
    branch: str
    parent: str | None = None
    description: str = ""
    provenance: list[str] = Field(
        default_factory=list,
        description="Finished commits ('repo@ref') the commit's data is computed from.",
    )


class Description(_Body):
    description: str | None = None


class CopySource(_Body):
    src: str = Field(description="What to copy: 'repo@ref:/path' (any repo or commit).")


class Change(_Body):
    delete: str | None = Field(None, description="A path to delete (skipped if not there).")
    copy_: str | None = Field(
        None, alias="copy", description="What to copy: 'repo@ref:/path' (any repo or commit)."
    )
    to: str | None = Field(None, description="Where the copy goes (with 'copy').")


class Changes(_Body):
    changes: list[Change] = Field(description="Applied in order, as one commit.")
    description: str = ""


class Gc(_Body):
    grace: float = Field(3600.0, ge=0, allow_inf_nan=False, description="Seconds.")
    dry_run: bool = False
    retention: bool = Field(True, description="Expire old commits by the retention rules first.")
    repack_threshold: float = Field(
        0.5, ge=0, le=1, allow_inf_nan=False, description="Repack packs less live than this."
    )


class PipelineCreate(_Body):
    spec: dict[str, Any] = Field(description="A pipeline spec, as in Pachyderm.")
    update: bool = False
    reprocess: bool = False
    origin: dict[str, Any] | None = Field(
        None,
        description="Where the spec came from (spec_file, working_dir, git...); working_dir "
        "is where the transform runs unless the spec sets transform.working_dir.",
    )


class PipelineUpdate(_Body):
    spec: dict[str, Any]
    reprocess: bool = False
    origin: dict[str, Any] | None = None


class Spec(_Body):
    spec: dict[str, Any]


class ApplyDocument(_Body):
    spec: dict[str, Any] = Field(
        description="A pipeline spec (kind: pipeline, the default) or a repo (kind: repo)."
    )
    source: str = Field("", description="The file (and document) it came from, for messages.")
    origin: dict[str, Any] = Field(
        default_factory=dict,
        description="Recorded with a pipeline version: spec_file, working_dir, git (sha, "
        "remote, branch, dirty).",
    )


class Apply(_Body):
    documents: list[ApplyDocument]
    prune: bool = Field(False, description="Delete pipelines that no document declares.")
    dry_run: bool = Field(False, description="Only return the plan; change nothing.")
    reprocess: bool = Field(False, description="Updated pipelines rerun every datum.")


class TokenCreate(_Body):
    principal: str | None = Field(
        None, description="user:NAME, robot:NAME or pipeline:NAME (default: the caller)."
    )
    ttl: float | None = Field(None, description="Seconds until it expires (default: never).")
    description: str = Field("", max_length=500)
    s3: bool = Field(
        False,
        description=(
            "Also an S3 key pair: the answer's s3 holds the access key id and secret access "
            "key for the S3 gateway."
        ),
    )


class DatumRestart(_Body):
    data_filters: list[str] = Field(
        default_factory=list,
        description="Datum ids (or prefixes), input file paths or content hashes; none: every "
        "running datum of the job.",
    )


class SignIn(_Body):
    token: str = Field(min_length=1, max_length=512, description="A token: tusk_<id>_<secret>.")


class RolesSet(_Body):
    principal: str = Field(description="user:NAME, robot:NAME or pipeline:NAME.")
    roles: list[str] = Field(
        max_length=8, description="The roles it has there from now on ([] or ['none']: none)."
    )


class DatumClaim(_Body):
    worker: str = Field(
        description="The worker's name (1-100 letters, digits, '.', '_' or '-'), part of its "
        "lease: the host and process, or the pod."
    )
    limit: int = Field(1, description="At most this many datums (1-32), of one job.")


class LeaseRenew(_Body):
    lease: str = Field(description="The lease a claim returned.")
    datums: list[str] = Field(description="The ids of the datums it holds and still runs.")
