"""S3 inputs and outputs of a pipeline (``input.pfs.s3: true``, ``s3_out: true``), as Pachyderm's.

Code that only speaks S3 (Kubeflow's, a Spark job, a boto3 script) reads its inputs and writes
its output through the server's S3 gateway (``tusk.s3``) instead of ``/pfs``. Each datum of
such a pipeline gets a *session*: an access key of its own, in ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, with the gateway's address in ``S3_ENDPOINT`` (the names Pachyderm's
workers set). Requests signed with that key see only the datum's buckets, named as in
Pachyderm's sidecar gateway:

- one bucket per S3 input, named for the input (``input.pfs.name``): that input's commit of
  this job, read-only;
- ``out`` (with ``s3_out``): the datum's output. Its writes go into an open commit on no branch
  of the output repo; when the datum succeeds, that commit's tree is the datum's output (as
  ``/pfs/out`` is otherwise, which is then not read), so outputs stay per datum and a later job
  reuses them like any other datum's.

With auth on, the key is a token of the pipeline's identity (``pipeline:<name>``) minted with
S3 keys, so the gateway checks the signature and the one permission check sees the pipeline;
with auth off the key only selects the datum's buckets. A session ends with its datum: its row
and its open commit are removed and its token revoked, in the transaction that records the
datum (or, after a crash, when the scheduler next starts).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from tusk.auth.service import AuthService
from tusk.errors import InvalidArgument
from tusk.pfs import PfsService
from tusk.pps.spec import PfsInput, PipelineSpec
from tusk.storage.chunks import ChunkRef
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_s3 import S3Session

REGION = "us-east-1"
NO_GATEWAY = (
    "this pipeline reads or writes through the S3 gateway (input.pfs.s3 or s3_out), and this "
    "scheduler has none: run it under tusk up with the gateway on (not --no-s3)"
)


def s3_input_names(spec: PipelineSpec) -> set[str]:
    """The inputs read through the gateway: they are not written under /pfs."""
    return {leaf.name for leaf in spec.inputs() if isinstance(leaf, PfsInput) and leaf.s3}


class Sessions:
    """Opens and ends datums' sessions (the scheduler's side)."""

    def __init__(self, pfs: PfsService, auth: AuthService, endpoint: str | None) -> None:
        self.pfs = pfs
        self.auth = auth
        self.endpoint = endpoint

    def open(
        self,
        spec: PipelineSpec,
        pipeline: str,
        job: str,
        datum: str,
        commits: dict[tuple[str, str], str],
        ttl: float,
    ) -> tuple[S3Session, dict[str, str]]:
        """A session for one datum attempt, and the environment that hands it over."""
        if self.endpoint is None:
            raise InvalidArgument(NO_GATEWAY)
        buckets = {
            leaf.name: [leaf.repo, leaf.branch, commits[(leaf.repo, leaf.branch)]]
            for leaf in spec.inputs()
            if isinstance(leaf, PfsInput) and leaf.s3
        }
        staging = None
        if spec.s3_out:
            staging = self.pfs.start_detached_commit(
                pipeline, f"s3_out of datum {datum[:12]} of job {job}"
            )
        minted = self.auth.mint_for_pipeline(pipeline, ttl, s3=True, description="datum S3 keys")
        if minted is not None:
            key, token = minted
            secret, token_id = token.split("_", 2)[2], key
        else:
            key, secret, token_id = secrets.token_hex(8), secrets.token_urlsafe(32), None
        session = S3Session(key, pipeline, job, datum, buckets, staging, token_id, time.time())
        with self.pfs.meta.write() as tx:
            tx.s3_add_session(session)
        env = {
            "S3_ENDPOINT": self.endpoint,
            "TUSK_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
        return session, env

    def outputs(self, session: S3Session) -> list[tuple[tuple[str, ...], list[ChunkRef]]]:
        """What the datum wrote into its bucket ``out``: its output files."""
        if session.staging is None:
            return []
        tree = self.pfs.commit_record(session.staging).tree
        return [
            (tuple(path.strip("/").split("/")), list(self.pfs.reader().chunks(entry)))
            for path, entry in self.pfs.tree_files(tree)
        ]

    def end(self, tx: MetaTx, sessions: Sequence[S3Session]) -> list[str]:
        """Remove sessions inside ``tx``; the token ids to revoke once it commits."""
        for s in sessions:
            tx.s3_delete_session(s.access_key)
            if s.staging is not None:
                self.pfs.drop_open_commit_in(tx, s.staging)
        return [s.token_id for s in sessions if s.token_id]

    def revoke(self, token_ids: Sequence[str]) -> None:
        for token_id in token_ids:
            self.auth.revoke_quietly(token_id)

    def end_now(self, sessions: Sequence[S3Session]) -> None:
        """End sessions in a transaction of their own (a failed or abandoned datum's)."""
        if not sessions:
            return
        with self.pfs.meta.write() as tx:
            tokens = self.end(tx, sessions)
        self.revoke(tokens)

    def end_job(self, pipeline: str, job: str) -> None:
        """End what sessions of a finished job are left (a datum's that a crash abandoned)."""
        with self.pfs.meta.read() as tx:
            left = tx.s3_job_sessions(pipeline, job)
        self.end_now(left)

    def end_finished(self) -> int:
        """End the sessions of every job that has finished (at a scheduler's start)."""
        with self.pfs.meta.read() as tx:
            done = []
            for pipeline, job in tx.s3_session_jobs():
                record = tx.get_job(pipeline, job)
                if record is None or record.state in ("success", "failure", "killed"):
                    done.extend(tx.s3_job_sessions(pipeline, job))
        self.end_now(done)
        return len(done)
