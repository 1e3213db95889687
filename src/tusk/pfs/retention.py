"""Retention: which old commits ``tusk gc`` expires, and removing them from the history.

A repo's rule (``tusk retention set``) keeps, of its finished commits, the ``keep_last``
newest of each branch's history (first parents), those finished within ``keep_within``
seconds, and with ``keep_tagged`` (the default) every tagged one; branch heads and open
commits are always kept. The others expire. Then, over every repo, rule or not:

- outputs derived only from expired commits go with them: a commit computed from inputs
  (commit provenance) that all expire, expires too, unless it is a head, open or tagged;
- lineage of everything kept stays complete: the inputs of a kept commit are kept, and so are
  the output commits of the jobs whose results a kept job carried forward (skipped datums),
  with their inputs in turn.

Both are applied until nothing changes. An expired commit is squashed out of the history the
way Pachyderm squashes a commit set: its children (first or merge parent) take its parent,
and keep their data, since every commit holds its whole tree; its provenance rows go, and the
records of the job that made it (datums, logs), whose outputs then stop being gc roots. It
all happens in one metadata transaction, so a crash leaves the history as it was or as it
should be; the data nobody references any more is then swept by gc's mark and sweep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tusk.storage.meta.records import CommitRecord
from tusk.storage.meta.store import MetaTx


@dataclass
class Plan:
    """What one pass of retention removes: commit ids (by repo), and jobs as (pipeline, id)."""

    expired: dict[str, CommitRecord] = field(default_factory=dict)
    jobs: list[tuple[str, str]] = field(default_factory=list)
    kept_for_lineage: int = 0  # commits a rule expired but kept outputs still need

    def names(self) -> list[str]:
        return sorted(f"{c.repo}@{c.id}" for c in self.expired.values())


def plan(tx: MetaTx, now: float) -> Plan:
    rules = tx.list_retention()
    if not rules:
        return Plan()
    commits: dict[str, CommitRecord] = {c.id: c for c in tx.iter_all_commits()}
    by_repo: dict[str, list[CommitRecord]] = defaultdict(list)
    for c in commits.values():
        by_repo[c.repo].append(c)
    heads: dict[str, list[str]] = defaultdict(list)
    for b in tx.list_branches():
        if b.head is not None:
            heads[b.repo].append(b.head)
    protected = {c.id for c in commits.values() if not c.finished}
    protected.update(h for repo_heads in heads.values() for h in repo_heads)
    # A tag keeps its commit, except in a repo whose rule says --no-keep-tagged.
    untagging = {r.repo for r in rules if not r.keep_tagged}
    tagged = {t.commit for repo in by_repo if repo not in untagging for t in tx.list_tags(repo)}
    by_rule: set[str] = set()
    for rule in rules:
        kept: set[str] = set()
        if rule.keep_last:
            for head in heads[rule.repo]:
                kept.update(_first_parents(commits, head, rule.keep_last))
        if rule.keep_within is not None:
            since = now - rule.keep_within
            kept.update(c.id for c in by_repo[rule.repo] if (c.finished_at or 0) >= since)
        by_rule.update(c.id for c in by_repo[rule.repo] if c.id not in kept)
    by_rule -= protected | tagged

    prov: dict[str, set[str]] = defaultdict(set)
    for out, src in tx.all_commit_provenance():
        if out in commits and src in commits:
            prov[out].add(src)
    outputs = {c for c in prov if c not in protected and c not in tagged}
    origins, job_of = _carried(tx, commits)

    needed: set[str] = set()  # expired by a rule, but kept for lineage
    while True:
        expired = by_rule - needed
        grew = True
        while grew:  # outputs of expired inputs only, through chains of pipelines
            more = {o for o in outputs - expired - needed if prov[o] <= expired}
            grew = bool(more)
            expired |= more
        need = set()
        for cid in commits.keys() - expired:
            need |= prov.get(cid, set()) & expired
            need |= origins.get(cid, set()) & expired
        if not need:
            break
        needed |= need
    result = Plan({cid: commits[cid] for cid in expired})
    result.kept_for_lineage = len(by_rule & needed)
    result.jobs = [job_of[cid] for cid in expired if cid in job_of]
    return result


def _first_parents(commits: dict[str, CommitRecord], head: str | None, n: int) -> list[str]:
    out: list[str] = []
    cid = head
    while cid is not None and cid in commits and len(out) < n:
        out.append(cid)
        cid = commits[cid].parent
    return out


def _carried(
    tx: MetaTx, commits: dict[str, CommitRecord]
) -> tuple[dict[str, set[str]], dict[str, tuple[str, str]]]:
    """(output commit -> output commits whose results its job carried forward; output
    commit -> its job as (pipeline, id))."""
    origins: dict[str, set[str]] = {}
    job_of: dict[str, tuple[str, str]] = {}
    for p in tx.list_pipelines():
        made = tx.job_commits(p.name)
        for job, commit in made.items():
            job_of[commit] = (p.name, job)
        for job, from_jobs in tx.carried_origins(p.name).items():
            if job in made:
                origins[made[job]] = {made[j] for j in from_jobs if j in made} - {made[job]}
    return origins, job_of


def apply(tx: MetaTx, todo: Plan) -> None:
    """Remove the plan's commits from the history, and its jobs' records."""
    for cid in _order(todo.expired.values()):
        current = tx.get_commit(cid)
        if current is None:
            continue
        tx.reparent_children(cid, current.parent)
        tx.delete_commit_provenance(cid)
        tx.delete_subvenance_rows(cid)
        for t in tx.tags_of([cid]):
            tx.delete_tag(t.repo, t.name)
        tx.delete_commit(cid)
    for pipeline, job in todo.jobs:
        tx.delete_job_records(pipeline, job)


def _order(commits: Iterable[CommitRecord]) -> list[str]:
    """Oldest first: any order is correct (each removal reads its commit's parent as it is
    then), this one just moves each child once."""
    return [c.id for c in sorted(commits, key=lambda c: (c.started_at, c.id))]
