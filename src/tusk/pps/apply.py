"""``tusk apply``: make the repos and pipelines match a set of declared documents (GitOps).

Documents are Pachyderm pipeline specs (``kind: pipeline`` or no ``kind``), repo
declarations::

    kind: repo
    name: images
    description: raw images
    branches: [master, staging]

and checks that gate commits and merges of a repo's branches (``kind: check``, see
:mod:`tusk.pps.checks`).

Apply plans first and changes nothing until every document is valid, every input is either
stored or declared, and the pipelines form no cycle: all problems are reported together.
Then it runs the whole plan in one metadata transaction (``MetaStore.atomic``): repos and
branches first, pruned pipelines next (consumers before producers), then pipelines in graph
order (producers before consumers). If any step fails, nothing of the apply remains.

A pipeline whose canonical spec equals its current version's is left alone: no new version,
no job. So applying the same files twice changes nothing the second time. Only ``prune``
deletes pipelines that no document declares; repos are never deleted by apply.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tusk.auth.permissions import REPO_OWN, REPO_READ
from tusk.auth.service import AuthService, Caller
from tusk.errors import InvalidSpec, TuskError
from tusk.ids import check_branch_name, check_repo_name
from tusk.pps.checks import CheckSpec, parse_check
from tusk.pps.models import ApplyChange, ApplyResult
from tusk.pps.spec import CronInput, PipelineSpec, load_spec, parse_specs, render_jsonnet

if TYPE_CHECKING:
    from tusk.pps.service import PpsService


class RepoDoc(BaseModel):
    """A declared repo: created if missing, its description and branches kept as declared."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "repo"
    name: str
    description: str = ""
    branches: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_repo_name(value)

    @field_validator("branches")
    @classmethod
    def _branches(cls, value: list[str]) -> list[str]:
        return [check_branch_name(b) for b in value]


@dataclass
class Document:
    """One document to apply: its parsed content, where it came from, and its origin facts
    (spec file, git commit...) that a pipeline version records."""

    spec: dict[str, Any]
    source: str = ""
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pipeline:
    spec: PipelineSpec
    doc: Document


@dataclass
class _Plan:
    repos: list[tuple[RepoDoc, Document]]
    pipelines: list[_Pipeline]  # in graph order: producers first
    changes: list[ApplyChange]
    prune: list[str]  # pipelines to delete, consumers first
    checks: list[tuple[CheckSpec, Document]] = field(default_factory=list)
    prune_checks: dict[str, str] = field(default_factory=dict)  # checks to delete -> repo


@dataclass
class _Parsed:
    repos: list[tuple[RepoDoc, Document]]
    pipelines: list[_Pipeline]
    checks: list[tuple[CheckSpec, Document]]


SPEC_SUFFIXES = (".yaml", ".yml", ".json")
TEMPLATE_SUFFIX = ".jsonnet"
#: ``edges.jsonnet`` takes its arguments from ``edges.args.yaml`` beside it.
ARGS_SUFFIX = ".args.yaml"


def spec_files(top: Path, keep: Callable[[Path], bool] = Path.is_file) -> list[Path]:
    """Every ``*.yaml``, ``*.yml``, ``*.json`` and ``*.jsonnet`` below ``top`` that ``keep``
    accepts, in path order, leaving out hidden files and folders and the ``*.args.yaml``
    files that hold a template's arguments."""
    return [
        p
        for p in sorted(top.rglob("*"))
        if (p.suffix in SPEC_SUFFIXES or p.suffix == TEMPLATE_SUFFIX)
        and not p.name.endswith(ARGS_SUFFIX)
        and keep(p)
        and not any(part.startswith(".") for part in p.relative_to(top).parts)
    ]


def template_args_file(template: Path) -> Path:
    """Where a template's arguments are kept: ``x.jsonnet`` -> ``x.args.yaml``."""
    return template.with_name(template.name[: -len(TEMPLATE_SUFFIX)] + ARGS_SUFFIX)


def template_args(
    template: Path, label: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A template's arguments: its ``.args.yaml`` (a mapping name -> value), if any, with
    ``overrides`` (``tusk apply --arg``) winning over it."""
    args: dict[str, Any] = {}
    file = template_args_file(template)
    if file.is_file():
        where = (
            label[: -len(TEMPLATE_SUFFIX)] + ARGS_SUFFIX
            if label.endswith(TEMPLATE_SUFFIX)
            else str(file)
        )
        try:
            data = yaml.safe_load(file.read_bytes())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
            problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
            raise InvalidSpec(f"{at}: invalid YAML: {problem}; fix the syntax there") from None
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise InvalidSpec(f"{where}: the arguments of {label} must be a mapping of name: value")
        args.update(data)
    args.update(overrides or {})
    return args


def documents_of(
    files: Iterable[tuple[Path, str, dict[str, Any]]],
    *,
    jsonnet_args: Mapping[str, Any] | None = None,
) -> list[Document]:
    """The documents of spec files given as (file, label, origin); every parse problem in all
    of them raised together. A file of several documents labels each one. A ``*.jsonnet``
    file is rendered with its ``.args.yaml`` and ``jsonnet_args`` (which win; each is given
    to the templates that have such a parameter)."""
    docs: list[Document] = []
    problems: list[str] = []
    for file, label, origin in files:
        try:
            if file.suffix == TEMPLATE_SUFFIX:
                args = template_args(file, label, jsonnet_args)
                optional = set(jsonnet_args or ())
                specs = render_jsonnet(file, args, source=label, optional=optional)
            else:
                specs = parse_specs(file.read_bytes(), label)
        except InvalidSpec as exc:
            problems.append(exc.message)
            continue
        for i, spec in enumerate(specs, 1):
            name = label if len(specs) == 1 else f"{label} (document {i} of {len(specs)})"
            docs.append(Document(spec, name, origin))
    if problems:
        raise all_problems(problems)
    return docs


def apply_documents(
    pps: PpsService,
    docs: list[Document],
    *,
    prune: bool = False,
    dry_run: bool = False,
    reprocess: bool = False,
    caller: Caller | None = None,
    edge: str = "rest",
) -> ApplyResult:
    """Plan, and unless ``dry_run`` carry out, the documents in one transaction.

    With a ``caller`` (auth on), the plan is checked first, inside that transaction: an
    updated or deleted pipeline needs repoOwner on its repo, a created or updated one read on
    its inputs. Then repos created are owned by the caller, and each pipeline's identity
    may read its inputs and write its repo.
    """
    parsed = _parse(docs)
    warnings = sorted(
        {
            f"{d.origin['git'].get('root', d.source)} has uncommitted changes: recorded as dirty"
            for d in docs
            if (d.origin.get("git") or {}).get("dirty")
        }
    )
    guard = _Guard(AuthService(pps.meta), caller, edge) if caller and caller.active else None
    if dry_run:
        plan = _plan(pps, parsed, prune, reprocess)
        if guard is not None:
            guard.check(plan)
        return ApplyResult(True, plan.changes, warnings=warnings)
    started: list[str] = []
    try:
        with pps.meta.atomic():
            plan = _plan(pps, parsed, prune, reprocess)
            if guard is not None:
                guard.check(plan)
            try:
                _carry_out(pps, plan, reprocess, started)
            except TuskError as exc:
                raise type(exc)(f"{exc.message} (nothing was applied)") from exc
            if guard is not None:
                guard.grant(plan)
    finally:
        if guard is not None:
            guard.auth.flush_audit()
    jobs = _jobs_started(pps, started)
    return ApplyResult(
        False,
        plan.changes,
        sorted({cs for _, cs in jobs}),
        [f"{p}@{cs}" for p, cs in jobs],
        warnings,
    )


@dataclass
class _Guard:
    """What an apply's plan needs of its caller, checked by the one gate."""

    auth: AuthService
    caller: Caller
    edge: str

    def _inputs(self, spec: PipelineSpec) -> set[str]:
        return {leaf.repo for leaf in spec.inputs() if not isinstance(leaf, CronInput)}

    def check(self, plan: _Plan) -> None:
        specs = {p.spec.name: p.spec for p in plan.pipelines}
        # Repos this apply creates (declared ones, new pipelines' outputs) are the caller's.
        made = {c.name for c in plan.changes if c.kind != "check" and c.action == "create"}
        checks_repos = {spec.name: spec.repo for spec, _ in plan.checks} | plan.prune_checks
        for change in plan.changes:
            if change.kind == "repo" and change.action == "update":  # its description
                self.auth.require(self.caller, REPO_OWN, change.name, edge=self.edge,
                                  operation="apply")  # fmt: skip
            if change.kind == "check" and change.action in ("create", "update", "delete"):
                repo = checks_repos[change.name]  # a check gates its repo: the owner's call
                if repo not in made:
                    self.auth.require(self.caller, REPO_OWN, repo, edge=self.edge,
                                      operation="apply")  # fmt: skip
            if change.kind != "pipeline" or change.action in ("unchanged", "unmanaged"):
                continue
            if change.action in ("update", "delete"):
                self.auth.require(self.caller, REPO_OWN, change.name, edge=self.edge,
                                  operation="apply")  # fmt: skip
            if change.name in specs and change.action != "delete":
                for repo in sorted(self._inputs(specs[change.name]) - made):
                    self.auth.require(self.caller, REPO_READ, repo, edge=self.edge,
                                      operation="apply")  # fmt: skip

    def grant(self, plan: _Plan) -> None:
        specs = {p.spec.name: p.spec for p in plan.pipelines}
        for change in plan.changes:
            if change.kind == "repo" and change.action == "create":
                self.auth.grant_creator(self.caller, change.name)
            elif change.kind == "pipeline" and change.action in ("create", "update"):
                inputs = self._inputs(specs[change.name])
                self.auth.grant_pipeline(self.caller, change.name, inputs)
            elif change.kind == "pipeline" and change.action == "delete":
                self.auth.forget_repo(change.name)


def _parse(docs: list[Document]) -> _Parsed:
    """Every document checked; every problem in all of them raised together."""
    problems: list[str] = []
    repos: list[tuple[RepoDoc, Document]] = []
    pipelines: list[_Pipeline] = []
    checks: list[tuple[CheckSpec, Document]] = []
    for doc in docs:
        label = doc.source or "document"
        kind = doc.spec.get("kind", "pipeline")
        if kind == "repo":
            try:
                repos.append((RepoDoc.model_validate(doc.spec), doc))
            except ValidationError as exc:
                problems.append(f"{label}: invalid repo: {_first_errors(exc)}")
            except TuskError as exc:
                problems.append(f"{label}: {exc.message}")
        elif kind == "pipeline":
            body = {k: v for k, v in doc.spec.items() if k != "kind"}
            try:
                pipelines.append(_Pipeline(load_spec(body, label), doc))
            except InvalidSpec as exc:
                problems.append(exc.message)
        elif kind == "check":
            try:
                checks.append((parse_check(doc.spec, label), doc))
            except InvalidSpec as exc:
                problems.append(exc.message)
        else:
            problems.append(f"{label}: unknown kind {kind!r}; use 'repo', 'pipeline' or 'check'")
    _no_twice([r.name for r, _ in repos], "repo", problems)
    _no_twice([p.spec.name for p in pipelines], "pipeline", problems)
    _no_twice([c.name for c, _ in checks], "check", problems)
    if problems:
        raise all_problems(problems)
    return _Parsed(repos, pipelines, checks)


def _no_twice(names: list[str], kind: str, problems: list[str]) -> None:
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{kind} {name} is declared more than once")


def _first_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()
    )


def all_problems(problems: list[str]) -> InvalidSpec:
    """One InvalidSpec naming every problem (and that nothing was applied)."""
    if len(problems) == 1:
        return InvalidSpec(f"{problems[0]} (nothing was applied)")
    listed = " | ".join(f"[{i}] {p}" for i, p in enumerate(problems, 1))
    return InvalidSpec(f"{len(problems)} problems, nothing was applied: {listed}")


def _plan(pps: PpsService, parsed: _Parsed, prune: bool, reprocess: bool) -> _Plan:
    repos, pipelines = parsed.repos, parsed.pipelines
    problems: list[str] = []
    changes: list[ApplyChange] = []
    existing_repos = {r.name: r for r in pps.pfs.list_repos()}
    existing = {p.name: p for p in pps.list_pipelines()}
    declared = {p.spec.name for p in pipelines}
    for repo, doc in repos:
        have = existing_repos.get(repo.name)
        if repo.name in existing or repo.name in declared:
            problems.append(f"{doc.source}: repo {repo.name} is a pipeline's output repo")
        elif have is None:
            changes.append(ApplyChange("repo", repo.name, "create", doc.source))
        elif have.description != repo.description or set(repo.branches) - set(have.branches):
            changes.append(ApplyChange("repo", repo.name, "update", doc.source))
        else:
            changes.append(ApplyChange("repo", repo.name, "unchanged", doc.source))
    known = set(existing_repos) | {r.name for r, _ in repos} | declared
    pruned = sorted(set(existing) - declared) if prune else []
    reads = {name: _input_repos(p.spec) for name, p in existing.items()}
    for p in pipelines:
        for leaf in p.spec.inputs():
            if isinstance(leaf, CronInput):
                continue
            if leaf.repo not in known or leaf.repo in pruned:
                problems.append(
                    f"{p.doc.source}: pipeline {p.spec.name} reads repo {leaf.repo}, "
                    "which neither exists nor is declared (add a 'kind: repo' document)"
                )
    ordered = _graph_order(pipelines, problems)
    stored_checks = {c.name: c for c in pps.list_checks()}
    for check, doc in parsed.checks:
        if check.repo not in known or check.repo in declared or check.repo in existing:
            what = "a pipeline's output" if check.repo in known else "neither stored nor declared"
            problems.append(
                f"{doc.source}: check {check.name} gates repo {check.repo}, which is {what} "
                "(checks gate input repos: declare it with 'kind: repo')"
            )
        if check.pipeline is not None:
            specs = {p.spec.name: p.spec for p in pipelines}
            spec = specs.get(check.pipeline)
            if spec is None and check.pipeline in existing and check.pipeline not in pruned:
                spec = load_spec(existing[check.pipeline].spec)
            if spec is None:
                problems.append(
                    f"{doc.source}: check {check.name} runs pipeline {check.pipeline}, which "
                    "neither exists nor is declared"
                )
            elif check.repo not in {x.repo for x in spec.inputs() if not isinstance(x, CronInput)}:
                problems.append(
                    f"{doc.source}: check {check.name} runs pipeline {check.pipeline}, which "
                    f"does not read {check.repo}"
                )
    for name in pruned:
        for other in existing.values():
            if other.name in pruned:
                continue
            if name in reads[other.name] and other.name not in declared:
                problems.append(
                    f"pipeline {name} would be pruned but unmanaged pipeline {other.name} reads it"
                )
    if problems:
        raise all_problems(problems)
    for p in ordered:
        name = p.spec.name
        current = existing.get(name)
        new_text = json.dumps(p.spec.canonical(), sort_keys=True)
        if current is None:
            changes.append(ApplyChange("pipeline", name, "create", p.doc.source, version=1))
        elif json.dumps(current.spec, sort_keys=True) == new_text:
            changes.append(
                ApplyChange("pipeline", name, "unchanged", p.doc.source, version=current.version)
            )
        else:
            changes.append(
                ApplyChange(
                    "pipeline",
                    name,
                    "update",
                    p.doc.source,
                    _spec_diff(name, current.spec, p.spec.canonical()),
                    current.version + 1,
                    reprocess or p.spec.reprocess_spec == "every_job",
                )
            )
    for name in pruned:
        changes.append(ApplyChange("pipeline", name, "delete", version=existing[name].version))
    for name in sorted(set(existing) - declared - set(pruned)):
        changes.append(ApplyChange("pipeline", name, "unmanaged", version=existing[name].version))
    for check, doc in parsed.checks:
        stored = stored_checks.get(check.name)
        if stored is None:
            action = "create"
        elif _same_check(stored, check):
            action = "unchanged"
        else:
            action = "update"
        changes.append(ApplyChange("check", check.name, action, doc.source))
    declared_checks = {c.name for c, _ in parsed.checks}
    gone = sorted(set(stored_checks) - declared_checks)
    for name in gone:
        changes.append(ApplyChange("check", name, "delete" if prune else "unmanaged"))
    prune_checks = {name: stored_checks[name].repo for name in gone} if prune else {}
    return _Plan(
        repos, ordered, changes, _consumers_first(pruned, reads), parsed.checks, prune_checks
    )


def _same_check(have: CheckSpec, new: CheckSpec) -> bool:
    """Whether ``new`` declares what is stored (the digest ``have`` pinned aside, unless the
    declared image changed)."""
    return have.model_copy(update={"image_digest": None}).canonical() == new.canonical()


def _input_repos(spec: dict[str, Any]) -> set[str]:
    return {leaf.repo for leaf in load_spec(spec).inputs() if not isinstance(leaf, CronInput)}


def _graph_order(pipelines: list[_Pipeline], problems: list[str]) -> list[_Pipeline]:
    """Pipelines with every producer before its consumers (a cycle is a problem)."""
    by_name = {p.spec.name: p for p in pipelines}
    order: list[_Pipeline] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            problems.append(f"pipelines form a cycle: {cycle}")
            return
        state[name] = "visiting"
        p = by_name[name]
        for leaf in p.spec.inputs():
            if not isinstance(leaf, CronInput) and leaf.repo in by_name:
                visit(leaf.repo, [*trail, name])
        state[name] = "done"
        order.append(p)

    for name in by_name:
        visit(name, [])
    return order


def _consumers_first(pruned: list[str], reads: dict[str, set[str]]) -> list[str]:
    left = list(pruned)
    order: list[str] = []
    while left:
        # A pipeline nobody left in the list reads can go now.
        free = [n for n in left if not any(n in reads[o] for o in left)]
        free = free or left[:1]
        order.extend(free)
        left = [n for n in left if n not in free]
    return order


def _spec_diff(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    def lines(spec: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(spec, sort_keys=True, default_flow_style=False).splitlines(True)

    return "".join(
        difflib.unified_diff(lines(old), lines(new), f"{name} (current)", f"{name} (applied)", n=2)
    )


def _carry_out(pps: PpsService, plan: _Plan, reprocess: bool, started: list[str]) -> None:
    pfs = pps.pfs
    for repo, _doc in plan.repos:
        pfs.create_repo(repo.name, repo.description, update=True)
        have = set(pfs.inspect_repo(repo.name).branches)
        for branch in repo.branches:
            if branch not in have:
                pfs.create_branch(repo.name, branch)
    for name in plan.prune:
        pps.delete_pipeline(name, force=True)
    actions = {(c.kind, c.name): c for c in plan.changes}
    for name in plan.prune_checks:
        pps.delete_check(name)
    for check, doc in plan.checks:
        if actions[("check", check.name)].action == "unchanged":
            continue
        try:
            pps.put_check(check)
        except TuskError as exc:
            where = f"{doc.source}: " if doc.source else ""
            raise type(exc)(f"{where}check {check.name}: {exc.message}") from exc
    for p in plan.pipelines:
        change = actions[("pipeline", p.spec.name)]
        if change.action == "unchanged":
            continue
        try:
            pps.create_pipeline(
                p.spec,
                origin=p.doc.origin,
                update=change.action == "update",
                reprocess=change.reprocess or reprocess,
            )
        except TuskError as exc:
            where = f"{p.doc.source}: " if p.doc.source else ""
            raise type(exc)(f"{where}pipeline {change.name}: {exc.message}") from exc
        started.append(p.spec.name)


def _jobs_started(pps: PpsService, names: list[str]) -> list[tuple[str, str]]:
    """(pipeline, commit set) of the open output commit each created or updated pipeline got."""
    out: list[tuple[str, str]] = []
    for name in names:
        spec, _salt, _origin = pps.spec_of(name)
        head = pps.pfs.inspect_branch(name, spec.output_branch).head
        if head is None:
            continue
        commit = pps.pfs.inspect_commit(name, head)
        if not commit.finished:
            out.append((name, commit.commit_set))
    return out
