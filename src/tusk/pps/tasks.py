"""What a datum's process is given, in one place: the scheduler's workers and ``tusk debug
datum`` build a datum's :class:`DatumTask` here, so a rerun on a laptop gets the command,
stdin, environment, working directory, limits and inputs the scheduler gave it.

Light on purpose (no storage, no spec parsing at import): a client of a server loads it to
rerun a datum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tusk.pps import resources
from tusk.pps.executor import DatumTask, ImageRun

if TYPE_CHECKING:
    from tusk.pps.spec import PipelineSpec


def spec_reads(
    commits: Mapping[tuple[str, str], str], spec: PipelineSpec
) -> dict[tuple[str, str], str]:
    """A job's input commits, (repo, branch) -> commit id, keyed as the spec names its inputs.

    A job on another branch (``tusk run pipeline --branch pr-12``) reads ``data@pr-12`` where
    the spec says ``data@master``: each input the spec names takes the one commit of its repo
    in the job's commit set.
    """
    from tusk.pps.spec import CronInput

    out = dict(commits)
    for leaf in spec.inputs():
        key = (leaf.repo, "master" if isinstance(leaf, CronInput) else leaf.branch)
        if key not in out:
            found = [cid for (repo, _branch), cid in commits.items() if repo == leaf.repo]
            if len(found) == 1:
                out[key] = found[0]
    return out


def datum_task(
    spec: PipelineSpec,
    origin: Mapping[str, Any],
    *,
    pipeline: str,
    job: str,
    datum: str,
    output_commit: str,
    files: list[dict[str, Any]],
    commits: Mapping[tuple[str, str], str],
    env: Mapping[str, str] | None = None,
    secret_files: list[tuple[str, str, dict[str, bytes]]] | None = None,
    secret_values: list[bytes] | None = None,
    image: ImageRun | None = None,
    on_host: bool = True,
) -> DatumTask:
    """The task of one datum: ``files`` are its input files (``DatumFile.to_json`` dicts),
    ``commits`` the (repo, branch) -> commit its job read, ``env`` what comes on top of
    ``transform.env`` (secrets' values, the job's identity), ``on_host`` False when the
    command runs in an image or on another machine (then no host folder is its cwd)."""
    t = spec.transform
    firsts: dict[str, tuple[str, str]] = {}
    for f in files:
        if f["input_name"] not in firsts:
            commit = commits.get((f["repo"], f["branch"]), "")
            firsts[f["input_name"]] = (f["path"], commit)
    return DatumTask(
        pipeline=pipeline,
        job=job,
        datum=datum,
        output_commit=output_commit,
        cmd=list(t.cmd),
        stdin=list(t.stdin),
        env={**t.env, **(env or {})},
        # In an image: transform.working_dir, else the image's WorkingDir (never a host
        # folder); on the host, the spec file's folder when the spec gives none.
        working_dir=t.working_dir or (origin.get("working_dir") if on_host else None),
        err_cmd=list(t.err_cmd),
        err_stdin=list(t.err_stdin),
        accept_return_code=list(t.accept_return_code),
        timeout=spec.datum_timeout,
        inputs=[(name, path, commit) for name, (path, commit) in firsts.items()],
        limits=resources.limits_of(spec),
        secret_files=list(secret_files or []),
        secret_values=list(secret_values or []),
        image=image,
        datum_batching=bool(t.datum_batching),
    )


def task_to_json(task: DatumTask) -> dict[str, Any]:
    """A task as JSON, for a remote worker (``tusk.pps.remote_worker``): bytes (the values of
    secrets) in base64, the limits as a dict."""
    import base64
    import dataclasses

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    out = dataclasses.asdict(task)
    out["secret_files"] = [
        [name, path, {k: b64(v) for k, v in values.items()}]
        for name, path, values in task.secret_files
    ]
    out["secret_values"] = [b64(v) for v in task.secret_values]
    return out


def task_from_json(data: Mapping[str, Any]) -> DatumTask:
    """The task :func:`task_to_json` wrote (runs in no image: a remote worker runs its
    command on its own machine or hands it to the user container)."""
    import base64

    fields = dict(data)
    limits = fields.pop("limits", None)
    fields.pop("image", None)
    return DatumTask(
        **{
            **fields,
            "inputs": [tuple(i) for i in fields["inputs"]],
            "limits": resources.Limits(**limits) if limits else None,
            "secret_files": [
                (name, path, {k: base64.b64decode(v) for k, v in values.items()})
                for name, path, values in fields.get("secret_files", [])
            ],
            "secret_values": [base64.b64decode(v) for v in fields.get("secret_values", [])],
        }
    )
