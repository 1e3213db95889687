"""The client-wide current project, shared by both transports.

``Client(project="research")`` (default: ``$TUSK_PROJECT``, else the config file's) makes a
bare repo or pipeline name mean ``research/name``, as ``pachctl --project`` does. A name that
already names its project (``default/images``, ``other/images``) is left alone, and the
``default`` project changes nothing: its repos are stored bare.
"""

from __future__ import annotations

from typing import Any

from tusk.ids import DEFAULT_PROJECT, check_project_name, qualify
from tusk.pfs.refs import Address, parse_address


def current_project(project: str | None) -> str:
    """``project``, else the ``project`` setting, else ``default``; checked."""
    from tusk.config import setting

    chosen = setting("project", project) or DEFAULT_PROJECT
    return check_project_name(chosen)


def qualify_address(project: str, text: str) -> str:
    """``repo@ref:/path`` with a bare repo qualified by ``project`` (text otherwise as is)."""
    if not text or project == DEFAULT_PROJECT:
        return text
    end = min((i for i in (text.find("@"), text.find(":")) if i >= 0), default=len(text))
    repo = text[:end]
    if not repo or "/" in repo:
        return text
    return qualify(project, repo) + text[end:]


def with_project(project: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A pipeline spec (dict) in ``project`` unless it names one (``pipeline.project``)."""
    if project == DEFAULT_PROJECT or not isinstance(spec, dict):
        return spec
    pipeline = spec.get("pipeline")
    if not isinstance(pipeline, dict) or "project" in pipeline:
        return spec
    return {**spec, "pipeline": {**pipeline, "project": {"name": project}}}


class ProjectScope:
    """``project`` and the helpers that qualify what a caller names with it."""

    project: str = DEFAULT_PROJECT

    def _repo(self, name: str) -> str:
        """A repo (or pipeline) name in the current project."""
        return qualify(self.project, name) if isinstance(name, str) and name else name

    def _address(self, text: str) -> str:
        """An address's text with its repo in the current project."""
        return qualify_address(self.project, text)

    def _parse(self, text: str) -> Address:
        """``parse_address`` of an address in the current project."""
        return parse_address(self._address(text))

    def _job(self, address: str) -> str:
        """``pipeline@job`` with the pipeline in the current project (a bare job id as is)."""
        if "@" not in address:
            return address
        pipeline, _, job = address.partition("@")
        return f"{self._repo(pipeline)}@{job}" if pipeline else address

    def _spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A spec dict in the current project unless it names one."""
        return with_project(self.project, spec)

    def _document(self, spec: dict[str, Any]) -> dict[str, Any]:
        """An apply document: a pipeline spec gets the project, a repo its qualified name."""
        if self.project == DEFAULT_PROJECT or not isinstance(spec, dict):
            return spec
        kind = spec.get("kind", "pipeline")
        if kind == "repo" and isinstance(spec.get("name"), str):
            return {**spec, "name": self._repo(spec["name"])}
        return self._spec(spec) if kind == "pipeline" else spec
