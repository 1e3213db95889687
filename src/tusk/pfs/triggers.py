"""Branch triggers, as Pachyderm defines them: a branch that follows another branch of its repo,
moving to that branch's head when conditions hold since its own head.

- ``size``: the new head's size is at least that many bytes above the branch's head (Pachyderm
  compares the two commits' sizes, so deleting data never counts as growth);
- ``commits``: at least that many commits lie between the branch's head and the new head;
- ``cron_spec``: a tick of the schedule has passed since the trigger last fired (or was set).

Any one condition fires it, or every one with ``all``; a trigger with no condition moves on
every commit. They are evaluated when a commit finishes on the followed branch (inside that
commit's transaction, by :class:`~tusk.pfs.service.PfsService`) and, for cron conditions, on the
scheduler's clock (:meth:`~tusk.pfs.service.PfsService.fire_cron_triggers`), so data waiting
below the threshold moves at the first tick after it. A branch moved this way fires the triggers
that follow it in turn (chains); cycles are refused when a trigger is set.

Choices: a branch takes provenance or a trigger, not both (as pachctl); a triggered branch whose
head is an open commit is left alone until that commit finishes; the followed branch need not
exist yet (a pipeline can name a trigger on an empty repo's master).
"""

from __future__ import annotations

from tusk.cronspec import check_cron, next_tick
from tusk.errors import InvalidArgument
from tusk.ids import check_branch_name
from tusk.pfs.models import BranchTrigger
from tusk.storage.meta.records import CommitRecord
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_triggers import TriggerRecord
from tusk.units import parse_size

MAX_TEXT = 64  # characters of a size or cron spec as stored


def checked(
    tx: MetaTx, repo: str, branch: str, trigger: BranchTrigger, now: float
) -> TriggerRecord:
    """The row to store for ``trigger`` on ``repo@branch``, or InvalidArgument saying what is
    wrong with it (a bad size, cron text or count, another repo's branch, a cycle)."""
    source = trigger.branch.strip()
    where = f"trigger of {repo}@{branch}"
    if "@" in source:
        other, _, name = source.partition("@")
        if other != repo:
            raise InvalidArgument(
                f"{where}: {source} is a branch of another repo; a trigger follows a branch of "
                f"the same repo (give just its name, e.g. --trigger {name or 'master'})"
            )
        source = name
    if not source:
        raise InvalidArgument(f"{where}: name the branch it follows, e.g. --trigger master")
    check_branch_name(source)
    if source == branch:
        raise InvalidArgument(f"{where}: a branch cannot trigger on itself; name another branch")
    size = None
    if trigger.size not in (None, ""):
        size = str(trigger.size).strip()
        try:
            if len(size) > MAX_TEXT:
                raise ValueError(f"{size[:20]!r}... is longer than {MAX_TEXT} characters")
            parse_size(size)
        except ValueError as exc:
            raise InvalidArgument(f"{where}: size {exc}") from None
    commits = trigger.commits or None
    if commits is not None and (isinstance(commits, bool) or not 0 < commits < 2**31):
        raise InvalidArgument(
            f"{where}: commits must be a positive number below 2^31, not {commits!r}"
        )
    cron = None
    if trigger.cron_spec not in (None, ""):
        try:
            if len(str(trigger.cron_spec)) > MAX_TEXT:
                raise ValueError(f"is longer than {MAX_TEXT} characters")
            cron = check_cron(str(trigger.cron_spec))
        except ValueError as exc:
            raise InvalidArgument(f"{where}: cron {exc}") from None
    chain = [branch, source]
    follows = tx.get_trigger(repo, source)
    while follows is not None:
        chain.append(follows.from_branch)
        if follows.from_branch == branch:
            raise InvalidArgument(
                f"{where} on {source} would form a cycle ({' -> '.join(chain)}); "
                "triggers must not lead back to the branch they move"
            )
        if len(chain) > 1000:
            break  # a cycle among other branches (refused when set): not this trigger's
        follows = tx.get_trigger(repo, follows.from_branch)
    return TriggerRecord(repo, branch, source, size, commits, cron, bool(trigger.all), now)


def as_info(record: TriggerRecord) -> BranchTrigger:
    return BranchTrigger(
        record.from_branch,
        record.size,
        record.commits,
        record.cron_spec,
        record.all_conditions,
        record.fired_at,
    )


def newest_finished(tx: MetaTx, commit_id: str | None) -> CommitRecord | None:
    """The commit ``commit_id`` names, or its newest finished ancestor if it is open."""
    commit = tx.get_commit(commit_id) if commit_id is not None else None
    while commit is not None and not commit.finished:
        commit = tx.get_commit(commit.parent) if commit.parent is not None else None
    return commit


def cron_due(record: TriggerRecord, now: float) -> bool:
    return record.cron_spec is not None and next_tick(record.cron_spec, record.fired_at) <= now


def holds(
    tx: MetaTx, record: TriggerRecord, old: CommitRecord | None, new: CommitRecord, now: float
) -> bool:
    """Whether ``record`` moves its branch from ``old`` (its head; None: no commit) to ``new``."""
    results: list[bool] = []
    if record.size is not None:
        results.append(new.size - (old.size if old is not None else 0) >= parse_size(record.size))
    if record.commits is not None:
        results.append(_commits_between(tx, old, new, record.commits) >= record.commits)
    if record.cron_spec is not None:
        results.append(cron_due(record, now))
    if not results:
        return True
    return all(results) if record.all_conditions else any(results)


def _commits_between(tx: MetaTx, old: CommitRecord | None, new: CommitRecord, limit: int) -> int:
    """Commits from ``new`` back to (not counting) ``old``, counted up to ``limit``."""
    count = 0
    commit: CommitRecord | None = new
    while commit is not None and count < limit:
        if old is not None and commit.id == old.id:
            break
        count += 1
        commit = tx.get_commit(commit.parent) if commit.parent is not None else None
    return count
