"""Run by tests/grpcapi/test_pachyderm_sdk.py in the venv of pachyderm-sdk (Pachyderm's own
Python client, unchanged): a user's script against ``tusk up``'s gRPC API. Prints JSON."""

import functools
import http.server
import json
import sys
import tempfile
import threading
from pathlib import Path

from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs
from pachyderm_sdk.errors import AuthServiceNotActivated
from sdk_common import code

host, port = sys.argv[1], int(sys.argv[2])
token = sys.argv[3] if len(sys.argv) > 3 else None
c = Client(host=host, port=port, auth_token=token)
out = {}


v = c.get_version()
out["version"] = [v.major, v.minor, v.additional]
repo = pfs.Repo(name="images", type="user")
c.pfs.create_repo(repo=repo, description="pictures")
out["repos"] = [[r.repo.name, r.repo.project.name, r.description] for r in c.pfs.list_repo()]
master = pfs.Branch.from_uri("images@master")
with c.pfs.commit(branch=master) as commit:
    commit.put_file_from_bytes(path="/a.txt", data=b"hello")
    commit.put_file_from_bytes(path="/dir/b.txt", data=b"world")
    commit.put_file_from_bytes(path="/big.bin", data=bytes(range(256)) * 20000)
    # 40 MiB: more than one of the SDK's messages, streamed into the store as they come
    commit.put_file_from_bytes(path="/huge.bin", data=bytes(range(251)) * (160 << 10))
first = commit.wait()
out["first"] = [first.commit.id, first.finished is not None]
files = c.pfs.walk_file(file=pfs.File.from_uri("images@master:/"))
out["walk"] = sorted([f.file.path, pfs.FileType(f.file_type).name, f.size_bytes] for f in files)
out["a"] = c.pfs.pfs_file(file=pfs.File.from_uri("images@master:/a.txt")).read().decode()
big = c.pfs.pfs_file(file=pfs.File.from_uri("images@master:/big.bin")).read()
out["big_ok"] = big == bytes(range(256)) * 20000
huge = c.pfs.pfs_file(file=pfs.File.from_uri("images@master:/huge.bin")).read()
out["huge_ok"] = huge == bytes(range(251)) * (160 << 10)
with c.pfs.commit(branch=master) as commit:
    commit.delete_file(path="/dir/b.txt")
    commit.put_file_from_bytes(path="/a.txt", data=b" again", append=True)
    commit.put_file_from_bytes(path="/c.txt", data=b"new")
second = commit.wait()
listing = c.pfs.list_file(file=pfs.File.from_uri("images@master:/"))
out["list"] = sorted(f.file.path for f in listing)
out["a2"] = c.pfs.pfs_file(file=pfs.File.from_uri("images@master:/a.txt")).read().decode()
out["glob"] = sorted(
    f.file.path
    for f in c.pfs.glob_file(commit=pfs.Commit.from_uri("images@master"), pattern="/*.txt")
)
# The first commit is still readable by its id.
old = pfs.File(commit=pfs.Commit(id=first.commit.id, repo=repo), path="/dir/b.txt")
out["old_b"] = c.pfs.pfs_file(file=old).read().decode()
commits = list(c.pfs.list_commit(repo=repo))
out["commits"] = [[ci.commit.id, ci.parent_commit.id] for ci in commits]
out["second"] = second.commit.id
c.pfs.create_branch(
    branch=pfs.Branch.from_uri("images@dev"), head=pfs.Commit(id=first.commit.id, repo=repo)
)
out["branches"] = sorted([b.branch.name, b.head.id] for b in c.pfs.list_branch(repo=repo))
c.pfs.delete_branch(branch=pfs.Branch.from_uri("images@dev"))
out["errors"] = {
    "no repo": code(lambda: c.pfs.inspect_repo(repo=pfs.Repo(name="nope"))),
    "twice": code(lambda: c.pfs.create_repo(repo=repo)),
    "no file": code(lambda: c.pfs.inspect_file(file=pfs.File.from_uri("images@master:/zz"))),
    "bad name": code(lambda: c.pfs.create_repo(repo=pfs.Repo(name="bad name"))),
    "finished": code(lambda: c.pfs.finish_commit(commit=pfs.Commit(id=first.commit.id, repo=repo))),
}
out["not served"] = code(
    lambda: c.pfs.clear_commit(commit=pfs.Commit(id=first.commit.id, repo=repo))
)
try:  # the SDK knows Pachyderm's answer while auth is off, and raises its own error
    c.auth.who_am_i()
    out["who"] = "ok"
except AuthServiceNotActivated as exc:
    out["who"] = ["AuthServiceNotActivated", str(exc)]
tar = c.pfs.pfs_tar_file(file=pfs.File.from_uri("images@master:/"))
out["tar"] = sorted(m.name for m in tar.getmembers())
diff = c.pfs.diff_file(new_file=pfs.File.from_uri("images@master:/"))
out["diff"] = sorted([d.new_file.file.path, d.old_file.file.path] for d in diff)
subscribed = c.pfs.subscribe_commit(repo=repo, branch="master", state=pfs.CommitState.FINISHED)
out["subscribed"] = [next(subscribed).commit.id, next(subscribed).commit.id]
subscribed.close()
research = pfs.Project(name="research")
c.pfs.create_project(project=research, description="lab")
c.pfs.create_repo(repo=pfs.Repo(name="scans", project=research))
out["projects"] = sorted([p.project.name, p.description] for p in c.pfs.list_project())
out["in research"] = [r.repo.name for r in c.pfs.list_repo(projects=[research])]
out["project busy"] = code(lambda: c.pfs.delete_project(project=research))
c.pfs.delete_repo(repo=pfs.Repo(name="scans", project=research))
c.pfs.delete_project(project=research)
out["projects after"] = sorted(p.project.name for p in c.pfs.list_project())
# Commit sets: squashed out of history (their data lives on in their children), or dropped.
hist = pfs.Branch.from_uri("hist@master")
c.pfs.create_repo(repo=pfs.Repo(name="hist"))
ids = []
for name in ("one", "two", "three"):
    with c.pfs.commit(branch=hist) as commit:
        commit.put_file_from_bytes(path="/" + name, data=name.encode())
    ids.append(commit.wait().commit.id)
head_squash = code(lambda: c.pfs.squash_commit_set(commit_set=pfs.CommitSet(id=ids[2])))
c.pfs.squash_commit_set(commit_set=pfs.CommitSet(id=ids[1]))
history = [ci.commit.id for ci in c.pfs.list_commit(repo=pfs.Repo(name="hist"))]
files = sorted(f.file.path for f in c.pfs.list_file(file=pfs.File.from_uri("hist@master:/")))
c.pfs.drop_commit_set(commit_set=pfs.CommitSet(id=ids[2]))
after_drop = c.pfs.inspect_commit(commit=pfs.Commit.from_uri("hist@master")).commit.id
out["sets"] = {
    "head squash": head_squash[0],
    "history": history == [ids[2], ids[0]],
    "files": files,
    "after drop": after_drop == ids[0],
}
out["exists"] = [c.pfs.repo_exists(repo), c.pfs.repo_exists(pfs.Repo(name="nope"))]
# Copies (no data copied), a file from a URL, a branch, commit sets listed and waited on.
served = tempfile.mkdtemp()
Path(served, "remote.txt").write_bytes(b"from far")
web = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
)
threading.Thread(target=web.serve_forever, daemon=True).start()
with c.pfs.commit(branch=master) as commit:
    commit.copy_file(src=pfs.File.from_uri("images@master:/a.txt"), dst="/copy.txt")
    commit.put_file_from_url(
        path="/remote.txt", url=f"http://127.0.0.1:{web.server_port}/remote.txt"
    )
third = commit.wait_all()
web.shutdown()
read = lambda uri: c.pfs.pfs_file(file=pfs.File.from_uri(uri)).read().decode()  # noqa: E731
out["copy"] = [read("images@master:/copy.txt"), read("images@master:/remote.txt")]
out["waited set"] = [ci.commit.repo.name for ci in third]
out["branch head"] = c.pfs.inspect_branch(branch=master).head.id == third[0].commit.id
sets = [cs.commit_set.id for cs in c.pfs.list_commit_set()]
out["commit sets"] = [third[0].commit.id in sets, first.commit.id in sets]
print(json.dumps(out))
