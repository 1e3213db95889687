"""Checks that gate a branch, as PFS sees them (issue 22): which checks must pass before a
branch moves, and the runner that runs them.

A check (a ``kind: check`` document, :mod:`tusk.pps.checks`) covers the branches of one repo
that its ``branch`` glob matches, on a commit finishing (``on: [commit]``), on a merge
(``on: [merge]``), or both; a protected branch may also require checks by name on every merge
into it. Before such a branch moves, PFS writes the new commit as a *candidate*: an open commit
on no branch whose parent is the head it would follow (and, for a merge, whose second parent is
the source). The candidate's tree is complete and stored, but no branch names it, so no reader,
pipeline or trigger sees it. PFS then runs the checks on it, outside any transaction (a check
may take minutes), and lands it only if every one passed and the branch is still where it
was: the candidate becomes the branch's new head, finished, in one transaction, and the
downstream pipelines start as for any commit. Otherwise the candidate is dropped and the branch
stays where it was. A commit finished by ``tusk finish commit`` is already the branch's open
head: its checks run before it is marked finished, and a failed check leaves it open, to be
fixed and finished again.

The runner belongs to the pipeline layer (checks run like datums, on the host or in an image):
``PpsService`` installs it as ``PfsService.check_runner``. A PFS with checks to run and no
runner refuses the move (fails closed) rather than let a gated branch move unchecked.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from tusk.errors import CheckFailed
from tusk.pfs.models import CheckRunInfo
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_checks import CheckRunRecord
from tusk.values import frozen

COMMIT = "commit"
MERGE = "merge"
TRIGGERS = (COMMIT, MERGE)


@frozen
class CheckRequest:
    """Checks ``names`` to run on commit ``commit`` (tree ``tree``), to become the head of
    ``repo@branch`` by ``trigger`` (commit or merge): a candidate on no branch, dropped if a
    check fails, or (``candidate`` False) the branch's open head that ``tusk finish commit``
    finishes, left open if one fails."""

    repo: str
    branch: str
    trigger: str
    commit: str
    tree: bytes
    names: list[str]
    candidate: bool = True
    size: int = 0  # bytes of the commit's files


CheckRunner = Callable[[CheckRequest], list[CheckRunInfo]]


def gating(tx: MetaTx, repo: str, branch: str, trigger: str) -> list[str]:
    """Names of the checks that must pass before ``repo@branch`` moves by ``trigger``: every
    check of the repo whose glob matches the branch and whose ``on`` holds the trigger, and,
    for a merge into a protected branch, the checks it requires (defined or not: one that is
    not defined any more fails, so the rule holds)."""
    names = {
        c.name
        for c in tx.list_checks(repo)
        if (c.on_merge if trigger == MERGE else c.on_commit)
        and fnmatch.fnmatchcase(branch, c.branch)
    }
    if trigger == MERGE:
        for *_, required in tx.protected_branches(repo, branch):
            names.update(required)
    return sorted(names)


def record(tx: MetaTx, runs: list[CheckRunInfo]) -> None:
    """Store passed runs, in the transaction that moves the branch they let move."""
    for r in runs:
        tx.put_check_run(
            CheckRunRecord(
                r.commit, r.name, r.repo, r.branch, r.trigger, r.state, r.exit_code,
                r.started_at, r.duration, r.log,
            )
        )  # fmt: skip


def run(runner: CheckRunner | None, request: CheckRequest) -> list[CheckRunInfo]:
    """Run the checks of ``request``; CheckFailed if one did not pass (the runner's message
    names it and ends with its log, and has stored the runs), or if there is no runner to
    run them. The passed runs are returned, not stored: :func:`record` them with the move."""
    if runner is None:
        raise CheckFailed(
            f"{request.repo}@{request.branch} is gated by checks ({', '.join(request.names)}) "
            "that this process cannot run: move it through a Tusk server or client that runs "
            "pipelines"
        )
    return runner(request)
