"""The pipeline half of the client API: specs, jobs, datums, logs, lineage, the scheduler.

Jobs are addressed as Pachyderm addresses them: ``pipeline@<job id>`` (the job id is the id of
the commit set that caused it); a unique prefix of the id is enough.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tusk.errors import InvalidArgument, SourceError
from tusk.pfs.models import CommitInfo
from tusk.pfs.sourcetext import is_url
from tusk.sdk.projects import ProjectScope

if TYPE_CHECKING:  # pydantic, and the pipeline layer's results, load only when pipelines are
    # used: plain file commands stay quick
    from tusk.pps.apply import Document
    from tusk.pps.cached_images import CachedImage
    from tusk.pps.models import (
        ApplyResult,
        DatumInfo,
        DatumRun,
        JobInfo,
        LineageStep,
        LogLine,
        PipelineInfo,
        SecretInfo,
    )
    from tusk.sdk.base import BaseClient
    from tusk.sdk.debugging import DebugFolder
    from tusk.sdk.local import LocalTransport
    from tusk.sdk.remote import HttpTransport


def split_job(address: str) -> tuple[str | None, str]:
    """``pipeline@id`` -> (pipeline, id); a bare id -> (None, id)."""
    if "@" in address:
        pipeline, _, job = address.partition("@")
        if not pipeline or not job:
            raise InvalidArgument(f"invalid job address {address!r}: use pipeline@<job id>")
        return pipeline, job
    return None, address


def read_spec_source(
    source: str, *, jsonnet_args: Mapping[str, Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Specs from a local file, a URL or ``-`` (stdin), and where they came from.

    With ``jsonnet_args`` (even empty), or for a ``*.jsonnet`` file, the source is a Jsonnet
    template (``pachctl create pipeline --jsonnet``) rendered with those top-level arguments;
    it renders one spec or a list of them.
    """
    from tusk.pps.spec import parse_specs, render_jsonnet

    template = jsonnet_args is not None or source.endswith(".jsonnet")
    args = dict(jsonnet_args or {})
    if source == "-":
        import sys

        text = sys.stdin.read()
        origin: dict[str, Any] = {"spec_file": "-", "working_dir": os.getcwd()}
        if template:
            return render_jsonnet("<stdin>", args, text=text), origin
        return parse_specs(text, "<stdin>"), origin
    if is_url(source):
        import httpx

        try:
            r = httpx.get(source, follow_redirects=True, timeout=30)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot fetch pipeline spec {source}: {exc}") from exc
        origin = {"spec_file": source, "working_dir": os.getcwd()}
        if template:
            return render_jsonnet(source, args, text=r.text), origin
        return parse_specs(r.text, source), origin
    path = Path(source)
    if not path.is_file():
        what = "jsonnet template" if template else "pipeline spec file"
        raise SourceError(f"no such {what} {source!r}")
    from tusk.sdk.gitops import git_facts

    folder = path.resolve().parent
    origin = {"spec_file": str(path.resolve()), "working_dir": str(folder)}
    git = git_facts(folder)
    if git is not None:  # create pipeline -f records the code commit as apply does
        origin["git"] = {**git, "path": os.path.relpath(path.resolve(), git["root"])}
    if template:
        return render_jsonnet(path, args, source=source), origin
    return parse_specs(path.read_bytes(), source), origin


SecretManifest = dict[str, Any] | str | bytes | os.PathLike[str]


def read_manifest(manifest: SecretManifest) -> dict[str, Any] | str:
    """A secret manifest as given (a mapping, or JSON/YAML text) or read from a file path;
    ``-`` reads stdin. A one-line string that names an existing file is that file."""
    if isinstance(manifest, dict):
        return manifest
    if isinstance(manifest, bytes):
        return manifest.decode("utf-8", "replace")
    if isinstance(manifest, os.PathLike) or (
        isinstance(manifest, str)
        and "\n" not in manifest
        and manifest.strip() not in ("", "{}")
        and not manifest.lstrip().startswith("{")
    ):
        source = os.fspath(manifest)
        if source == "-":
            import sys

            return sys.stdin.read()
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"no such secret manifest file {source!r}")
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SourceError(f"cannot read secret manifest {source}: {exc.strerror}") from exc
    if isinstance(manifest, str):
        return manifest
    raise InvalidArgument(
        f"a secret manifest is a dict, JSON or YAML text, or a file path, not "
        f"{type(manifest).__name__}"
    )


def image_tarball(source: str | os.PathLike[str]) -> Path:
    """The absolute path of the tarball ``load_image`` loads: a path, or ``docker-archive:PATH``
    as skopeo spells it (which ends the path at a ':', so a path with one cannot be given)."""
    text = os.fspath(source)
    if isinstance(source, str) and text.startswith("docker-archive:"):
        text = text[len("docker-archive:") :]
    elif isinstance(source, str) and text.startswith("oci:"):
        raise InvalidArgument(
            f"cannot load {text!r}: tusk image load takes a tarball; make one of the OCI layout "
            "first (skopeo copy oci:PATH:TAG docker-archive:FILE.tar), or name oci:PATH:TAG as "
            "a pipeline's image"
        )
    if ":" in text:
        raise InvalidArgument(
            f"cannot load {os.fspath(source)!r}: give a tarball (docker save, podman save) "
            "whose path has no ':'"
        )
    if not text:
        raise InvalidArgument("cannot load '': give a tarball path")
    return Path(os.path.abspath(os.path.expanduser(text)))


class PipelineMethods(ProjectScope):
    """The pipeline half of the client API (see :mod:`tusk.sdk.base`): names and addresses
    are read here, the work is done through the transport ``self._t``."""

    _t: LocalTransport | HttpTransport

    # Pipelines

    def create_pipeline(
        self,
        spec: dict[str, Any],
        *,
        update: bool = False,
        reprocess: bool = False,
        working_dir: str | os.PathLike[str] | None = None,
        origin: dict[str, Any] | None = None,
    ) -> PipelineInfo:
        """Create a pipeline from a spec dict (Pachyderm's spec); with ``update``, replace it.

        The transform runs in ``working_dir`` unless the spec sets ``transform.working_dir``
        (default: the current directory; for a server, a path on the server's machine).
        """
        where = dict(origin or {})
        where.setdefault("working_dir", str(Path(working_dir or os.getcwd()).resolve()))
        return self._t.create_pipeline(self._spec(spec), where, update, reprocess)

    def create_pipelines_from(
        self, source: str, *, update: bool = False, reprocess: bool = False
    ) -> list[PipelineInfo]:
        """Create (or update) every pipeline in a spec file, URL or ``-``, in file order."""
        specs, origin = read_spec_source(source)
        return [self._t.create_pipeline(self._spec(s), origin, update, reprocess) for s in specs]

    def apply(
        self,
        documents: list[Document | dict[str, Any]],
        *,
        prune: bool = False,
        dry_run: bool = False,
        reprocess: bool = False,
    ) -> ApplyResult:
        """Make repos and pipelines match ``documents`` in one transaction (``tusk apply``).

        Unchanged pipelines are left alone; ``prune`` deletes pipelines no document declares;
        ``dry_run`` only returns the plan. Every problem is raised before anything changes.
        """
        from tusk.sdk.gitops import as_documents

        docs = [(self._document(d.spec), d.source, d.origin) for d in as_documents(documents)]
        return self._t.apply(docs, prune, dry_run, reprocess)

    def apply_files(
        self,
        paths: list[str | os.PathLike[str]],
        *,
        prune: bool = False,
        dry_run: bool = False,
        reprocess: bool = False,
    ) -> ApplyResult:
        """:meth:`apply` the spec files and folders at ``paths``, recording their git commit."""
        from tusk.sdk.gitops import read_documents

        docs: list[Document | dict[str, Any]] = list(read_documents(paths))
        return self.apply(docs, prune=prune, dry_run=dry_run, reprocess=reprocess)

    def update_pipeline(
        self, spec: dict[str, Any], *, reprocess: bool = False, **kw: Any
    ) -> PipelineInfo:
        """A new version of a pipeline; ``reprocess`` reruns every datum under it."""
        return self.create_pipeline(spec, update=True, reprocess=reprocess, **kw)

    def inspect_pipeline(self, name: str, history: bool = False) -> PipelineInfo:
        return self._t.inspect_pipeline(self._repo(name), history)

    def list_pipelines(self) -> list[PipelineInfo]:
        return self._t.list_pipelines()

    def delete_pipeline(self, name: str, *, keep_repo: bool = False, force: bool = False) -> None:
        self._t.delete_pipeline(self._repo(name), keep_repo, force)

    def stop_pipeline(self, name: str) -> PipelineInfo:
        """Pause a pipeline: new input commits queue jobs that start when it is started."""
        return self._t.set_pipeline_state(self._repo(name), "paused")

    def start_pipeline(self, name: str) -> PipelineInfo:
        return self._t.set_pipeline_state(self._repo(name), "running")

    def run_pipeline(self, name: str, branch: str | None = None) -> CommitInfo:
        """Run the pipeline again on its inputs' current heads; returns the new output commit.

        With ``branch``, run it on that branch of its inputs, into that branch of its output
        repo (made from the usual branches if missing, upstream and downstream too).
        """
        return self._t.run_pipeline(self._repo(name), branch)

    def dry_run(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The datums a spec would have on the current data, without creating anything."""
        return self._t.dry_run(self._spec(spec))

    # Jobs, datums, logs

    def list_jobs(
        self, pipeline: str | None = None, commit_set: str | None = None
    ) -> list[JobInfo]:
        return self._t.list_jobs(self._repo(pipeline) if pipeline else None, commit_set)

    def inspect_job(self, address: str) -> JobInfo:
        return self._t.inspect_job(*split_job(self._job(address)))

    def wait_job(
        self,
        address: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> JobInfo:
        """Block until a job is done (as :meth:`wait_commit` runs pending jobs meanwhile)."""
        pipeline, job = split_job(self._job(address))
        return self._t.wait_job(pipeline, job, timeout, run, log)

    def stop_job(self, address: str) -> JobInfo:
        return self._t.stop_job(*split_job(self._job(address)))

    def restart_datum(self, address: str, filters: Sequence[str] = ()) -> list[str]:
        """Stop the running datums of job ``address`` (``pipeline@job``) that ``filters``
        name (datum ids or prefixes, input paths, content hashes; none: all of them) and run
        them again, as ``pachctl restart datum``. The ids of the datums restarted."""
        pipeline, job = split_job(self._job(address))
        if pipeline is None:
            raise InvalidArgument(f"give the job as pipeline@job, not {address!r}")
        return self._t.restart_datums(pipeline, job, list(filters))

    def list_datums(self, address: str) -> list[DatumInfo]:
        pipeline, job = split_job(self._job(address))
        if pipeline is None:
            raise InvalidArgument("list datum needs pipeline@<job id>")
        return self._t.list_datums(pipeline, job)

    def inspect_datum(self, address: str, datum: str) -> DatumInfo:
        pipeline, job = split_job(self._job(address))
        if pipeline is None:
            raise InvalidArgument("inspect datum needs pipeline@<job id> and a datum id")
        return self._t.inspect_datum(pipeline, job, datum)

    def datum_run(self, address: str, datum: str) -> DatumRun:
        """What datum ``datum`` of job ``address`` (``pipeline@job``) ran with: its files, each
        with the commit the job read it from, the pipeline version, code and image."""
        pipeline, job = split_job(self._job(address))
        if pipeline is None:
            raise InvalidArgument("a datum's run needs pipeline@<job id> and a datum id")
        return self._t.datum_run(pipeline, job, datum)

    def debug_datum(
        self,
        address: str,
        datum: str,
        folder: str | os.PathLike[str] | None = None,
        *,
        force: bool = False,
    ) -> DebugFolder:
        """Write datum ``datum`` of job ``address`` (``pipeline@job``) into ``folder``: its
        input files at the commits the job read, under ``folder/pfs/<input>``, with what it
        ran with (``datum.json``, ``env.sh``, ``run.sh``); default folder:
        ``datum-<first 12 digits of its id>``. The result reruns the datum
        (``.rerun()``, next to the original run's log) or opens a shell (``.shell()``); see
        :mod:`tusk.sdk.debugging`. A non-empty folder is refused unless ``force``, or unless
        it holds this datum already (then it is used as it is, edits and all)."""
        from tusk.sdk.debugging import debug_datum

        pipeline, job = split_job(self._job(address))
        if pipeline is None:
            raise InvalidArgument("debug datum needs pipeline@<job id> and a datum id")
        return debug_datum(cast("BaseClient", self), pipeline, job, datum, folder, force=force)

    def logs(
        self,
        pipeline: str,
        job: str | None = None,
        datum: str | None = None,
        after: int = 0,
    ) -> list[LogLine]:
        return self._t.logs(self._repo(pipeline), job, datum, after)

    def wait_commit_set(
        self,
        commit_set: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> list[JobInfo]:
        """Block until every job of a commit set is done; returns the jobs.

        In-process, pending jobs run in this process meanwhile when no scheduler runs on the
        home, as for :meth:`wait_commit`.
        """
        return self._t.wait_commit_set(commit_set, timeout, run, log)

    def lineage(self, address: str, depth: int = 32) -> LineageStep:
        """Job, datum, inputs and code behind the file at ``repo@ref:/path``, up the graph."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("lineage needs a file: repo@ref:/path")
        return self._t.lineage(addr, addr.path, depth)

    # Secrets (values go in, never come out; clusterAdmin when auth is on)

    def create_secret(self, manifest: SecretManifest) -> SecretInfo:
        """Store a Kubernetes Secret manifest (``kind: Secret``, ``metadata.name``, ``data`` in
        base64 and/or ``stringData``): a dict, JSON/YAML text or a file path. Its values are
        encrypted at rest; raises AlreadyExists if the name is taken (delete it first)."""
        return self._t.create_secret(read_manifest(manifest))

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret's name and keys (never the values)."""
        return self._t.list_secrets()

    def inspect_secret(self, name: str) -> SecretInfo:
        """A secret's keys and times (never the values)."""
        return self._t.inspect_secret(name)

    def delete_secret(self, name: str) -> None:
        """Delete a secret; pipelines naming it fail their next job, saying so."""
        self._t.delete_secret(name)

    # Images (the image cache pipelines run in; on a server with auth on, loading and
    # deleting one are clusterAdmin's)

    def load_image(
        self,
        source: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> CachedImage:
        """Load a ``docker save``/``podman save`` tarball (a path, or ``docker-archive:PATH``)
        into the image cache (a server's: uploaded to it) and return the image, as
        ``docker load`` does: the repo tags the tarball carries (``myorg/tool:1.2``) then
        resolve to it without a pull, and gc keeps it.

        A file that is not such a tarball raises InvalidImage before anything is sent or
        copied; ``progress`` gets the bytes sent to a server.
        """
        from tusk.pps.cached_images import check_archive

        path = image_tarball(source)
        check_archive(path, f"image tarball {path}")
        return self._t.load_image(path, progress)

    def list_images(self) -> list[CachedImage]:
        """Every image in the image cache, by digest, with its references and size on disk."""
        return self._t.list_images()

    def inspect_image(self, name: str) -> CachedImage:
        """One cached image, named by its digest, a unique prefix of it (as ``list_images``
        tables show it), or a reference that resolves to it (a repo tag it was loaded with)."""
        from tusk.pps.cached_images import find_image

        return find_image(self._t.list_images(), name)

    def delete_image(self, name: str) -> CachedImage:
        """Remove a cached image (as ``inspect_image`` names it) and return what it was, as
        ``docker rmi`` does: its layout, rootfs and references go, and the disk space only it
        used comes back at once. InUse while a pipeline version or job pins it (delete the
        pipeline first); on a server with auth on, deleting one is clusterAdmin's."""
        return self._t.delete_image(name)

    # Running jobs here (in-process only: a server runs its own)

    def run_scheduler(
        self,
        stop: threading.Event | None = None,
        *,
        once: bool = False,
        sandbox: str | None = None,
        log: Callable[[str], None] | None = None,
        executor: str | None = None,
        role: str = "all",
        api_url: str | None = None,
        pipelines: Sequence[str] | None = None,
        s3_url: str | None = None,
    ) -> None:
        """Run the scheduler and workers in this process (what ``tusk up`` does).

        ``api_url``: the REST API serving this home, for jobs' own identity when auth is on;
        ``s3_url``: its S3 gateway, for pipelines with S3 inputs or ``s3_out``.

        ``executor``: ``local`` (default: datums run as processes here, in the spec's image
        when it names one), ``host`` (always on this machine, images only recorded),
        ``workers`` (jobs are started and finished here, their datums run only by ``tusk
        worker`` processes elsewhere), ``dask://host:port`` (datums run on that Dask
        cluster's workers) or, for a worker, ``handoff:FOLDER[,pfs=PATH]`` (each datum is handed
        to another container through FOLDER: ``tusk.pps.handoff``). ``role="worker"`` runs
        datums only (``tusk worker``), for jobs a ``tusk up``/``serve`` elsewhere manages;
        ``pipelines`` limits it to those pipelines' jobs. A client of a server raises
        InvalidArgument: the scheduler runs with the server.
        """
        self._t.run_scheduler(stop, once, sandbox, log, executor, role, api_url, pipelines, s3_url)

    def scheduler_running(self) -> bool | None:
        """Whether a scheduler (``tusk up``, or a wait running jobs) runs on this home now.

        None from a client of a server: there the server runs the jobs, or says why not.
        """
        return self._t.scheduler_running()

    def sandbox_mode(self, sandbox: str | None = None) -> str:
        """The sandbox datums run in here (a client of a server raises InvalidArgument: the
        sandbox is the server's business)."""
        return self._t.sandbox_mode(sandbox)
