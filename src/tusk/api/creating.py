"""Creating repos, projects and pipelines for a caller, as every edge does it (REST and
Pachyderm's gRPC API): the checks beyond an operation's own rule, the grants that follow (a
creator owns what it made; a pipeline reads its inputs and writes its output repo) and the
audit entry. The rule itself was passed before (``AuthService.authorize``).
"""

from __future__ import annotations

from typing import Any

from tusk.auth.permissions import PROJECT_OWN, REPO_CREATE, REPO_OWN, REPO_READ
from tusk.auth.service import AuthService, Caller
from tusk.pfs.models import ProjectInfo, RepoInfo
from tusk.pfs.service import PfsService
from tusk.pps.models import PipelineInfo
from tusk.pps.service import PpsService
from tusk.pps.spec import CronInput, PipelineSpec


def create_repo(
    pfs: PfsService, auth: AuthService, caller: Caller, name: str, description: str,
    update: bool, *, edge: str, operation: str,
) -> RepoInfo:  # fmt: skip
    """A repo (``update``: or its new description: the owner's); its creator owns it, and
    outside project default it needs projectWriter there."""
    exists = update and name in {r.name for r in pfs.list_repos()}
    auth.require(caller, REPO_OWN if exists else REPO_CREATE, name, edge=edge, operation=operation)
    info = pfs.create_repo(name, description, update)
    if not exists:
        auth.grant_creator(caller, info.name)
    auth.audit_event(caller, edge, operation, "repo", name, description[:200])
    return info


def create_project(
    pfs: PfsService, auth: AuthService, caller: Caller, name: str, description: str,
    update: bool, *, edge: str, operation: str,
) -> ProjectInfo:  # fmt: skip
    """A project (``update``: or its new description: the owner's); its creator owns it."""
    exists = update and name in {p.name for p in pfs.list_projects()}
    if exists:
        auth.require(caller, PROJECT_OWN, name, edge=edge, operation=operation)
    info = pfs.create_project(name, description, update)
    if not exists:
        auth.grant_project_creator(caller, info.name)
    auth.audit_event(caller, edge, operation, "project", info.name, description[:200])
    return info


def input_repos(spec: PipelineSpec) -> set[str]:
    """The repos a spec reads (a cron input's repo is the pipeline's own making)."""
    return {leaf.repo for leaf in spec.inputs() if not isinstance(leaf, CronInput)}


def may_read_inputs(
    auth: AuthService, caller: Caller, spec: PipelineSpec, *, edge: str, operation: str
) -> set[str]:
    """With auth on, the spec's input repos, each checked for read (else nothing)."""
    if not caller.active:
        return set()
    inputs = input_repos(spec)
    for repo in sorted(inputs):
        auth.require(caller, REPO_READ, repo, edge=edge, operation=operation)
    return inputs


def may_create_pipeline(
    pps: PpsService, auth: AuthService, caller: Caller, spec: PipelineSpec, update: bool,
    *, edge: str, operation: str,
) -> set[str]:  # fmt: skip
    """Read on every input; replacing an existing pipeline is its owner's. The inputs."""
    inputs = may_read_inputs(auth, caller, spec, edge=edge, operation=operation)
    if caller.active and update and spec.name in {p.name for p in pps.list_pipelines()}:
        auth.require(caller, REPO_OWN, spec.name, edge=edge, operation=operation)
    return inputs


def create_pipeline(
    pps: PpsService, auth: AuthService, caller: Caller, spec: PipelineSpec, *, update: bool,
    reprocess: bool, origin: dict[str, Any] | None, edge: str, operation: str,
) -> PipelineInfo:  # fmt: skip
    """Create (``update``: or replace) a pipeline for ``caller``: see :func:`may_create_pipeline`;
    the creator owns the output repo, and the pipeline's identity may read its inputs and
    write that repo."""
    inputs = may_create_pipeline(pps, auth, caller, spec, update, edge=edge, operation=operation)
    info = pps.create_pipeline(spec, origin=origin, update=update, reprocess=reprocess)
    auth.grant_pipeline(caller, info.name, inputs)
    auth.audit_event(caller, edge, operation, "repo", info.name, f"v{info.version}")
    return info
