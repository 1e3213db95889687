"""Roles on a project, as Pachyderm has them, through the one check on a live server.

projectViewer lists a project's repos, projectWriter also creates repos in it, projectOwner
owns every repo of it (and may set roles on it); a repo role bound on a project holds on every
repo of the project. A caller's roles on a repo are its roles there plus those on the repo's
project, read with its token in one query.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from apihelpers import Live

from tusk import Client
from tusk.auth.permissions import REPO_CREATE
from tusk.auth.service import AuthService, Caller
from tusk.errors import InvalidArgument, PermissionDenied

ENGINES = ("sqlite", "postgresql")
API = "/api/v1"
RESEARCH_IMAGES = "research%2Fimages"  # research/images in a path segment


@dataclass
class Team:
    live: Live
    web: httpx.Client
    auth: AuthService  # the server's store, for what only the service offers
    tokens: dict[str, str]  # name -> token; "root" is user:root

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.web.request(method, f"{API}{path}", headers=headers, **kw)

    def ok(self, who: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        resp = self.call(who, method, path, **kw)
        assert resp.status_code == status, (method, path, who, resp.text)
        return resp.json() if resp.content else None

    def error(self, who: str, method: str, path: str, status: int, **kw: Any) -> str:
        resp = self.call(who, method, path, **kw)
        assert resp.status_code == status, (method, path, who, resp.text)
        message = resp.json()["error"]["message"]
        assert isinstance(message, str) and "\n" not in message
        return message

    def set_project_roles(self, project: str, principal: str, *roles: str) -> Any:
        body = {"principal": principal, "roles": list(roles)}
        return self.ok("root", "PUT", f"/auth/projects/{project}/roles", json=body)


@pytest.fixture
def team(live: Live) -> Iterator[Team]:
    with httpx.Client(base_url=live.url, timeout=60) as web:
        activated = web.post(f"{API}/auth/activate")
        assert activated.status_code == 201, activated.text
        t = Team(
            live, web, AuthService(live.services.pfs.meta), {"root": activated.json()["token"]}
        )
        t.ok("root", "POST", "/projects", 201, json={"name": "research"})
        # Its creator owns it; root is clusterAdmin anyway, so the tests start from no binding.
        assert t.set_project_roles("research", "user:root", "none") == {}
        for repo in ("research/images", "images"):
            t.ok("root", "POST", "/repos", 201, json={"name": repo})
        for seg in (RESEARCH_IMAGES, "images"):
            t.ok("root", "PUT", f"/repos/{seg}/commits/master/files/a.txt", content=b"alpha\n")
        for name in ("alice", "bob", "carol", "dave"):
            out = t.ok("root", "POST", "/auth/tokens", 201, json={"principal": f"user:{name}"})
            t.tokens[name] = out["token"]
        yield t


def put(team: Team, who: str, seg: str, name: str = "b.txt") -> httpx.Response:
    return team.call(who, "PUT", f"/repos/{seg}/commits/master/files/{name}", content=b"x\n")


def test_a_repo_role_on_a_project_holds_on_every_repo_of_it_and_nowhere_else(team: Team) -> None:
    team.set_project_roles("research", "user:alice", "repoWriter")
    assert put(team, "alice", RESEARCH_IMAGES).status_code == 200
    got = team.call("alice", "GET", f"/repos/{RESEARCH_IMAGES}/commits/master/files/b.txt")
    assert got.status_code == 200 and got.content == b"x\n"
    # default's images is another project's repo
    denied = put(team, "alice", "images")
    assert denied.status_code == 403, denied.text
    message = denied.json()["error"]["message"]
    assert "user:alice may not put_file on repo images" in message
    assert "repoWriter on the repo or on project default" in message
    # deleting needs repoOwner (or projectOwner)
    message = team.error("alice", "DELETE", f"/repos/{RESEARCH_IMAGES}", 403)
    assert "repoOwner" in message and "repoWriter on project research" in message
    assert team.ok("root", "GET", f"/repos/{RESEARCH_IMAGES}")["name"] == "research/images"
    # nor may she set roles on the project
    body = {"principal": "user:alice", "roles": ["projectOwner"]}
    message = team.error("alice", "PUT", "/auth/projects/research/roles", 403, json=body)
    assert "projectOwner" in message
    roles = team.ok("root", "GET", "/auth/projects/research/roles")
    assert roles == {"user:alice": ["repoWriter"]}
    # her access, as she sees it
    access = team.ok("alice", "GET", f"/auth/repos/{RESEARCH_IMAGES}/check")
    assert access["roles"] == ["repoWriter (project research)"], access
    assert access["permissions"] == ["repo.read", "repo.write"], access

    # The audit log has each denial, with its resource.
    audit = team.ok("root", "GET", "/audit", params={"user": "user:alice"})
    denials = {
        (e["operation"], e["resource_type"], e["resource"]) for e in audit if not e["allowed"]
    }
    assert denials == {
        ("put_file", "repo", "images"),
        ("delete_repo", "repo", "research/images"),
        ("auth_set_project_roles", "project", "research"),
    }, audit


def test_a_reader_of_a_project_reads_and_does_not_write(team: Team) -> None:
    team.set_project_roles("research", "user:bob", "repoReader")
    got = team.call("bob", "GET", f"/repos/{RESEARCH_IMAGES}/commits/master/files/a.txt")
    assert got.status_code == 200 and got.content == b"alpha\n"
    assert team.ok("bob", "GET", f"/repos/{RESEARCH_IMAGES}/commits")  # one commit
    message = put(team, "bob", RESEARCH_IMAGES).json()["error"]["message"]
    assert "user:bob may not put_file on repo research/images" in message
    assert "(has repoReader on project research there)" in message
    assert team.call("bob", "GET", "/repos/images").status_code == 403
    bob = Caller("user:bob")
    assert team.auth.readable(bob, {"research/images", "images"}) == {"research/images"}
    # Removing the role removes the access on the very next request.
    team.set_project_roles("research", "user:bob", "none")
    assert team.call("bob", "GET", f"/repos/{RESEARCH_IMAGES}").status_code == 403
    assert team.ok("root", "GET", "/auth/projects/research/roles") == {}


def test_project_writer_creates_repos_in_the_project_and_reads_no_other(team: Team) -> None:
    """Pachyderm's projectWriter: PROJECT_CREATE_REPO, and no access to others' repos."""
    team.set_project_roles("research", "user:alice", "projectWriter")
    message = put(team, "alice", RESEARCH_IMAGES).json()["error"]["message"]
    assert "it needs repoWriter" in message and "projectWriter on project research" in message
    assert team.call("alice", "GET", f"/repos/{RESEARCH_IMAGES}").status_code == 403
    # Creating a repo in research: the check a create_repo handler makes for the new name.
    alice, dave = Caller("user:alice"), Caller("user:dave")
    team.auth.require(alice, REPO_CREATE, "research/mine", edge="rest", operation="create_repo")
    team.auth.require(dave, REPO_CREATE, "scratch", edge="rest", operation="create_repo")
    with pytest.raises(PermissionDenied, match="needs projectWriter on project research"):
        team.auth.require(dave, REPO_CREATE, "research/x", edge="rest", operation="create_repo")
    pipeline = Caller("pipeline:p")
    with pytest.raises(PermissionDenied, match="pipelines may not"):
        team.auth.require(pipeline, REPO_CREATE, "scratch", edge="rest", operation="create_repo")


def test_project_owner_owns_every_repo_and_sets_roles_on_the_project(team: Team) -> None:
    team.set_project_roles("research", "user:carol", "projectOwner")
    assert put(team, "carol", RESEARCH_IMAGES).status_code == 200
    assert (
        team.call("carol", "PUT", "/repos/images/commits/master/files/c", content=b"c").status_code
        == 403
    )
    # she shares the project and one of its repos
    body = {"principal": "user:bob", "roles": ["projectViewer"]}
    roles = team.ok("carol", "PUT", "/auth/projects/research/roles", json=body)
    assert roles == {"user:bob": ["projectViewer"], "user:carol": ["projectOwner"]}
    body = {"principal": "user:dave", "roles": ["repoReader"]}
    assert team.ok("carol", "PUT", f"/auth/repos/{RESEARCH_IMAGES}/roles", json=body) == {
        "user:dave": ["repoReader"],
        "user:root": ["repoOwner"],  # its creator
    }
    assert team.ok("dave", "GET", f"/repos/{RESEARCH_IMAGES}")["name"] == "research/images"
    # projectViewer lists the repos and reads none of them, as in Pachyderm
    assert team.call("bob", "GET", f"/repos/{RESEARCH_IMAGES}").status_code == 403
    # a projectOwner of research is nothing on default
    body = {"principal": "user:bob", "roles": ["projectViewer"]}
    team.error("carol", "PUT", "/auth/projects/default/roles", 403, json=body)
    # and deletes the project's repos
    assert team.call("carol", "DELETE", f"/repos/{RESEARCH_IMAGES}").status_code == 204
    assert team.call("root", "GET", f"/repos/{RESEARCH_IMAGES}").status_code == 404
    assert team.ok("root", "GET", "/auth/projects/research/roles")["user:carol"] == ["projectOwner"]


def test_bad_input(team: Team) -> None:
    def set_roles(path: str, *roles: str, status: int) -> str:
        body = {"principal": "user:alice", "roles": list(roles)}
        return team.error("root", "PUT", path, status, json=body)

    message = set_roles("/auth/projects/research/roles", "projectReader", status=400)
    assert "unknown project role 'projectReader'" in message and "projectViewer" in message
    message = set_roles("/auth/projects/research/roles", "projectAdmin", status=400)
    assert "use one of projectViewer, projectWriter, projectOwner, repoReader" in message
    message = set_roles("/auth/projects/research/roles", "clusterAdmin", status=400)
    assert "unknown project role 'clusterAdmin'" in message
    message = set_roles("/auth/projects/nosuch/roles", "projectWriter", status=404)
    assert message == "project nosuch not found (list them with: tusk list project)"
    assert team.error("root", "GET", "/auth/projects/nosuch/roles", 404) == message
    message = set_roles("/auth/projects/bad.name/roles", "projectWriter", status=400)
    assert "invalid project name" in message
    # project roles given as repo roles (or as cluster roles)
    message = set_roles(f"/auth/repos/{RESEARCH_IMAGES}/roles", "projectOwner", status=400)
    assert "unknown repo role 'projectOwner'" in message and "set it on a project" in message
    message = set_roles("/auth/cluster/roles", "projectWriter", status=400)
    assert "unknown cluster role 'projectWriter'" in message
    body = {"principal": "alice", "roles": ["projectOwner"]}
    message = team.error("root", "PUT", "/auth/projects/research/roles", 400, json=body)
    assert "invalid identity 'alice'" in message
    # Nothing was bound.
    assert team.ok("root", "GET", "/auth/projects/research/roles") == {}
    assert team.ok("root", "GET", f"/auth/repos/{RESEARCH_IMAGES}/roles") == {
        "user:root": ["repoOwner"]
    }
    # Without a token: 401 before anything is looked up.
    assert team.web.get(f"{API}/auth/projects/nosuch/roles").status_code == 401


def test_creator_owns_the_project_and_a_deleted_project_forgets_its_roles(team: Team) -> None:
    """What the project routes call: grant_project_creator after creating, forget_project
    after deleting."""
    team.live.services.pfs.create_project("lab")
    team.auth.grant_project_creator(Caller("user:dave"), "lab")
    team.auth.grant_project_creator(Caller("pipeline:p"), "lab")  # pipelines own nothing
    team.auth.grant_project_creator(Caller("", active=False), "lab")  # auth off: nothing
    assert team.ok("root", "GET", "/auth/projects/lab/roles") == {"user:dave": ["projectOwner"]}
    team.ok("dave", "POST", "/repos", 201, json={"name": "lab/data"})
    assert put(team, "dave", "lab%2Fdata").status_code == 200
    team.ok("dave", "DELETE", "/repos/lab%2Fdata", 204)
    team.live.services.pfs.delete_project("lab")
    team.auth.forget_project("lab")
    team.live.services.pfs.create_project("lab")
    assert team.ok("root", "GET", "/auth/projects/lab/roles") == {}


def test_the_project_routes_grant_check_and_forget(team: Team) -> None:
    """Over HTTP: the creator of a project owns it and its repos; creating a repo there needs
    projectWriter; only its owner deletes it, and a deleted project's roles are gone."""
    team.ok("dave", "POST", "/projects", 201, json={"name": "lab"})
    assert team.ok("root", "GET", "/auth/projects/lab/roles") == {"user:dave": ["projectOwner"]}
    team.ok("dave", "POST", "/repos", 201, json={"name": "lab/data"})
    message = team.error("alice", "POST", "/repos", 403, json={"name": "lab/hers"})
    assert "needs projectWriter on project lab" in message
    change = {"name": "lab", "description": "mine now", "update": True}
    assert "projectOwner" in team.error("alice", "POST", "/projects", 403, json=change)
    assert "projectOwner" in team.error("alice", "DELETE", "/projects/lab", 403)
    team.ok("dave", "DELETE", "/repos/lab%2Fdata", 204)
    team.ok("dave", "DELETE", "/projects/lab", 204)
    team.ok("root", "POST", "/projects", 201, json={"name": "lab"})
    assert team.ok("root", "GET", "/auth/projects/lab/roles") == {"user:root": ["projectOwner"]}


def test_one_query_reads_the_token_and_every_binding(team: Team) -> None:
    """The benchmark's budget: settings, then the token with its roles on the cluster, the
    repo and the repo's project; nothing more for a project role."""
    team.set_project_roles("research", "user:alice", "repoWriter")
    engine = team.live.services.pfs.meta.engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "auth_" in statement:
            statements.append(statement)  # reads of auth's tables (not the audit's write)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        caller = team.auth.authorize(
            "rest", "put_file", team.tokens["alice"], repo="research/images"
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert caller.principal == "user:alice"
    assert len(statements) == 2, statements
    assert "role_bindings" in statements[1] and "auth_tokens" in statements[1], statements
    with pytest.raises(PermissionDenied):
        team.auth.authorize("rest", "delete_repo", team.tokens["alice"], repo="research/images")


def test_sdk_and_cli(team: Team, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from tusk.cli.main import cli

    with Client(address=team.live.url, token=team.tokens["root"]) as client:
        assert client.set_project_roles("research", "user:bob", ["repoReader"]) == {
            "user:bob": ["repoReader"]
        }
        assert client.get_project_roles("research") == {"user:bob": ["repoReader"]}
    with Client(home=tmp_path / "home") as local, pytest.raises(InvalidArgument, match="server"):
        local.get_project_roles("research")
    env = {
        "TUSK_CONFIG": str(tmp_path / "config.yaml"),
        "TUSK_TOKEN": team.tokens["root"],
        "TUSK_ADDRESS": None,
    }
    runner = CliRunner()

    def tusk(*args: str, code: int = 0) -> Any:
        r = runner.invoke(cli, ["--address", team.live.url, *args], env=env, catch_exceptions=False)
        assert r.exit_code == code, (args, r.stdout, r.stderr)
        return r

    tusk("auth", "set", "project", "research", "projectWriter,repoReader", "user:alice")
    out = tusk("auth", "get", "project", "research").stdout
    assert "user:alice" in out and "projectWriter, repoReader" in out
    assert '"user:bob": [' in tusk("auth", "get", "project", "research", "-o", "json").stdout
    err = tusk("auth", "set", "project", "nosuch", "projectOwner", "user:alice", code=3).stderr
    assert err == "error: project nosuch not found (list them with: tusk list project)\n"
