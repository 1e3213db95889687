"""Pipeline specs for ``tusk deploy``: files, folders or stdin, read as ``tusk apply -f``
reads them and checked as ``tusk create pipeline`` checks them (the same messages).

A folder gives every ``*.yaml``, ``*.yml`` and ``*.json`` below it in path order, leaving
out hidden files and folders, so the folder that ``tusk apply -f`` applies deploys too:
``kind: repo`` documents are skipped (a repo needs no manifest). Jsonnet templates are
refused with a hint instead of being skipped: rendering them needs their arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tusk.errors import InvalidArgument, InvalidSpec, SourceError
from tusk.ids import DEFAULT_PROJECT
from tusk.pps.spec import PipelineSpec, load_spec, parse_specs
from tusk.values import frozen

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
TEMPLATE_SUFFIX = ".jsonnet"
ARGS_SUFFIX = ".args.yaml"  # a template's arguments (tusk.pps.apply), not a spec


@frozen
class SourcedSpec:
    """A checked spec and where it was read (the label its error messages start with)."""

    spec: PipelineSpec
    source: str


def _refuse_template(label: str) -> InvalidArgument:
    return InvalidArgument(
        f"{label}: Jsonnet templates are not read by tusk deploy; render it first "
        "(e.g. jsonnet --tla-str name=value FILE > spec.json) and give the JSON"
    )


def _files(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    """(label, bytes) of every spec file the paths name, in order."""
    out: list[tuple[str, bytes]] = []
    for given in paths:
        if given == "-":
            out.append(("<stdin>", sys.stdin.buffer.read()))
            continue
        path = Path(given)
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and (p.suffix in SPEC_SUFFIXES or p.suffix == TEMPLATE_SUFFIX)
                and not p.name.endswith(ARGS_SUFFIX)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not found:
                raise SourceError(f"{given!r} holds no .yaml, .yml or .json spec files")
            for file in found:
                if file.suffix == TEMPLATE_SUFFIX:
                    raise _refuse_template(str(file))
                out.append((str(file), file.read_bytes()))
        elif path.is_file():
            if path.suffix == TEMPLATE_SUFFIX:
                raise _refuse_template(given)
            out.append((given, path.read_bytes()))
        else:
            raise SourceError(f"no such spec file or folder {given!r}")
    return out


def _in_project(project: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec in ``project`` unless it names one (as ``tusk create pipeline --project``)."""
    pipeline = spec.get("pipeline")
    if project == DEFAULT_PROJECT or not isinstance(pipeline, dict) or "project" in pipeline:
        return spec
    return {**spec, "pipeline": {**pipeline, "project": {"name": project}}}


def read_pipeline_specs(paths: Sequence[str], project: str = DEFAULT_PROJECT) -> list[SourcedSpec]:
    """Every pipeline spec of the files and folders, checked; every problem raised at once.

    Raises InvalidSpec (one line; several problems joined by `` | ``), SourceError for a
    path that is not there, InvalidArgument for a template.
    """
    problems: list[str] = []
    out: list[SourcedSpec] = []
    for label, data in _files(paths):
        try:
            docs = parse_specs(data, label)
        except InvalidSpec as exc:
            problems.append(exc.message)
            continue
        for i, doc in enumerate(docs, 1):
            # Labelled as tusk create pipeline labels them, so the messages are the same.
            where = label if len(docs) == 1 else f"{label} (spec {i} of {len(docs)})"
            kind = doc.get("kind", "pipeline")
            if kind == "repo":
                continue
            if kind != "pipeline":
                problems.append(f"{where}: unknown kind {kind!r}; use 'repo' or 'pipeline'")
                continue
            body = {k: v for k, v in doc.items() if k != "kind"}
            try:
                out.append(SourcedSpec(load_spec(_in_project(project, body), where), where))
            except InvalidSpec as exc:
                problems.append(exc.message)
    seen: dict[str, str] = {}
    for item in out:
        name = item.spec.name
        if name in seen:
            problems.append(f"pipeline {name} is defined twice: in {seen[name]} and {item.source}")
        seen.setdefault(name, item.source)
    if len(problems) == 1:
        raise InvalidSpec(problems[0])
    if problems:
        listed = " | ".join(f"[{i}] {p}" for i, p in enumerate(problems, 1))
        raise InvalidSpec(f"{len(problems)} problems: {listed}")
    return out
