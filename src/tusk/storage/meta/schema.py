"""The tables, declared once for every engine. Migrations in ``migrations/`` create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Repo and pipeline names: "repo" in project default, "project/repo" in another (63 + 1 + 63).
NAME = 127

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

branches = sa.Table(
    "branches",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("head", sa.String(32), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

branch_provenance = sa.Table(
    "branch_provenance",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("branch", sa.String(63), primary_key=True),
    sa.Column("from_repo", sa.String(NAME), primary_key=True),
    sa.Column("from_branch", sa.String(63), primary_key=True),
)

commits = sa.Table(
    "commits",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("repo", sa.String(NAME), nullable=False, index=True),
    sa.Column("branch", sa.String(63), nullable=True),
    sa.Column("parent", sa.String(32), nullable=True, index=True),
    sa.Column("tree", sa.LargeBinary(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("files", sa.BigInteger, nullable=False, default=0),
    sa.Column("commit_set", sa.String(32), nullable=False, index=True),
    # A merge commit's second parent (migration 0013): the commit merged into ``parent``'s line.
    sa.Column("merge_parent", sa.String(32), nullable=True, index=True),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("touched_at", sa.Float, nullable=False),
)

packs = sa.Table(
    "packs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("pack", sa.String(64), nullable=False, index=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("raw_length", sa.Integer, nullable=False),
    sa.Column("codec", sa.SmallInteger, nullable=False),
    sa.Column("touched_at", sa.Float, nullable=False),
)

# Commit provenance: the commits a commit was computed from (a pipeline's input commits).
commit_provenance = sa.Table(
    "commit_provenance",
    metadata,
    sa.Column("commit", sa.String(32), primary_key=True),
    sa.Column("from_commit", sa.String(32), primary_key=True, index=True),
)

# Pipelines (pps). A pipeline's spec history is one row per version.
pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

pipeline_versions = sa.Table(
    "pipeline_versions",
    metadata,
    sa.Column("pipeline", sa.String(NAME), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # sha256:<hex> of the image manifest transform.image resolved to, once (migration 0008)
    sa.Column("image_digest", sa.String(80), nullable=True),
)

# A job is one pipeline's run for one commit set (Pachyderm's pipeline@global-id).
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("pipeline", sa.String(NAME), primary_key=True),
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("output_commit", sa.String(32), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("datums_total", sa.Integer, nullable=False),
    sa.Column("processed", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("image_digest", sa.String(80), nullable=True),  # the image it ran (0008)
)

datums = sa.Table(
    "datums",
    metadata,
    sa.Column("pipeline", sa.String(NAME), primary_key=True),
    sa.Column("job", sa.String(32), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("output_tree", sa.LargeBinary(32), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("stderr_tail", sa.Text, nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("ix_datums_job_state", "pipeline", "job", "state"),
    sa.Index("ix_datums_hash", "pipeline", "hash"),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(NAME), nullable=False),
    sa.Column("job", sa.String(32), nullable=False),
    sa.Column("datum", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Index("ix_logs_job", "pipeline", "job"),
)

# Webhook deliveries already handled (by source and delivery id), with the answer given, so a
# redelivery gets the same answer and does nothing again (see ``tusk.pps.webhooks``).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
)

# Auth (tusk.auth): settings, tokens (only a keyed hash of each), role bindings, the audit log.
auth_settings = sa.Table(
    "auth_settings",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

auth_tokens = sa.Table(
    "auth_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("principal", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    # Tokens made for S3 (``create_token(s3=True)``): the secret, AES-GCM sealed under the key
    # of tusk.auth.sealing, which SigV4 needs in clear to check a signature. NULL otherwise.
    sa.Column("sealed", sa.LargeBinary, nullable=True),
    sa.Index("ix_auth_tokens_principal", "principal"),
)

role_bindings = sa.Table(
    "role_bindings",
    metadata,
    sa.Column("resource_type", sa.String(16), primary_key=True),  # cluster, project, repo
    sa.Column("resource", sa.String(NAME), primary_key=True),  # "" for the cluster
    sa.Column("principal", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(32), primary_key=True),
    sa.Index("ix_role_bindings_principal", "principal"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("principal", sa.String(200), nullable=False),
    sa.Column("edge", sa.String(16), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("resource_type", sa.String(16), nullable=False),
    sa.Column("resource", sa.String(200), nullable=False),
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_audit_ts", "ts"),
)

# Secrets (tusk.pps.secrets): the key names in clear (a JSON list), the values only as one
# AES-GCM ciphertext under a key kept outside this store ($TUSK_SECRET_KEY or
# <home>/secrets.key).
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("keys", sa.Text, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

# The S3 gateway (tusk.s3). ``s3_etags``: the ETag S3 clients were given for a file's content
# (a multipart object's is not its MD5), keyed by the file's content id.
s3_etags = sa.Table(
    "s3_etags",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("etag", sa.String(64), nullable=False),
)

# Multipart uploads in progress, and their parts: each part a detached tree (one file) whose
# root is a gc root until the upload completes, is aborted, or goes stale (gc expires it).
s3_uploads = sa.Table(
    "s3_uploads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("repo", sa.String(NAME), nullable=False),
    sa.Column("branch", sa.String(63), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("principal", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_s3_uploads_branch", "repo", "branch"),
)

s3_parts = sa.Table(
    "s3_parts",
    metadata,
    sa.Column(
        "upload_id",
        sa.String(32),
        sa.ForeignKey("s3_uploads.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("tree", sa.LargeBinary(32), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# S3 sessions (migration 0011): a datum of a pipeline with S3 inputs or s3_out reaches the
# gateway with its own access key; ``buckets`` (JSON) maps each bucket name it sees to
# [repo, branch, commit], and ``staging`` is the open commit its bucket "out" writes into
# (s3_out), which the datum's output tree is taken from. ``token_id``: the token (auth on)
# whose id is the access key, revoked with the session.
s3_sessions = sa.Table(
    "s3_sessions",
    metadata,
    sa.Column("access_key", sa.String(16), primary_key=True),
    sa.Column("pipeline", sa.String(NAME), nullable=False),
    sa.Column("job", sa.String(32), nullable=False),
    sa.Column("datum", sa.String(64), nullable=False),
    sa.Column("buckets", sa.Text, nullable=False),
    sa.Column("staging", sa.String(32), nullable=True),
    sa.Column("token_id", sa.String(16), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_s3_sessions_job", "pipeline", "job"),
)

# Long-running processes of spout and service pipelines (migration 0009): how each is doing,
# written by the scheduler that supervises it (owner), read by `tusk list pipeline`.
pipeline_processes = sa.Table(
    "pipeline_processes",
    metadata,
    sa.Column("pipeline", sa.String(NAME), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # spout or service
    sa.Column("state", sa.String(16), nullable=False),  # starting, running, restarting, crashed
    sa.Column("restarts", sa.Integer, nullable=False, default=0),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

# Branch triggers (migration 0010): branch (repo, branch) follows from_branch of the same repo
# when the conditions hold; fired_at is when it last moved (or the trigger was set).
branch_triggers = sa.Table(
    "branch_triggers",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("branch", sa.String(63), primary_key=True),
    sa.Column("from_branch", sa.String(63), nullable=False),
    sa.Column("size", sa.String(64), nullable=True),  # as written: "100MB"
    sa.Column("commits", sa.Integer, nullable=True),
    sa.Column("cron_spec", sa.String(256), nullable=True),
    sa.Column("all_conditions", sa.Boolean, nullable=False, default=False),
    sa.Column("fired_at", sa.Float, nullable=False),
    sa.Index("ix_branch_triggers_from", "repo", "from_branch"),
)

# Tags (migration 0012): a name for one commit of a repo, resolved wherever a ref is (after
# branches); a tagged commit is kept by retention and cannot be deleted or squashed away.
tags = sa.Table(
    "tags",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("commit_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_tags_commit", "commit_id"),
)


# Retention rules (migration 0013): which old commits of a repo ``tusk gc`` expires. A commit
# is kept when it is among the ``keep_last`` newest of its branch, newer than ``keep_within``
# seconds, tagged (with ``keep_tagged``), a branch head, or an ancestor of a kept merge's second
# line; the rest are squashed out of the history.
retention = sa.Table(
    "retention",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("keep_last", sa.Integer, nullable=True),
    sa.Column("keep_within", sa.Float, nullable=True),
    sa.Column("keep_tagged", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# Protected branches (migration 0014): branches no write moves directly, only ``tusk merge``
# from another branch (and a pipeline its own output branch).
branch_protection = sa.Table(
    "branch_protection",
    metadata,
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("branch", sa.String(63), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    # checks a merge into it must pass, a JSON list of names (migration 0015)
    sa.Column("require_checks", sa.Text, nullable=False, server_default="[]"),
)


# Checks (migration 0015): commands that must pass on a commit or a merge result before a
# branch they cover moves (``kind: check`` documents), and their results per commit. A
# protected branch may require checks by name (``require_checks``, a JSON list).
checks = sa.Table(
    "checks",
    metadata,
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("repo", sa.String(NAME), nullable=False),
    sa.Column("branch", sa.String(255), nullable=False),  # a glob: master, release-*
    sa.Column("on_commit", sa.Boolean, nullable=False),
    sa.Column("on_merge", sa.Boolean, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # the canonical document, JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_checks_repo", "repo"),
)
check_runs = sa.Table(
    "check_runs",
    metadata,
    sa.Column("commit_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("repo", sa.String(NAME), nullable=False),
    sa.Column("branch", sa.String(63), nullable=False),  # the branch it gated
    sa.Column("trigger", sa.String(16), nullable=False),  # commit | merge
    sa.Column("state", sa.String(16), nullable=False),  # passed | failed | timed out | error
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("log", sa.Text, nullable=False),
    sa.Index("ix_check_runs_repo", "repo"),
)


# References (migration 0016): objects a commit refers to where they live (``tusk import``).
# A referenced file's chunks are pieces of the object, indexed in ``chunks`` with codec 2 and
# the pack ``ref:<id>``; the row here says where the object is and which version was seen.
source_refs = sa.Table(
    "source_refs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.String(255), nullable=False),
    sa.Column("version", sa.String(1024), nullable=True),
    sa.Column("endpoint", sa.String(1024), nullable=True),  # --endpoint-url of the import
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# Holds (migration 0017): what a running process made and will land or remove itself: a
# check's candidate commit (kind ``commit``, name its id), the temporary branches of a merge
# with its pipelines or of a pipeline check (kind ``branch``, repo "": that name in every
# repo). ``owner`` is ``host:pid``: gc removes what dead processes held (tusk.pfs.holds).
holds = sa.Table(
    "holds",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("repo", sa.String(NAME), primary_key=True),
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("owner", sa.String(512), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
