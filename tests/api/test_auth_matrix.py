"""Every REST operation against every kind of caller: the rule table, enforced over HTTP.

One live server for the module (auth on, a repo ``r`` with ``a.txt`` on master, a pipeline
``p`` reading it). For each identity, every operation its roles do not allow is sent with
plausible path parameters and a body that validates, so the answer comes from the gate and
not from validation: 401 without a valid token, 403 for a known identity lacking a role, a
JSON error of one line, and the store unchanged afterwards (repos, branches, commits, roles,
tokens, pipelines, and fsck clean). The expected outcome comes from a small model here, not
from ``tusk.auth.permissions``' own role table.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from apihelpers import Live, start_live, stop_live

from tusk.auth.permissions import REST, Rule

API = "/api/v1"
ALLOWED = 0  # expected() for a call the gate lets through
TOKEN = re.compile(r"^tusk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")

# The model: what each role grants (independent of tusk.auth.permissions.ROLES).
REPO_ROLE_PERMS = {
    "repoReader": {"repo.read"},
    "repoWriter": {"repo.read", "repo.write"},
    "repoOwner": {"repo.read", "repo.write", "repo.own"},
}
# Bound on a project, as Pachyderm's: its own roles, and the repo roles for each repo of it.
PROJECT_ROLE_PERMS = {
    "projectViewer": set(),
    "projectWriter": {"project.create_repo"},
    "projectOwner": {"project.create_repo", "project.own", *REPO_ROLE_PERMS["repoOwner"]},
    **REPO_ROLE_PERMS,
}


def pipeline_spec(name: str, repo: str = "r") -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": "/*"}},
        "transform": {"cmd": ["true"]},
    }


@dataclass(frozen=True)
class Identity:
    name: str
    headers: dict[str, str]
    valid: bool = False  # a token the server accepts
    principal: str = ""
    cluster_roles: frozenset[str] = frozenset()
    repo_roles: dict[str, str] = field(default_factory=dict)  # repo -> role
    project_roles: dict[str, str] = field(default_factory=dict)  # project -> role


def expected(rule: Rule, who: Identity, repo: str | None) -> int:
    """ALLOWED, 401 or 403: what the rule should answer ``who`` (``repo``: the path's repo, or
    its project for a rule naming one)."""
    perm = rule.permission
    if perm == "public":
        return ALLOWED
    if not who.valid:
        return 401
    if perm == "authenticated" or "clusterAdmin" in who.cluster_roles:
        return ALLOWED
    if perm == "repo.create":
        return 403 if who.principal.startswith("pipeline:") else ALLOWED
    if perm in ("pipeline.create", "cluster.admin", "pipeline.work"):
        return 403  # pipelineCreator and pipelineWorker are given to no identity here
    if perm.startswith("project."):
        assert rule.project is not None and repo is not None, (perm, repo)
        role = who.project_roles.get(repo)
        return ALLOWED if role and perm in PROJECT_ROLE_PERMS[role] else 403
    assert perm.startswith("repo.") and repo is not None, (perm, repo)
    role = who.repo_roles.get(repo)
    on_project = who.project_roles.get(repo.rpartition("/")[0] or "default")
    perms = REPO_ROLE_PERMS[role] if role else set()
    perms |= PROJECT_ROLE_PERMS[on_project] if on_project else set()
    return ALLOWED if perm in perms else 403


def test_expected_model() -> None:
    reader = Identity("reader", {}, True, "user:reader", repo_roles={"r": "repoReader"})
    pipe = Identity("pipe", {}, True, "pipeline:p", repo_roles={"r": "repoReader"})
    admin = Identity("admin", {}, True, "user:root", frozenset({"clusterAdmin"}))
    anon = Identity("anon", {})
    assert expected(REST["health"], anon, None) == ALLOWED
    assert expected(REST["list_repos"], anon, None) == 401
    assert expected(REST["list_repos"], reader, None) == ALLOWED
    assert expected(REST["inspect_repo"], reader, "r") == ALLOWED
    assert expected(REST["inspect_repo"], reader, "p") == 403
    assert expected(REST["put_file"], reader, "r") == 403
    assert expected(REST["create_repo"], reader, None) == ALLOWED
    assert expected(REST["create_repo"], pipe, None) == 403
    assert expected(REST["fsck"], reader, None) == 403
    assert expected(REST["delete_repo"], admin, "r") == ALLOWED
    powner = Identity("p", {}, True, "user:po", project_roles={"default": "projectOwner"})
    pwriter = Identity("p", {}, True, "user:pw", project_roles={"default": "projectWriter"})
    assert expected(REST["delete_repo"], powner, "r") == ALLOWED
    assert expected(REST["delete_repo"], powner, "other/r") == 403
    assert expected(REST["auth_set_project_roles"], powner, "default") == ALLOWED
    assert expected(REST["auth_set_project_roles"], pwriter, "default") == 403
    assert expected(REST["auth_set_project_roles"], reader, "default") == 403
    assert expected(REST["inspect_repo"], pwriter, "r") == 403
    assert expected(REST["claim_datums"], pipe, None) == 403  # not even its own pipeline's
    assert expected(REST["finish_datum"], admin, None) == ALLOWED


# The server


@dataclass
class World:
    live: Live
    http: httpx.Client
    root: dict[str, str]
    identities: dict[str, Identity]
    operations: dict[str, tuple[str, str, list[str]]]  # op id -> (method, path, path params)
    params: dict[str, str]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    return resp.json() if resp.content else None


def _token(http: httpx.Client, root: dict[str, str], principal: str, **kw: Any) -> dict[str, Any]:
    out = _ok(
        http.post(f"{API}/auth/tokens", json={"principal": principal, **kw}, headers=root), 201
    )
    assert TOKEN.match(out["token"]), out["token"]
    return out


def _set_role(http: httpx.Client, root: dict[str, str], repo: str, who: str, role: str) -> None:
    _ok(
        http.put(
            f"{API}/auth/repos/{repo}/roles", json={"principal": who, "roles": [role]}, headers=root
        )
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TUSK_METADATA_URL", raising=False)  # SQLite
        live = start_live(tmp_path_factory.mktemp("auth-matrix") / "home")
        http = httpx.Client(base_url=live.url, timeout=40)
        try:
            yield _setup(live, http)
        finally:
            http.close()
            stop_live(live)


def _setup(live: Live, http: httpx.Client) -> World:
    doc = _ok(http.get("/openapi.json"))
    operations: dict[str, tuple[str, str, list[str]]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert op["operationId"] not in operations, op["operationId"]
            operations[op["operationId"]] = (method.upper(), path, names)

    root = bearer(_ok(http.post(f"{API}/auth/activate"), 201)["token"])
    # First, so that it has expired by the time the setup is done.
    expiring = _token(http, root, "user:expired", ttl=1)

    _ok(http.post(f"{API}/repos", json={"name": "r"}, headers=root), 201)
    put = http.put(f"{API}/repos/r/commits/master/files/a.txt", content=b"hello\n", headers=root)
    _ok(put)
    _ok(http.post(f"{API}/pipelines", json={"spec": pipeline_spec("p")}, headers=root), 201)

    identities = {
        "no_token": Identity("no_token", {}),
        "malformed_header": Identity("malformed_header", {"Authorization": "Basic dXNlcjpwdw=="}),
        "not_a_token": Identity("not_a_token", bearer("tusk_not-a-token")),
    }
    for user, role in [("reader", "repoReader"), ("writer", "repoWriter"), ("owner", "repoOwner")]:
        principal = f"user:{user}"
        for repo in ("r", "p"):
            _set_role(http, root, repo, principal, role)
        token = _token(http, root, principal)["token"]
        identities[user] = Identity(
            user, bearer(token), True, principal, repo_roles={"r": role, "p": role}
        )
    # Roles on project default (r and p are in it): projectOwner owns both, projectWriter
    # only creates repos there (as in Pachyderm: it reads none it did not create).
    for user, role in [("project_owner", "projectOwner"), ("project_writer", "projectWriter")]:
        principal = f"user:{user}"
        body = {"principal": principal, "roles": [role]}
        _ok(http.put(f"{API}/auth/projects/default/roles", json=body, headers=root))
        token = _token(http, root, principal)["token"]
        identities[user] = Identity(
            user, bearer(token), True, principal, project_roles={"default": role}
        )
    root_id = _ok(http.get(f"{API}/auth/whoami", headers=root))["token_id"]
    identities["forged_token"] = Identity("forged_token", bearer(f"tusk_{root_id}_{'A' * 43}"))
    identities["root"] = Identity(
        "root", root, True, "user:root", frozenset({"clusterAdmin"}), {"r": "repoOwner"}
    )

    # The pipeline's own identity: read on its input, write on its output repo.
    roles_r = _ok(http.get(f"{API}/auth/repos/r/roles", headers=root))
    roles_p = _ok(http.get(f"{API}/auth/repos/p/roles", headers=root))
    assert roles_r.get("pipeline:p") == ["repoReader"], roles_r
    assert roles_p.get("pipeline:p") == ["repoWriter"], roles_p
    assert roles_p.get("user:root") == ["repoOwner"], roles_p
    pipe = _token(http, root, "pipeline:p")["token"]
    identities["pipeline"] = Identity(
        "pipeline",
        bearer(pipe),
        True,
        "pipeline:p",
        repo_roles={"r": "repoReader", "p": "repoWriter"},
    )

    # Revoked and expired tokens, of identities that own r (the token, not the role, fails).
    revoked = _token(http, root, "user:revoked")
    _set_role(http, root, "r", "user:revoked", "repoOwner")
    _set_role(http, root, "r", "user:expired", "repoOwner")
    ok_before = http.get(f"{API}/repos/r", headers=bearer(revoked["token"]))
    assert ok_before.status_code == 200, ok_before.text
    _ok(http.delete(f"{API}/auth/tokens/{revoked['info']['id']}", headers=root))
    identities["revoked"] = Identity("revoked", bearer(revoked["token"]))
    deadline = time.monotonic() + 15
    while True:
        resp = http.get(f"{API}/auth/whoami", headers=bearer(expiring["token"]))
        if resp.status_code == 401:
            break
        assert resp.status_code == 200, resp.text
        assert time.monotonic() < deadline, "the 1 s token never expired"
        time.sleep(0.05)
    identities["expired"] = Identity("expired", bearer(expiring["token"]))

    # Real ids for path parameters where there are some: run p's job once.
    live.client().run_scheduler(once=True)
    spare = _token(http, root, "user:spare")["info"]["id"]
    commit = _ok(http.get(f"{API}/repos/r/commits/master", headers=root))
    _ok(
        http.post(f"{API}/repos/r/tags", json={"name": "v1", "commit": "master"}, headers=root), 201
    )
    check = {"kind": "check", "name": "r-check", "repo": "r", "branch": "none-*", "cmd": ["true"]}
    _ok(http.post(f"{API}/apply", json={"documents": [{"spec": check}]}, headers=root))
    jobs = _ok(http.get(f"{API}/jobs", headers=root))
    assert [j["state"] for j in jobs] == ["success"], jobs
    datums = _ok(http.get(f"{API}/pipelines/p/jobs/{jobs[0]['id']}/datums", headers=root))
    assert datums, jobs
    params = {
        "repo": "r",
        "name": "p",
        "ref": "master",
        "branch": "master",
        "path": "a.txt",
        "job": jobs[0]["id"],
        "commit_set": commit["commit_set"],
        "token_id": spare,
        "datum": datums[0]["id"],
        "project": "default",
        "tag": "v1",
        "check": "r-check",
    }
    return World(live, http, root, identities, operations, params)


# 1. Every route has a rule, and every rule a route


def test_every_route_has_a_rule(world: World) -> None:
    routes = set(world.operations)
    assert len(routes) > 50
    assert sorted(routes - set(REST)) == [], "routes without a rule in tusk.auth.permissions.REST"
    assert sorted(set(REST) - routes) == [], "rules in REST for routes that do not exist"
    for op, (_method, path, names) in world.operations.items():
        rule = REST[op]
        if rule.repo is not None:
            assert rule.repo in names, f"{op}: rule names {rule.repo!r}, not a param of {path}"
        if rule.project is not None:
            assert rule.project in names, f"{op}: rule names {rule.project!r}, not in {path}"
            assert rule.repo is None, f"{op}: a rule names a repo or a project, not both"


# 2. The matrix


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"intruder\n"
        info = tarfile.TarInfo("b.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


JSON_BODIES: dict[str, Any] = {
    "create_project": {"name": "intruder"},
    "create_repo": {"name": "intruder"},
    "create_branch": {"name": "intruder", "head": "master"},
    "create_tag": {"name": "intruder", "commit": "master"},
    "merge": {"source": "master"},
    "import_objects": {"url": "s3://intruder-bucket/x"},
    "materialize": {},
    "set_retention": {"keep_last": 5},
    "start_commit": {"branch": "master"},
    "copy_file": {"src": "r@master:/a.txt"},
    "modify_files": {"changes": [{"copy": "r@master:/a.txt", "to": "/b.txt"}]},
    "gc": {"grace": 0},
    "create_pipeline": {"spec": pipeline_spec("intruder")},
    "update_pipeline": {"spec": pipeline_spec("p"), "reprocess": True},
    "apply": {"documents": [{"spec": pipeline_spec("intruder")}]},
    "dry_run": {"spec": pipeline_spec("intruder")},
    "github_webhook": {},
    "auth_create_token": {"principal": "user:intruder"},
    "auth_set_repo_roles": {"principal": "user:intruder", "roles": ["repoOwner"]},
    "auth_set_project_roles": {"principal": "user:intruder", "roles": ["projectOwner"]},
    "auth_set_cluster_roles": {"principal": "user:intruder", "roles": ["clusterAdmin"]},
    "create_secret": {
        "manifest": {"kind": "Secret", "metadata": {"name": "intruder"}, "stringData": {"k": "v"}}
    },
    "claim_datums": {"worker": "intruder"},
    "renew_lease": {"lease": "remote:intruder:0", "datums": ["0"]},
}
RAW_BODIES: dict[str, tuple[bytes, str]] = {
    "put_file": (b"intruder\n", "application/octet-stream"),
    "put_tar": (_tar(), "application/x-tar"),
    "finish_datum": (_tar(), "application/x-tar"),
}
QUERIES: dict[str, dict[str, str]] = {
    "glob_files": {"pattern": "/*"},
    "finish_datum": {"lease": "remote:intruder:0"},
}


def _request(world: World, op: str, headers: dict[str, str]) -> httpx.Response:
    method, path, names = world.operations[op]
    url = path.format(**{n: world.params[n] for n in names})
    kw: dict[str, Any] = {"headers": dict(headers), "params": QUERIES.get(op)}
    if op in JSON_BODIES:
        kw["json"] = JSON_BODIES[op]
    elif op in RAW_BODIES:
        kw["content"], kw["headers"]["Content-Type"] = RAW_BODIES[op]
    return world.http.request(method, url, **kw)


def snapshot(world: World) -> dict[str, Any]:
    """What a denied call must not change, read as root; fsck must find nothing wrong."""
    get, root = world.http.get, world.root
    repos = {}
    for repo in sorted(r["name"] for r in _ok(get(f"{API}/repos", headers=root))):
        branches = _ok(get(f"{API}/repos/{repo}/branches", headers=root))
        commits = _ok(get(f"{API}/repos/{repo}/commits", headers=root))
        repos[repo] = {
            "branches": sorted((b["name"], b["head"]) for b in branches),
            "commits": sorted(c["id"] for c in commits),
            "roles": _ok(get(f"{API}/auth/repos/{repo}/roles", headers=root)),
        }
    report = _ok(world.http.post(f"{API}/fsck", headers=root))
    assert set(report) >= {"ok", "problems", "notes", "counts"}, report
    assert report["ok"] is True and report["problems"] == [], report
    return {
        "repos": repos,
        "pipelines": sorted(
            (p["name"], p.get("state")) for p in _ok(get(f"{API}/pipelines", headers=root))
        ),
        "jobs": sorted(j["id"] for j in _ok(get(f"{API}/jobs", headers=root))),
        "cluster_roles": _ok(get(f"{API}/auth/cluster/roles", headers=root)),
        "project_roles": _ok(get(f"{API}/auth/projects/default/roles", headers=root)),
        "tokens": sorted(
            (t["id"], t["principal"], t["revoked_at"] is None)
            for t in _ok(get(f"{API}/auth/tokens", headers=root))
        ),
        "counts": report["counts"],
    }


IDENTITIES = [
    "no_token",
    "malformed_header",
    "not_a_token",
    "forged_token",
    "expired",
    "revoked",
    "reader",
    "writer",
    "owner",
    "project_owner",
    "project_writer",
    "root",
    "pipeline",
]


@pytest.mark.parametrize("name", IDENTITIES)
def test_denied_operations(world: World, name: str) -> None:
    who = world.identities[name]
    denied = {}
    for op in sorted(world.operations):
        rule = REST[op]
        param = rule.repo or rule.project
        outcome = expected(rule, who, world.params[param] if param else None)
        if outcome != ALLOWED:
            denied[op] = outcome
    if name == "root":
        assert denied == {}
        return
    assert denied, name

    before = snapshot(world)
    problems = []
    for op, status in denied.items():
        resp = _request(world, op, who.headers)
        what = f"{op} ({resp.request.method} {resp.request.url.path}) as {name}"
        if resp.status_code != status:
            problems.append(f"{what}: {resp.status_code} (wanted {status}): {resp.text[:300]}")
            continue
        try:
            error = resp.json()["error"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{what}: not a JSON error: {resp.text[:300]}")
            continue
        code = "unauthorized" if status == 401 else "permission_denied"
        message = error.get("message", "")
        if error.get("code") != code or not message or "\n" in message:
            problems.append(f"{what}: bad error {error!r}")
        elif status == 403 and who.principal not in message:
            problems.append(f"{what}: 403 message does not name {who.principal}: {message!r}")
    after = snapshot(world)
    if after != before:
        problems.append(f"denied calls of {name} changed the store: {before} -> {after}")
    assert problems == [], "\n".join(problems)

    if who.valid:  # every denial of a known identity is audited
        audit = _ok(
            world.http.get(f"{API}/audit", params={"user": who.principal}, headers=world.root)
        )
        refused = {e["operation"] for e in audit if not e["allowed"]}
        assert sorted(set(denied) - refused) == [], f"denials of {name} missing from the audit log"


SAFE_READS = ["inspect_repo", "list_files", "get_file", "list_branches", "inspect_pipeline"]


@pytest.mark.parametrize("name", ["reader", "writer", "owner", "project_owner", "root", "pipeline"])
def test_allowed_reads_pass_the_gate(world: World, name: str) -> None:
    who = world.identities[name]
    for op in SAFE_READS:
        assert expected(REST[op], who, world.params[REST[op].repo or "repo"]) == ALLOWED
        resp = _request(world, op, who.headers)
        assert resp.status_code == 200, (op, name, resp.text[:300])
    content = world.http.get(f"{API}/repos/r/commits/master/files/a.txt", headers=who.headers)
    assert content.content == b"hello\n"


def test_public_routes_need_no_token(world: World) -> None:
    for op in ("health", "version"):
        resp = _request(world, op, {})
        assert resp.status_code == 200, (op, resp.text[:300])


def test_denials_do_not_need_a_real_resource(world: World) -> None:
    """A repo that does not exist is refused the same way: no leak of what exists."""
    reader = world.identities["reader"].headers
    for url in (f"{API}/repos/nosuch", f"{API}/repos/r/commits/master/files/nosuch.txt"):
        assert world.http.get(url).status_code == 401
    missing = world.http.get(f"{API}/repos/nosuch", headers=reader)
    present = world.http.delete(f"{API}/repos/r", headers=reader)
    assert missing.status_code == 403, missing.text
    assert present.status_code == 403, present.text


# What the rule table leaves to handlers: a second repo, a job's pipeline, listings.


def test_create_repo_update_needs_a_role_on_the_repo(world: World) -> None:
    _ok(world.http.post(f"{API}/repos", json={"name": "victim"}, headers=world.root), 201)
    nobody = bearer(_token(world.http, world.root, "user:nobody")["token"])
    body = {"name": "victim", "description": "changed", "update": True}
    resp = world.http.post(f"{API}/repos", json=body, headers=nobody)
    assert resp.status_code == 403, resp.text


def test_inspect_any_job_needs_read_on_its_pipeline(world: World) -> None:
    nobody = bearer(_token(world.http, world.root, "user:nobody2")["token"])
    job = world.params["job"]
    assert world.http.get(f"{API}/pipelines/p/jobs/{job}", headers=nobody).status_code == 403
    resp = world.http.get(f"{API}/jobs/{job}", headers=nobody)
    assert resp.status_code == 403, resp.text
    assert world.http.get(f"{API}/jobs/{job}/wait", headers=nobody).status_code == 403
    assert world.http.get(f"{API}/jobs", headers=nobody).json() == []  # none it may read
    assert world.http.get(f"{API}/pipelines", headers=nobody).json() == []


def test_provenance_and_apply_need_their_roles(world: World) -> None:
    writer = world.identities["writer"].headers
    world.http.post(f"{API}/repos", json={"name": "secret"}, headers=world.root)
    _ok(world.http.post(f"{API}/repos/secret/branches", json={"name": "master"},
                        headers=world.root), 201)  # fmt: skip
    body = {"name": "feed", "provenance": ["secret@master"]}
    before = world.http.get(f"{API}/repos/secret/branches", headers=world.root).json()
    resp = world.http.post(f"{API}/repos/r/branches", json=body, headers=writer)
    assert resp.status_code == 403 and "secret" in resp.json()["error"]["message"]
    assert world.http.get(f"{API}/repos/secret/branches", headers=world.root).json() == before
    creator = _token(world.http, world.root, "user:creator")
    role = {"principal": "user:creator", "roles": ["pipelineCreator"]}
    _ok(world.http.put(f"{API}/auth/cluster/roles", headers=world.root, json=role))
    doc = {"spec": {"kind": "repo", "name": "secret", "description": "pwned"}, "source": "x"}
    resp = world.http.post(
        f"{API}/apply", json={"documents": [doc]}, headers=bearer(creator["token"])
    )
    assert resp.status_code == 403, resp.text
    assert (
        world.http.get(f"{API}/repos/secret", headers=world.root).json()["description"] != "pwned"
    )
