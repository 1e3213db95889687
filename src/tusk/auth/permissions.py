"""What each operation needs, as data: the table beside the one check.

Every operation of every edge has a rule here, keyed ``"<edge>.<operation>"`` (a REST route's
operation id, later an S3 action or a gRPC method). ``AuthService.authorize`` refuses an
operation without a rule, and a test enumerates the routes of the OpenAPI document against
this table, so a new route without a rule fails a test instead of passing silently.
"""

from __future__ import annotations

from tusk.values import frozen

# Permissions
PUBLIC = "public"  # no token needed (health, version, a webhook signed by its own secret)
AUTHENTICATED = "authenticated"  # any valid token
REPO_READ = "repo.read"
REPO_WRITE = "repo.write"
REPO_OWN = "repo.own"  # delete the repo or its pipeline, set roles on it
REPO_CREATE = "repo.create"  # users and robots (the creator owns the new repo)
PIPELINE_CREATE = "pipeline.create"
CLUSTER_ADMIN = "cluster.admin"
# Run any pipeline's datums as a remote worker (tusk worker --address): claim them, read their
# inputs and secrets' values through the claim, store their outputs (tusk.pps.workqueue)
PIPELINE_WORK = "pipeline.work"
# On a project (Pachyderm's PROJECT_LIST_REPO, PROJECT_CREATE_REPO, PROJECT_DELETE and
# PROJECT_MODIFY_BINDINGS; the last two are one here: delete the project, set roles on it)
PROJECT_LIST_REPO = "project.list_repo"
PROJECT_CREATE_REPO = "project.create_repo"
PROJECT_OWN = "project.own"

REPO_ROLES = {
    "repoReader": {REPO_READ},
    "repoWriter": {REPO_READ, REPO_WRITE},
    "repoOwner": {REPO_READ, REPO_WRITE, REPO_OWN},
}
# Pachyderm's project roles (src/server/auth/server/roles.go): projectViewer lists the
# project's repos, projectWriter also creates repos in it (their creator owns them), and
# projectOwner is repoOwner of every repo of the project and may delete it and set roles on
# it. Neither projectViewer nor projectWriter reads or writes a repo someone else made: for
# that, bind a repo role on the project (repoReader, repoWriter, repoOwner), which holds for
# every repo of the project, as in Pachyderm.
PROJECT_ROLES = {
    "projectViewer": {PROJECT_LIST_REPO},
    "projectWriter": {PROJECT_LIST_REPO, PROJECT_CREATE_REPO},
    "projectOwner": {
        PROJECT_LIST_REPO, PROJECT_CREATE_REPO, PROJECT_OWN, REPO_READ, REPO_WRITE, REPO_OWN,
    },
}  # fmt: skip
ON_PROJECT = {**PROJECT_ROLES, **REPO_ROLES}  # the roles a project binding may hold
CLUSTER_ROLES = {
    "clusterAdmin": {
        AUTHENTICATED,
        REPO_READ,
        REPO_WRITE,
        REPO_OWN,
        REPO_CREATE,
        PIPELINE_CREATE,
        PIPELINE_WORK,
        CLUSTER_ADMIN,
        PROJECT_LIST_REPO,
        PROJECT_CREATE_REPO,
        PROJECT_OWN,
    },
    "pipelineCreator": {PIPELINE_CREATE},
    # the robot of Kubernetes worker pods: runs datums, reads and writes nothing else
    "pipelineWorker": {PIPELINE_WORK},
}
ROLES = {**REPO_ROLES, **PROJECT_ROLES, **CLUSTER_ROLES}


@frozen
class Rule:
    """``permission`` on the repo named by the path parameter ``repo`` (None: no repo), or
    on the project named by the path parameter ``project``.

    ``change``: the operation changes something, so every call is audited, allowed or not
    (a denied read is audited too). ``audited_by_handler``: a change whose allowed calls the
    handler audits itself, naming what it changed (the repo of a body).
    """

    permission: str
    repo: str | None = None
    change: bool = False
    audited_by_handler: bool = False  # a change whose resource only the handler knows
    project: str | None = None  # the path parameter naming the project (a project rule)


def _read(param: str = "repo") -> Rule:
    return Rule(REPO_READ, param)


def _write(param: str = "repo") -> Rule:
    return Rule(REPO_WRITE, param, change=True)


def _own(param: str = "repo") -> Rule:
    return Rule(REPO_OWN, param, change=True)


_AUTH = Rule(AUTHENTICATED)
_ADMIN = Rule(CLUSTER_ADMIN)
_ADMIN_CHANGE = Rule(CLUSTER_ADMIN, change=True)

# Handlers that need more than their rule (a second repo in the body, a job's pipeline, each
# input of a spec) call ``AuthService.require`` with the caller the rule let through.
REST: dict[str, Rule] = {
    # projects (a repo of another project than default is project/repo)
    "create_project": Rule(REPO_CREATE, audited_by_handler=True),  # the project is in the body
    "list_projects": _AUTH,
    "inspect_project": _AUTH,
    "delete_project": Rule(PROJECT_OWN, change=True, project="project"),
    # repos, branches, commits
    "create_repo": Rule(REPO_CREATE, audited_by_handler=True),  # the repo is in the body
    "list_repos": _AUTH,
    "inspect_repo": _read(),
    "delete_repo": _own(),
    "create_branch": _write(),
    "list_branches": _read(),
    "inspect_branch": _read(),
    "delete_branch": _write(),
    "merge": _write(),  # the source is a commit of the same repo
    # the server reads the bucket with its own credentials: and clusterAdmin (in the handler)
    "import_objects": _write(),
    "materialize": _write(),
    "protect_branch": _own(),  # a rule over the repo's writers
    "unprotect_branch": _own(),
    "list_protections": _read(),
    "list_checks": _read(),
    "delete_check": _own(),  # checks gate the repo's branches: its owner's call
    "list_check_runs": _read(),
    "inspect_check_run": _read(),
    "set_retention": _own(),  # it decides which history gc removes
    "get_retention": _read(),
    "delete_retention": _own(),
    "create_tag": _write(),
    "list_tags": _read(),
    "inspect_tag": _read(),
    "delete_tag": _write(),
    "start_commit": _write(),
    "list_commits": _read(),
    "inspect_commit": _read(),
    "finish_commit": _write(),
    "squash_commit": _write(),
    "wait_commit": _read(),
    "delete_commit": _write(),
    "inspect_commit_set": _AUTH,
    "wait_commit_set": _AUTH,
    # files
    "put_file": _write(),
    "put_tar": _write(),
    "delete_file": _write(),
    "copy_file": _write(),  # and read on the source repo (in the handler)
    "modify_files": _write(),  # and read on each copy's source repo (in the handler)
    "get_file": _read(),
    "get_tar": _read(),
    "inspect_file": _read(),
    "list_files": _read(),
    "glob_files": _read(),
    "diff_file": _read(),
    "lineage": _read(),
    # the store
    "fsck": _ADMIN,
    "gc": _ADMIN_CHANGE,
    "stats": _AUTH,
    "version": Rule(PUBLIC),
    "health": Rule(PUBLIC),
    # pipelines (a pipeline's repo is its output repo, of its name)
    # and read on every input; the pipeline is named in the body
    "create_pipeline": Rule(PIPELINE_CREATE, audited_by_handler=True),
    "list_pipelines": _AUTH,
    "inspect_pipeline": _read("name"),
    "update_pipeline": _own("name"),  # and read on every input
    "delete_pipeline": _own("name"),
    "stop_pipeline": _write("name"),
    "start_pipeline": _write("name"),
    "run_pipeline": _write("name"),
    "apply": Rule(PIPELINE_CREATE, change=True),  # and what each document needs
    "dry_run": _AUTH,  # and read on every input
    # jobs, datums, logs
    "list_jobs": _AUTH,
    "inspect_any_job": _AUTH,
    "inspect_job": _read("name"),
    "wait_any_job": _AUTH,
    "wait_job": _read("name"),
    "stop_any_job": Rule(AUTHENTICATED, change=True),  # and write on the job's pipeline
    "stop_job": _write("name"),
    "restart_datums": _write("name"),
    "list_datums": _read("name"),
    "inspect_datum": _read("name"),
    "datum_run": _read("name"),  # and read on each input repo to fetch its files
    # remote workers (tusk worker --address): a claim hands out the values of the pipeline's
    # secrets and a finish writes its output, so a cluster role: pipelineWorker or clusterAdmin.
    # Claims and renewals are a worker's polling (audited when denied, not each time).
    "claim_datums": Rule(PIPELINE_WORK),
    "renew_lease": Rule(PIPELINE_WORK),
    "finish_datum": Rule(PIPELINE_WORK, change=True),
    "logs": _read("name"),
    # webhooks carry their own HMAC; the action runs as the configured robot
    "github_webhook": Rule(PUBLIC, change=True),
    # auth itself
    "auth_activate": Rule(PUBLIC, change=True),  # only while auth is off
    "console_sign_in": Rule(PUBLIC),  # the token in the body is checked (and audited)
    "console_sign_out": Rule(PUBLIC),  # clears the console's cookies
    "auth_deactivate": _ADMIN_CHANGE,
    "auth_whoami": _AUTH,
    "auth_create_token": Rule(AUTHENTICATED, change=True),  # for others: clusterAdmin
    "auth_list_tokens": _AUTH,  # one's own; all for clusterAdmin
    "auth_revoke_token": Rule(AUTHENTICATED, change=True),  # one's own, or clusterAdmin
    "auth_get_repo_roles": _read(),
    "auth_set_repo_roles": _own(),
    "auth_get_cluster_roles": _ADMIN,
    "auth_set_cluster_roles": _ADMIN_CHANGE,
    "auth_check_repo": Rule(AUTHENTICATED, "repo"),
    "auth_get_project_roles": _AUTH,
    "auth_set_project_roles": Rule(PROJECT_OWN, change=True, project="project"),
    "audit": _ADMIN,
    # secrets: readable only by admins (and, through the scheduler, by the pipelines that
    # name them); no answer ever holds a value
    "create_secret": _ADMIN_CHANGE,
    "list_secrets": _ADMIN,
    "inspect_secret": _ADMIN,
    "delete_secret": _ADMIN_CHANGE,
    # images: loading or deleting one writes to the server's disk and decides what pipelines
    # run in
    "load_image": _ADMIN_CHANGE,
    "list_images": _AUTH,
    "delete_image": _ADMIN_CHANGE,
}

# The S3 gateway (tusk.s3): one rule per S3 action; a bucket ``branch.repo`` is its repo,
# passed as ``repo``. A client authenticates with a token made for S3 (its id is the access
# key id), so the same roles hold on every edge.
S3: dict[str, Rule] = {
    "ListBuckets": _AUTH,
    "CreateBucket": Rule(REPO_CREATE, audited_by_handler=True),  # the repo may not exist yet
    "DeleteBucket": _write(),
    "HeadBucket": _read(),
    "GetBucketLocation": _read(),
    "GetBucketVersioning": _read(),
    "ListObjects": _read(),
    "ListObjectsV2": _read(),
    "ListObjectVersions": _read(),
    "HeadObject": _read(),
    "GetObject": _read(),
    "ListParts": _read(),
    "ListMultipartUploads": _read(),
    "PutObject": _write(),
    "CopyObject": _write(),  # and read on the source's repo (AuthService.require)
    "DeleteObject": _write(),
    "DeleteObjects": _write(),
    "CreateMultipartUpload": _write(),
    "UploadPart": _write(),
    "UploadPartCopy": _write(),  # and read on the source's repo (AuthService.require)
    "CompleteMultipartUpload": _write(),
    "AbortMultipartUpload": _write(),
}

# Pachyderm's gRPC API (tusk.grpcapi): one rule per RPC, as Pachyderm's own auth checks it;
# the repo of the request is passed as ``repo``.
GRPC: dict[str, Rule] = {
    "versionpb_v2.API/GetVersion": Rule(PUBLIC),
    "auth_v2.API/WhoAmI": _AUTH,
    "auth_v2.API/Activate": Rule(PUBLIC, change=True),  # only while auth is off
    "auth_v2.API/Deactivate": _ADMIN_CHANGE,
    "auth_v2.API/GetRobotToken": _ADMIN_CHANGE,
    "auth_v2.API/RevokeAuthToken": Rule(AUTHENTICATED, change=True),  # one's own, or admin
    "auth_v2.API/GetRoleBinding": _AUTH,  # and read on a repo, clusterAdmin for the cluster
    "auth_v2.API/ModifyRoleBinding": Rule(AUTHENTICATED, change=True),  # and own the resource
    "auth_v2.API/Authorize": _AUTH,  # the caller's own permissions
    "auth_v2.API/GetPermissions": _AUTH,
    # transactions: each request in one passes its own RPC's rule when added and when run
    "transaction_v2.API/StartTransaction": _AUTH,
    "transaction_v2.API/InspectTransaction": _AUTH,
    "transaction_v2.API/ListTransaction": _AUTH,
    "transaction_v2.API/DeleteTransaction": _AUTH,
    "transaction_v2.API/FinishTransaction": _AUTH,
    "transaction_v2.API/BatchTransaction": _AUTH,
    "pfs_v2.API/CreateRepo": Rule(REPO_CREATE, audited_by_handler=True),  # an update: write
    "pfs_v2.API/InspectRepo": _read(),
    "pfs_v2.API/ListRepo": _AUTH,  # each repo listed only if readable
    "pfs_v2.API/DeleteRepo": _own(),
    "pfs_v2.API/CreateBranch": _write(),
    "pfs_v2.API/InspectBranch": _read(),
    "pfs_v2.API/ListBranch": _read(),
    "pfs_v2.API/DeleteBranch": _write(),
    "pfs_v2.API/StartCommit": _write(),
    "pfs_v2.API/FinishCommit": _write(),
    "pfs_v2.API/InspectCommit": _read(),
    "pfs_v2.API/ListCommit": _read(),
    "pfs_v2.API/ModifyFile": _write(),  # and read on a copy's source (AuthService.require)
    "pfs_v2.API/GetFile": _read(),
    "pfs_v2.API/InspectFile": _read(),
    "pfs_v2.API/ListFile": _read(),
    "pfs_v2.API/WalkFile": _read(),
    "pfs_v2.API/GlobFile": _read(),
    "pfs_v2.API/GetFileTAR": _read(),
    "pfs_v2.API/DiffFile": _read(),  # and read on the old file's repo (AuthService.require)
    "pfs_v2.API/InspectCommitSet": _AUTH,  # each commit shown only if its repo is readable
    "pfs_v2.API/ListCommitSet": _AUTH,  # the same
    "pfs_v2.API/SubscribeCommit": _read(),
    "pfs_v2.API/SquashCommitSet": _write(),  # on each repo of the set (AuthService.require)
    "pfs_v2.API/DropCommitSet": _write(),  # the same
    # projects, as the REST API's (a new project's creator owns it)
    "pfs_v2.API/CreateProject": Rule(REPO_CREATE, audited_by_handler=True),
    "pfs_v2.API/InspectProject": _AUTH,
    "pfs_v2.API/ListProject": _AUTH,
    "pfs_v2.API/DeleteProject": Rule(PROJECT_OWN, change=True, project="project"),
    # a pipeline's repo is its output repo
    "pps_v2.API/CreatePipeline": Rule(PIPELINE_CREATE, audited_by_handler=True),  # + inputs
    "pps_v2.API/CreatePipelineV2": Rule(PIPELINE_CREATE, audited_by_handler=True),  # + inputs
    "pps_v2.API/InspectPipeline": _read(),
    "pps_v2.API/ListPipeline": _AUTH,  # each pipeline listed only if readable
    "pps_v2.API/DeletePipeline": _own(),
    "pps_v2.API/StartPipeline": _write(),
    "pps_v2.API/StopPipeline": _write(),
    "pps_v2.API/InspectJob": _read(),
    "pps_v2.API/ListJob": _AUTH,  # each job listed only if its pipeline is readable
    "pps_v2.API/ListDatum": _read(),
    "pps_v2.API/InspectDatum": _read(),
    "pps_v2.API/GetLogs": _read(),
    "pps_v2.API/SubscribeJob": _read(),
    "pps_v2.API/StopJob": _write(),
    "pps_v2.API/RestartDatum": _write(),
}

RULES: dict[str, Rule] = {
    **{f"rest.{name}": rule for name, rule in REST.items()},
    **{f"s3.{name}": rule for name, rule in S3.items()},
    **{f"grpc.{name}": rule for name, rule in GRPC.items()},
}


def permissions_of(roles: set[str]) -> set[str]:
    out: set[str] = set()
    for role in roles:
        out |= ROLES.get(role, set())
    return out
