"""Projects over HTTP: the project routes, ``RemoteClient(project=...)``, and repo and pipeline
names with a '/' in URL path segments (``/api/v1/repos/research%2Fimages``).

Jobs run on the live server's own services (``live.client().run_scheduler(once=True)``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Live

from tusk.errors import InUse, InvalidArgument, InvalidName, ProjectNotFound, RepoNotFound
from tusk.sdk.remote import RemoteClient

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from test_cli_project import no_sandbox, spec  # the same specs; no sandbox (autouse)

__all__ = ["no_sandbox"]

ENGINES = ("sqlite", "postgresql")
API = "/api/v1"


def run_jobs(live: Live) -> None:
    live.client().run_scheduler(once=True)


def state(c: RemoteClient) -> dict[str, Any]:
    out: dict[str, Any] = {
        "projects": [p.to_dict() for p in c.list_projects()],
        "pipelines": sorted(p.name for p in c.list_pipelines()),
    }
    for repo in c.list_repos():
        out[repo.name] = [x.id for x in c.list_commits(f"{repo.name}@master")]
    return out


def test_project_routes(live: Live) -> None:
    with RemoteClient(live.url) as c:
        assert [p.name for p in c.list_projects()] == ["default"]
        made = c.create_project("research", "image work")
        assert (made.name, made.description, made.repos) == ("research", "image work", [])
        assert c.create_project("research", "images", update=True).description == "images"
        with pytest.raises(Exception, match="already exists"):
            c.create_project("research")
        assert [p.name for p in c.list_projects()] == ["default", "research"]
        c.create_repo("research/images")
        assert c.inspect_project("research").repos == ["research/images"]
        with pytest.raises(InUse, match="delete them first"):
            c.delete_project("research")
        c.delete_repo("research/images")
        c.delete_project("research")
        with pytest.raises(ProjectNotFound):
            c.inspect_project("research")
    with httpx.Client(base_url=live.url + API) as http:
        r = http.post("/projects", json={"name": "raw", "description": "by hand"})
        assert r.status_code == 201 and r.json()["name"] == "raw"
        assert http.get("/projects/raw").json()["description"] == "by hand"
        assert [p["name"] for p in http.get("/projects").json()] == ["default", "raw"]
        assert http.delete("/projects/raw").status_code == 204
        assert http.get("/projects/raw").status_code == 404
    doc = httpx.get(live.url + "/openapi.json").json()
    schema = doc["paths"]["/api/v1/projects/{project}"]["get"]["responses"]["200"]
    assert "ProjectInfo" in str(schema)


def test_repo_with_a_slash_in_url_paths(live: Live) -> None:
    with RemoteClient(live.url) as c, RemoteClient(live.url, project="research") as rc:
        c.create_project("research")
        assert rc.project == "research"
        assert rc.create_repo("images").name == "research/images"
        rc.put_file("images@master:/a.txt", b"hello\n")
        rc.put_file("images@master:/b~1.txt", b"tilde\n")  # '~' in a file path is a '~'
        assert rc.get_file("images@master:/a.txt") == b"hello\n"
        assert c.get_file("research/images@master:/b~1.txt") == b"tilde\n"
        assert rc.get_file("images@master~1:/a.txt") == b"hello\n"  # '~' in a ref: ancestor
        assert [b.name for b in rc.list_branches("images")] == ["master"]
        assert [f.path for f in rc.list_files("images@master:/")] == ["/a.txt", "/b~1.txt"]
        assert len(rc.list_commits("images@master")) == 2
        with pytest.raises(RepoNotFound):
            c.inspect_repo("images")  # default's images: none
        with httpx.Client(base_url=live.url + API) as http:
            info = http.get("/repos/research%2Fimages")
            assert info.status_code == 200, info.text
            assert info.json()["name"] == "research/images"
            assert http.get("/repos/research%2fimages/branches").json()[0]["name"] == "master"
            got = http.get("/repos/research%2Fimages/commits/master/files/a.txt")
            assert got.status_code == 200 and got.content == b"hello\n"
            got = http.get("/repos/research%2Fimages/commits/master/files/b~1.txt")
            assert got.content == b"tilde\n"
            # Without the encoding the '/' splits the path: no such route.
            assert http.get("/repos/research/images").status_code == 404
            assert http.get("/repos/default%2Fimages").status_code == 404
        # The default project's repo of the same name is another repo.
        c.create_repo("images")
        c.put_file("images@master:/a.txt", b"default\n")
        assert rc.get_file("default/images@master:/a.txt") == b"default\n"
        assert rc.get_file("images@master:/a.txt") == b"hello\n"
        copied = rc.copy_file("default/images@master:/a.txt", "images@master:/c.txt")
        assert copied.repo == "research/images"
        assert rc.get_file("images@master:/c.txt") == b"default\n"
        rc.delete_repo("images")
        assert [r.name for r in c.list_repos()] == ["images"]


def test_same_pipeline_name_in_two_projects(live: Live) -> None:
    clients = {p: RemoteClient(live.url, project=p) for p in ("a", "b")}
    try:
        for project, c in clients.items():
            c.create_project(project)
            c.create_repo("data")
            c.put_file("data@master:/f.txt", f"data of {project}\n".encode())
            info = c.create_pipeline(spec("copy"))
            assert info.name == f"{project}/copy"
        run_jobs(live)
        for project, c in clients.items():
            assert c.wait_commit("copy@master", timeout=30).state == "finished"
            assert c.get_file("copy@master:/f.txt") == f"data of {project}\n".encode()
            assert c.inspect_pipeline("copy").name == f"{project}/copy"
            jobs = c.list_jobs(pipeline="copy")
            assert [j.state for j in jobs] == ["success"]
            job = c.inspect_job(f"copy@{jobs[0].id}")
            assert job.pipeline == f"{project}/copy"
            datums = c.list_datums(f"copy@{job.id}")
            assert len(datums) == 1
            assert c.inspect_datum(f"copy@{job.id}", datums[0].id).id == datums[0].id
            assert isinstance(c.logs("copy", job=job.id), list)
            assert c.wait_job(f"copy@{job.id}", timeout=10).state == "success"
            assert c.stop_pipeline("copy").state == "paused"
            assert c.start_pipeline("copy").state == "running"
        with httpx.Client(base_url=live.url + API) as http:
            got = http.get("/pipelines/a%2Fcopy")
            assert got.status_code == 200 and got.json()["name"] == "a/copy"
        clients["a"].delete_pipeline("copy")
        assert [p.name for p in clients["b"].list_pipelines()] == ["b/copy"]
        assert clients["b"].get_file("copy@master:/f.txt") == b"data of b\n"
    finally:
        for c in clients.values():
            c.close()


def test_cross_project_input(live: Live) -> None:
    with RemoteClient(live.url) as c, RemoteClient(live.url, project="a") as ac:
        c.create_repo("data")
        c.put_file("data@master:/f.txt", b"shared\n")
        ac.create_project("a")
        cross = spec("reader")
        cross["input"]["pfs"]["project"] = {"name": "default"}
        info = ac.create_pipeline(cross)
        assert info.name == "a/reader"
        assert c.inspect_pipeline("a/reader").spec["input"]["pfs"]["repo"] == "data"
        run_jobs(live)
        ac.wait_commit("reader@master", timeout=30)
        assert ac.get_file("reader@master:/f.txt") == b"shared\n"
        assert [d["files"] for d in ac.dry_run(cross)]  # the spec reads default's data
        with pytest.raises(RepoNotFound, match="a/data"):
            ac.create_pipeline(spec("lost"))


def test_bad_input_changes_nothing(live: Live) -> None:
    with RemoteClient(live.url) as c:
        c.create_project("full")
        c.create_repo("full/images")
        c.put_file("full/images@master:/a.txt", b"keep\n")
        before = state(c)
        for bad in ("bad name", "a.b", "x" * 64, ""):
            with pytest.raises(InvalidArgument, match="invalid project name"):
                c.create_project(bad)
        with pytest.raises(InUse, match="full/images"):
            c.delete_project("full")
        with pytest.raises(InvalidArgument, match="default"):
            c.delete_project("default")
        with pytest.raises(ProjectNotFound, match="tusk create project nope"):
            c.create_repo("nope/images")
        with pytest.raises(InvalidName):
            RemoteClient(live.url, project="b@d")
        with RemoteClient(live.url, project="nope") as nc, pytest.raises(ProjectNotFound):
            nc.create_repo("images")
        with pytest.raises(InvalidArgument):
            c.create_pipeline(spec("p", project={"name": "bad name"}))
        with httpx.Client(base_url=live.url + API) as http:
            r = http.post("/projects", json={"name": "no/pe"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"
            assert http.delete("/projects/full").status_code == 409
        assert state(c) == before
