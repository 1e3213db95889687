"""``tusk report BASE..HEAD``: what a change did to the data, the jobs and the metrics.

A report compares two refs across the repos of the graph, for a pull request comment (as
``dvc metrics diff`` does for metrics, with the data diff and the jobs next to it):

- BASE and HEAD are each ``repo@ref`` (one repo) or a bare name: a branch (``master``,
  ``pr-12``, ``master^1``) or a commit set id, applied to every repo that has it. A repo is
  in the report when HEAD names a commit in it; a repo without BASE counts as empty there
  (every file is added).
- Files: per repo, the added, removed and changed files with their sizes, counted in full
  and listed up to ``max_rows``.
- Jobs: those of the commit sets of the commits HEAD's history has and BASE's lacks: every
  job whose output commit only HEAD has, and the ones HEAD's changes started that failed
  or were killed (their output commit is dropped) or still run.
- Metrics: files matching the metrics globs that changed, read as JSON or YAML on both
  sides, their numbers flattened to dotted keys (``train.loss``) and compared.
- Checks: the runs of the checks (``kind: check``) on HEAD's commit in each repo, and on its
  open head when that is ahead (a check that failed on ``tusk finish commit`` keeps it open):
  name, state, exit code, duration, and the end of the log of each run that did not pass. A
  commit no check ran on adds nothing (one lookup per repo), and no run, no section.

For GitHub Actions, :func:`github_outputs` gives the check runs as step outputs, and
:func:`commit_statuses` and :func:`post_commit_statuses` turn them into commit statuses
(``tusk/check/<name>``) on the workflow's commit (:class:`GitHubContext`).

Everything goes through public :class:`~tusk.sdk.Client` methods, so a report is the same
in-process and over HTTP. Each side is pinned to a commit id first: a branch that moves
while the report is made does not mix two states.
"""

from __future__ import annotations

import heapq
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wcmatch import glob as wglob

from tusk.errors import BranchNotFound, CommitNotFound, InvalidArgument, NotFound
from tusk.pfs.models import _Dict
from tusk.pfs.refs import parse_address, parse_ref
from tusk.units import human_size
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pfs.models import CheckRunInfo
    from tusk.sdk import Client, CommitInfo, JobInfo

DEFAULT_METRICS = ("metrics.json", "metrics.yaml", "metrics.yml", "*.metrics.json")
"""Metrics files looked at by default: a pattern without ``/`` matches a name anywhere."""

DEFAULT_MAX_ROWS = 50
MAX_METRICS_BYTES = 16 * 1024 * 1024  # a metrics file bigger than this is not read
_DONE_BADLY = ("failure", "killed")
CHECK_LOG_LINES = 15  # of a check's log a report shows for a run that did not pass
_GLOB_FLAGS = wglob.GLOBSTAR | wglob.DOTGLOB
_BACKTICKS = re.compile(r"`+")


# What a report holds


@frozen
class FileChange(_Dict):
    """One file added, removed or changed; sizes in bytes, ``None`` on the side it is absent."""

    path: str
    change: str  # "added", "removed" or "changed"
    old_size: int | None
    new_size: int | None

    @property
    def delta(self) -> int:
        return (self.new_size or 0) - (self.old_size or 0)


@frozen
class RepoDiff(_Dict):
    """One repo's files from BASE to HEAD: counts over every change, the first ``files``."""

    repo: str
    base: str | None  # the commit id BASE names here; None: the repo has no BASE
    head: str
    base_size: int
    head_size: int
    added: int = 0
    removed: int = 0
    changed: int = 0
    size_delta: int = 0
    files: list[FileChange] = field(default_factory=list)
    more: int = 0  # changes not listed in ``files``

    @property
    def total(self) -> int:
        return self.added + self.removed + self.changed


@frozen
class JobRow(_Dict):
    """A job of HEAD's side, with its datum counts and how long it ran (seconds)."""

    pipeline: str
    id: str
    state: str
    reason: str
    output_commit: str
    datums_total: int
    processed: int
    skipped: int
    failed: int
    started_at: float | None
    finished_at: float | None
    duration: float | None


@frozen
class MetricChange(_Dict):
    """One numeric key of a metrics file; ``None`` on the side that lacks it."""

    repo: str
    path: str
    key: str
    old: float | None
    new: float | None
    change: float | None  # new - old, when both are there
    change_pct: float | None  # the change in percent of |old|, when old is not zero

    @property
    def differs(self) -> bool:
        return self.old != self.new


@frozen
class CheckRow(_Dict):
    """A check's run on a commit of HEAD (before it became a branch's head, or on an open
    head it kept open): state passed, failed, timed out or error, its exit code, how long it
    took (seconds) and, when it did not pass, the last lines of its log."""

    repo: str
    commit: str
    name: str
    branch: str
    trigger: str  # "commit" or "merge"
    state: str
    exit_code: int | None
    started_at: float
    duration: float
    log_tail: str  # empty for a run that passed

    @property
    def passed(self) -> bool:
        return self.state == "passed"


@frozen
class Report(_Dict):
    """A comparison of BASE and HEAD; :func:`render_markdown` turns it into a PR comment."""

    base: str
    head: str
    repos: list[RepoDiff] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Totals for the summary line (and for scripts: ``-o json`` has them too)."""
        states: dict[str, int] = {}
        for j in self.jobs:
            states[j.state] = states.get(j.state, 0) + 1
        return {
            "repos": len(self.repos),
            "repos_changed": sum(1 for r in self.repos if r.total),
            "files_added": sum(r.added for r in self.repos),
            "files_removed": sum(r.removed for r in self.repos),
            "files_changed": sum(r.changed for r in self.repos),
            "size_delta": sum(r.size_delta for r in self.repos),
            "jobs": len(self.jobs),
            "jobs_succeeded": states.get("success", 0),
            "jobs_failed": sum(states.get(s, 0) for s in _DONE_BADLY),
            "metrics_changed": sum(1 for m in self.metrics if m.differs),
            "checks": len(self.checks),
            "checks_passed": sum(1 for c in self.checks if c.passed),
            "checks_failed": sum(1 for c in self.checks if not c.passed),
        }

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["summary"] = self.summary()
        return out


# Parsing the range


@frozen
class _Side:
    repo: str | None  # None: a bare name, applied to every repo that has it
    ref: str  # as given: ``master^1`` stays so in the report
    text: str


def parse_range(text: str) -> tuple[str, str]:
    """``BASE..HEAD`` -> (BASE, HEAD); raises InvalidArgument for anything else."""
    base, sep, head = text.partition("..")
    if not sep or not base or not head or ".." in head or head.startswith("."):
        raise InvalidArgument(
            f"invalid range {text!r}: use BASE..HEAD, "
            "e.g. master..pr-12 or data@master^1..data@master"
        )
    return base, head


def _parse_side(text: str, which: str) -> _Side:
    if "@" in text:
        addr = parse_address(text)
        if addr.path is not None:
            raise InvalidArgument(
                f"{which} {text!r}: a report compares whole commits; drop ':path'"
            )
        return _Side(addr.repo, text.partition("@")[2], text)
    parse_ref(text)  # InvalidArgument for a malformed ref, before any lookup
    return _Side(None, text, text)


# Building a report


@dataclass
class _Pinned:
    """What one side names in one repo: the commit to read, and the tip its history starts at
    (the same commit, unless the tip is still open)."""

    ref: str  # as the user gave it, for messages
    commit: CommitInfo
    tip: str


def build_report(
    client: Client,
    base: str,
    head: str,
    *,
    repos: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Report:
    """Compare ``base`` and ``head`` (``repo@ref`` or a bare branch name or commit set id).

    ``repos`` limits a report on bare names to those repos; ``metrics`` are the globs of the
    metrics files (default :data:`DEFAULT_METRICS`); ``max_rows`` caps the files listed per
    repo (the counts are always complete). Raises InvalidArgument for a malformed ref,
    RepoNotFound for an unknown repo, and BranchNotFound when BASE or HEAD names nothing.
    """
    if max_rows < 0:
        raise InvalidArgument("max_rows must be 0 or more")
    b = _parse_side(base, "BASE")
    h = _parse_side(head, "HEAD")
    if b.repo and h.repo and b.repo != h.repo:
        raise InvalidArgument(
            f"BASE and HEAD name different repos ({b.repo}, {h.repo}): compare one repo, "
            "or give bare branch names to compare every repo"
        )
    explicit = b.repo or h.repo
    if explicit and repos and explicit not in repos:
        raise InvalidArgument(
            f"--repo {', '.join(repos)} leaves out {explicit}, which the range names"
        )
    if explicit or repos:
        names = [explicit] if explicit else list(dict.fromkeys(repos))
        infos = [client.inspect_repo(name) for name in names]  # RepoNotFound for a typo
    else:
        infos = client.list_repos()
    branches = {r.name: set(r.branches) for r in infos}

    notes: list[str] = []
    heads = _resolve(client, branches, h, "HEAD", notes)
    bases = _resolve(client, branches, b, "BASE", notes)
    order = _provenance_order(
        [heads[r].commit for r in heads] + [bases[r].commit for r in bases if r in heads]
    )
    pins = [(repo, bases.get(repo), heads[repo]) for repo in order]

    globs = tuple(metrics) if metrics is not None else DEFAULT_METRICS
    diffs: list[RepoDiff] = []
    changes: list[MetricChange] = []
    for repo, old, new in pins:
        diff, metric_files = _diff_repo(client, repo, old, new, globs, max_rows)
        diffs.append(diff)
        for entry in metric_files:
            changes.extend(_metric_changes(client, repo, old, new, entry, notes))
    jobs = _head_jobs(client, pins, order)
    checks = _head_checks(client, pins)
    return Report(b.text, h.text, diffs, jobs, changes, notes, checks)


def _resolve(
    client: Client,
    branches: dict[str, set[str]],
    side: _Side,
    which: str,
    notes: list[str],
) -> dict[str, _Pinned]:
    """The commit ``side`` names in each repo that has one.

    A ref that names nothing in any repo is an error; one that names a branch with no
    commits, or an ancestor past the start of the history, leaves that repo out.
    """
    repos = [side.repo] if side.repo else list(branches)
    ref = parse_ref(side.ref)
    found: dict[str, str] = {}  # repo -> the address of the commit the ref names there
    for repo in repos:
        if ref.base in branches[repo]:
            found[repo] = f"{repo}@{side.ref}"
    missing = [r for r in repos if r not in found]
    if missing and _hexish(ref.base):
        suffix = side.ref[len(ref.base) :]
        by_set = _commit_set(client, ref.base)
        for repo in missing:
            if repo in by_set:
                found[repo] = f"{repo}@{by_set[repo]}{suffix}"
            elif not by_set:  # not a commit set: perhaps one repo's commit id
                try:
                    client.inspect_commit(f"{repo}@{ref.base}")
                except NotFound:
                    continue
                found[repo] = f"{repo}@{side.ref}"
    if not found:
        where = f"repo {side.repo}" if side.repo else "any repo"
        raise BranchNotFound(
            f"{which} {side.text} names no branch, commit or commit set in {where}"
        )
    pinned: dict[str, _Pinned] = {}
    for repo, address in found.items():
        try:
            tip = client.inspect_commit(address)
        except CommitNotFound:
            continue  # an empty branch, or fewer ancestors than asked for
        commit = _finished(client, tip)
        if commit is None:
            notes.append(f"{repo}@{side.ref} has no finished commit yet: left out")
            continue
        if commit.id != tip.id:
            notes.append(
                f"{repo}@{side.ref}: commit {tip.id[:12]} is still open; "
                f"its data is compared as of {commit.id[:12]}"
            )
        pinned[repo] = _Pinned(side.ref, commit, tip.id)
    return pinned


def _hexish(text: str) -> bool:
    return len(text) >= 6 and all(c in "0123456789abcdef" for c in text)


def _commit_set(client: Client, commit_set: str) -> dict[str, str]:
    """repo -> its commit in the commit set; empty when there is no such commit set."""
    try:
        commits = client.inspect_commit_set(commit_set)
    except NotFound:
        return {}
    out: dict[str, str] = {}
    for c in commits:
        out.setdefault(c.repo, c.id)
    return out


def _finished(client: Client, commit: CommitInfo) -> CommitInfo | None:
    """``commit``, or its newest finished ancestor when it is still open."""
    while not commit.finished:
        if commit.parent is None:
            return None
        commit = client.inspect_commit(f"{commit.repo}@{commit.parent}")
    return commit


def _provenance_order(commits: Iterable[CommitInfo]) -> list[str]:
    """The repos of ``commits``, inputs before what is made from them, else by name."""
    upstream: dict[str, set[str]] = {}
    for c in commits:
        deps = upstream.setdefault(c.repo, set())
        deps.update(p.partition("@")[0] for p in c.provenance)
    for deps in upstream.values():
        deps.intersection_update(upstream)
    waiting = {repo: len(deps) for repo, deps in upstream.items()}
    ready = [repo for repo, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        repo = heapq.heappop(ready)
        order.append(repo)
        for other, deps in upstream.items():
            if repo in deps:
                waiting[other] -= 1
                if waiting[other] == 0:
                    heapq.heappush(ready, other)
    # A cycle cannot come from provenance; should one appear, its repos still get listed.
    order.extend(sorted(set(upstream) - set(order)))
    return order


def _diff_repo(
    client: Client,
    repo: str,
    old: _Pinned | None,
    new: _Pinned,
    globs: Sequence[str],
    max_rows: int,
) -> tuple[RepoDiff, list[FileChange]]:
    """Count every change, keep the first ``max_rows``, and pick out the metrics files."""
    counts = {"added": 0, "removed": 0, "changed": 0}
    delta = 0
    listed: list[FileChange] = []
    metric_files: list[FileChange] = []
    for change in _changes(client, repo, old, new):
        counts[change.change] = counts.get(change.change, 0) + 1
        delta += change.delta
        if len(listed) < max_rows:
            listed.append(change)
        if is_metrics_path(change.path, globs):
            metric_files.append(change)
    total = sum(counts.values())
    diff = RepoDiff(
        repo=repo,
        base=old.commit.id if old else None,
        head=new.commit.id,
        base_size=old.commit.size if old else 0,
        head_size=new.commit.size,
        added=counts["added"],
        removed=counts["removed"],
        changed=counts["changed"],
        size_delta=delta,
        files=listed,
        more=total - len(listed),
    )
    return diff, metric_files


def _changes(client: Client, repo: str, old: _Pinned | None, new: _Pinned) -> Iterator[FileChange]:
    if old is None:  # no BASE here: everything in HEAD is new
        for f in client.iter_glob(f"{repo}@{new.commit.id}:/**"):
            if f.type == "file":
                yield FileChange(f.path, "added", None, f.size)
        return
    if old.commit.id == new.commit.id:
        return
    for e in client.iter_diff(f"{repo}@{new.commit.id}", f"{repo}@{old.commit.id}"):
        yield FileChange(e.path, e.change, e.old_size, e.new_size)


def is_metrics_path(path: str, globs: Sequence[str]) -> bool:
    """Whether ``path`` is a metrics file: a glob without ``/`` matches the file name in any
    directory, one with ``/`` the whole path from the root (``**`` spans directories)."""
    name = path.rsplit("/", 1)[-1]
    for pattern in globs:
        if "/" in pattern:
            if wglob.globmatch(path, "/" + pattern.lstrip("/"), flags=_GLOB_FLAGS):
                return True
        elif wglob.globmatch(name, pattern, flags=_GLOB_FLAGS):
            return True
    return False


# Metrics


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers of nested mappings and lists, by dotted key: ``{"train": {"loss":
    0.5}}`` -> ``{"train.loss": 0.5}``, list items by index. Booleans, strings and nulls
    are not metrics and are left out."""
    out: dict[str, float] = {}
    stack: list[tuple[str, Any]] = [(prefix, data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            items = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                out[key] = value
            continue
        stack.extend((f"{key}.{k}" if key else k, v) for k, v in reversed(items))
    return out


def load_metrics(path: str, data: bytes) -> dict[str, float]:
    """Parse a metrics file (JSON, or YAML for ``.yaml``/``.yml`` and anything not JSON)
    and flatten it; raises ValueError, with the reason, when it cannot be read."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        parsed = _load_yaml(text)
    else:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            if lower.endswith(".json"):
                raise ValueError(f"not valid JSON: {exc}") from exc
            parsed = _load_yaml(text)
    if not isinstance(parsed, dict | list):
        raise ValueError("not a mapping or a list of metrics")
    return flatten_metrics(parsed)


def _load_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ValueError(f"not valid YAML: {reason}") from exc


def _metric_changes(
    client: Client,
    repo: str,
    old: _Pinned | None,
    new: _Pinned,
    change: FileChange,
    notes: list[str],
) -> list[MetricChange]:
    sides: list[dict[str, float]] = []
    for pin, size in ((old, change.old_size), (new, change.new_size)):
        if pin is None or size is None:
            sides.append({})
            continue
        where = f"{repo}@{pin.ref}:{change.path}"
        if size > MAX_METRICS_BYTES:
            notes.append(f"{where}: metrics file too big to read ({_size(size)})")
            return []
        try:
            sides.append(
                load_metrics(change.path, client.get_file(f"{repo}@{pin.commit.id}:{change.path}"))
            )
        except ValueError as exc:
            notes.append(f"{where}: cannot read metrics: {exc}")
            return []
    before, after = sides
    keys = list(after) + [k for k in before if k not in after]
    return [_metric(repo, change.path, k, before.get(k), after.get(k)) for k in keys]


def _metric(repo: str, path: str, key: str, old: float | None, new: float | None) -> MetricChange:
    diff: float | None = None
    pct: float | None = None
    if old is not None and new is not None:
        both_int = isinstance(old, int) and isinstance(new, int)
        diff = new - old if both_int else _tidy(new - old)
        if old != 0:
            pct = _tidy((new - old) / abs(old) * 100)
    return MetricChange(repo, path, key, old, new, diff, pct)


def _tidy(x: float) -> float:
    """Round away float noise (0.84 - 0.81 = 0.030000000000000027) for JSON readers."""
    return float(f"{x:.12g}")


# Jobs


def _head_jobs(
    client: Client, pins: list[tuple[str, _Pinned | None, _Pinned]], order: Sequence[str]
) -> list[JobRow]:
    """The jobs of the commit sets of HEAD's own commits (those BASE's history lacks).

    A job's id is its commit set, so this holds every job whose output commit only HEAD
    has, and also the jobs HEAD's changes started whose output is not (yet) in HEAD: a
    failed or killed job's output commit is dropped, and a running one's is still open.
    """
    commit_sets: set[str] = set()
    for repo, old, new in pins:
        commit_sets.update(c.commit_set for c in _head_only(client, repo, old, new))
    if not commit_sets:
        return []
    rank = {repo: i for i, repo in enumerate(order)}
    jobs = [j for j in client.list_jobs() if j.id in commit_sets]
    jobs.sort(key=lambda j: (rank.get(j.pipeline, len(rank)), j.pipeline, j.created_at))
    return [_job_row(j) for j in jobs]


def _head_only(client: Client, repo: str, old: _Pinned | None, new: _Pinned) -> list[CommitInfo]:
    """HEAD's history down to where it meets BASE's, walking both a page at a time so the
    cost is the distance to the common commit, not the length of the history."""
    head = _history(client, repo, new.tip)
    if old is None:
        return list(head)
    base = _history(client, repo, old.tip)
    mine: list[CommitInfo] = []
    mine_ids: set[str] = set()
    theirs: set[str] = set()
    while True:
        h = next(head, None)
        if h is not None:
            if h.id in theirs:
                return mine
            mine.append(h)
            mine_ids.add(h.id)
        b = next(base, None)
        if b is not None:
            if b.id in mine_ids:  # HEAD's history reached it first: cut HEAD's list there
                return mine[: next(i for i, c in enumerate(mine) if c.id == b.id)]
            theirs.add(b.id)
        if h is None and b is None:
            return mine


def _history(client: Client, repo: str, tip: str, page: int = 100) -> Iterator[CommitInfo]:
    """The commit ``tip`` and its ancestors, newest first, read ``page`` at a time."""
    cid: str | None = tip
    while cid is not None:
        batch = client.list_commits(f"{repo}@{cid}", number=page)
        yield from batch
        cid = batch[-1].parent if len(batch) == page else None


def _job_row(j: JobInfo) -> JobRow:
    duration = None
    if j.started_at is not None:
        end = j.finished_at if j.finished_at is not None else time.time()
        duration = round(max(0.0, end - j.started_at), 3)
    return JobRow(
        pipeline=j.pipeline,
        id=j.id,
        state=j.state,
        reason=j.reason,
        output_commit=j.output_commit,
        datums_total=j.datums_total,
        processed=j.processed,
        skipped=j.skipped,
        failed=j.failed,
        started_at=j.started_at,
        finished_at=j.finished_at,
        duration=duration,
    )


# Checks


def _head_checks(client: Client, pins: list[tuple[str, _Pinned | None, _Pinned]]) -> list[CheckRow]:
    """The check runs on HEAD's commit in each repo, and first on its open head when HEAD's
    tip is still open (its runs, if any, are those of a ``finish commit`` a check refused).

    One lookup per commit: a store without checks costs a query per repo and shows nothing.
    """
    rows: list[CheckRow] = []
    for repo, _old, new in pins:
        ids = [new.tip, new.commit.id] if new.tip != new.commit.id else [new.commit.id]
        for commit in ids:
            rows.extend(check_row(run) for run in client.check_runs(f"{repo}@{commit}"))
    return rows


def check_row(run: CheckRunInfo) -> CheckRow:
    """A check run as a report shows it: the end of its log when it did not pass."""
    tail = "" if run.passed else "\n".join(run.log.splitlines()[-CHECK_LOG_LINES:])
    return CheckRow(
        repo=run.repo,
        commit=run.commit,
        name=run.name,
        branch=run.branch,
        trigger=run.trigger,
        state=run.state,
        exit_code=run.exit_code,
        started_at=run.started_at,
        duration=round(run.duration, 3),
        log_tail=tail,
    )


# Markdown


def render_markdown(report: Report, *, title: str = "Tusk report") -> str:
    """The report as GitHub-flavoured markdown: a summary line, then the check runs, the
    metrics, the jobs and the files of each repo, then notes."""
    s = report.summary()
    lines = [f"## {title}: `{report.base}` → `{report.head}`", "", _summary_line(s), ""]
    if report.checks:
        lines += render_checks(report.checks)
    if report.metrics:
        lines += ["### Metrics", ""]
        lines += _table(
            ("Repo", "File", "Metric", "Old", "New", "Change"),
            "lllrrr",
            [
                (
                    _code(m.repo),
                    _code(m.path),
                    _code(m.key),
                    _num(m.old),
                    _num(m.new),
                    _change(m),
                )
                for m in report.metrics
            ],
        )
    if report.jobs:
        lines += ["### Jobs", ""]
        lines += _table(
            ("Pipeline", "Job", "State", "Processed", "Skipped", "Failed", "Duration"),
            "lllrrrr",
            [
                (
                    _code(j.pipeline),
                    _code(j.id[:12]),
                    j.state,
                    str(j.processed),
                    str(j.skipped),
                    str(j.failed),
                    _duration(j.duration),
                )
                for j in report.jobs
            ],
        )
        for j in report.jobs:
            if j.state in _DONE_BADLY and j.reason:
                lines.append(f"- `{j.pipeline}@{j.id[:12]}` {j.state}: {_cell(j.reason)}")
        if any(j.state in _DONE_BADLY and j.reason for j in report.jobs):
            lines.append("")
    changed = [r for r in report.repos if r.total]
    if changed:
        lines += ["### Files", ""]
    for r in changed:
        lines += [_repo_heading(r, report), ""]
        if r.files:
            lines += _table(
                ("Change", "Path", "Old size", "New size", "Delta"),
                "llrrr",
                [
                    (
                        f.change,
                        _code(f.path),
                        _size(f.old_size),
                        _size(f.new_size),
                        _signed_size(f.delta),
                    )
                    for f in r.files
                ],
            )
        if r.more:
            lines += [f"… and {r.more} more.", ""]
    same = [r.repo for r in report.repos if not r.total]
    if same:
        lines += ["Unchanged: " + ", ".join(_code(name) for name in same) + ".", ""]
    if report.notes:
        lines += ["### Notes", ""]
        lines += [f"- {_cell(n)}" for n in report.notes]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _summary_line(s: dict[str, int]) -> str:
    parts = [
        f"**{s['repos']}** {_plural(s['repos'], 'repo')} compared, "
        f"**{s['repos_changed']}** changed",
        f"files: {s['files_added']} added, {s['files_removed']} removed, "
        f"{s['files_changed']} changed ({_signed_size(s['size_delta'])})",
    ]
    jobs = f"{s['jobs']} {_plural(s['jobs'], 'job')}"
    if s["jobs"]:
        jobs += f": {s['jobs_succeeded']} succeeded"
        if s["jobs_failed"]:
            jobs += f", **{s['jobs_failed']} failed**"
    parts.append(jobs)
    parts.append(f"{s['metrics_changed']} {_plural(s['metrics_changed'], 'metric')} changed")
    if s["checks"]:
        checks = f"{s['checks']} {_plural(s['checks'], 'check')}: {s['checks_passed']} passed"
        if s["checks_failed"]:
            checks += f", **{s['checks_failed']} failed**"
        parts.append(checks)
    return " · ".join(parts)


def render_checks(checks: Sequence[CheckRow], heading: str = "### Checks") -> list[str]:
    """The markdown lines of a table of check runs, then the end of the log of each run
    that did not pass, folded (``<details>``)."""
    lines = [heading, ""]
    lines += _table(
        ("Repo", "Commit", "Check", "On", "State", "Exit code", "Duration"),
        "lllllrr",
        [
            (
                _code(c.repo),
                _code(c.commit[:12]),
                _code(c.name),
                c.trigger,
                c.state if c.passed else f"**{c.state}**",
                "-" if c.exit_code is None else str(c.exit_code),
                _duration(c.duration),
            )
            for c in checks
        ],
    )
    for c in checks:
        if c.passed:
            continue
        code = "" if c.exit_code is None else f", exit code {c.exit_code}"
        lines += [
            f"<details><summary><code>{_html(c.repo)}@{c.commit[:12]}</code> check "
            f"<code>{_html(c.name)}</code> {_html(c.state)}{code}: the end of its log"
            "</summary>",
            "",
            *_fenced(c.log_tail or "(no output)"),
            "",
            "</details>",
            "",
        ]
    return lines


def _html(text: str) -> str:
    return " ".join(text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fenced(text: str) -> list[str]:
    """``text`` as a fenced code block whose fence no line of it can close."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", *text.splitlines(), fence]


def _repo_heading(r: RepoDiff, report: Report) -> str:
    counts = ", ".join(
        f"{n} {what}"
        for n, what in ((r.added, "added"), (r.removed, "removed"), (r.changed, "changed"))
        if n
    )
    base = f"`{r.base[:12]}`" if r.base else f"no `{report.base}`"
    sizes = f"{_size(r.base_size)} → {_size(r.head_size)}"
    return f"#### `{r.repo}` ({base} → `{r.head[:12]}`): {counts}; {sizes}"


def _table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    marks = {"l": "---", "r": "---:"}
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out.append("")
    return out


def _cell(text: str) -> str:
    """Text safe inside a table cell or a list item: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    text = _cell(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return str(x) if isinstance(x, int) else f"{x:.6g}"


def _change(m: MetricChange) -> str:
    if m.change is None:
        return "-"
    text = f"{m.change:+d}" if isinstance(m.change, int) else f"{m.change:+.6g}"
    if m.change_pct is not None:
        text += f" ({m.change_pct:+.1f}%)"
    return text


_size = human_size  # as the CLI's tables show sizes


def _signed_size(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "±") + _size(abs(n))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# GitHub Actions: the check runs as step outputs and as commit statuses

STATUS_CONTEXT = "tusk/check/{name}"
_STATUS_STATES = {"passed": "success", "error": "error"}  # failed, timed out: failure
_DESCRIPTION_CHARS = 140  # GitHub's limit for a status's description


@frozen
class GitHubContext:
    """Where a workflow's commit statuses go: ``GITHUB_API_URL`` (default
    https://api.github.com), ``GITHUB_REPOSITORY`` and the commit: the pull request's head
    for a ``pull_request`` event (``GITHUB_SHA`` is then a merge commit the pull request
    does not show), else ``GITHUB_SHA``. ``run_url`` links a status to the workflow run."""

    api_url: str
    repository: str
    sha: str
    run_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitHubContext | None:
        """The context of the GitHub Actions job ``env`` is of; None outside one."""
        repository = env.get("GITHUB_REPOSITORY", "").strip()
        sha = env.get("GITHUB_SHA", "").strip()
        if not repository or not sha:
            return None
        server, run_id = env.get("GITHUB_SERVER_URL", ""), env.get("GITHUB_RUN_ID", "")
        run_url = (
            f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
            if server and run_id
            else None
        )
        return cls(
            api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            repository=repository,
            sha=_pull_request_head(env) or sha,
            run_url=run_url,
        )

    @property
    def statuses_url(self) -> str:
        return f"{self.api_url}/repos/{self.repository}/statuses/{self.sha}"


def _pull_request_head(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_EVENT_NAME") not in ("pull_request", "pull_request_target"):
        return None
    try:
        with open(env.get("GITHUB_EVENT_PATH", ""), encoding="utf-8") as f:
            sha = json.load(f)["pull_request"]["head"]["sha"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) and sha else None


def github_outputs(report: Report) -> dict[str, str]:
    """Step outputs: ``checks``, the check runs as a JSON list (one line), and
    ``checks-failed``, how many did not pass."""
    runs = [c.to_dict() for c in report.checks]
    return {
        "checks": json.dumps(runs, separators=(",", ":")),
        "checks-failed": str(report.summary()["checks_failed"]),
    }


def commit_statuses(report: Report, run_url: str | None = None) -> list[dict[str, str]]:
    """One commit status per check (its latest run in the report): success, failure (failed
    or timed out) or error (it could not run), context ``tusk/check/<name>``."""
    latest: dict[str, CheckRow] = {}
    for c in report.checks:
        if c.name not in latest or c.started_at >= latest[c.name].started_at:
            latest[c.name] = c
    out = []
    for name in sorted(latest):
        c = latest[name]
        code = "" if c.exit_code is None else f" (exit code {c.exit_code})"
        text = f"{c.state}{code} in {_duration(c.duration)} on {c.repo}@{c.commit[:12]}"
        status = {
            "state": _STATUS_STATES.get(c.state, "failure"),
            "context": STATUS_CONTEXT.format(name=name),
            "description": _shorten(text, _DESCRIPTION_CHARS),
        }
        if run_url:
            status["target_url"] = run_url
        out.append(status)
    return out


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def post_commit_statuses(
    context: GitHubContext,
    token: str,
    statuses: Sequence[dict[str, str]],
    *,
    timeout: float = 10.0,
) -> list[str]:
    """POST each status to GitHub's commit statuses API; the problems, one message each (a
    refused status, an unreachable API), rather than an exception: statuses are a view of
    the check runs, and a report is not lost for one of them."""
    import httpx

    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "tusk-report",
    }
    problems: list[str] = []
    with httpx.Client(headers=headers, timeout=timeout) as http:
        for status in statuses:
            where = f"commit status {status['context']} on {context.repository}@{context.sha[:12]}"
            try:
                response = http.post(context.statuses_url, json=status)
            except httpx.HTTPError as exc:
                problems.append(f"cannot post the {where}: {type(exc).__name__}: {exc}")
                break  # the next ones would not get through either
            if response.status_code not in (200, 201):
                problems.append(
                    f"GitHub refused the {where}: HTTP {response.status_code}"
                    f"{_github_message(response)}"
                )
    return problems


def _github_message(response: Any) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        return ""
    return f" ({_cell(str(message))[:200]})" if message else ""
