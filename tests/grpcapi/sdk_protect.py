"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv: writes to a protected
branch (guarded@master), and a commit a check refuses (gated@master), through Pachyderm's own
client. Prints JSON of each call's status."""

import json
import sys

from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs
from sdk_common import code

host, port = sys.argv[1], int(sys.argv[2])
c = Client(host=host, port=port)
master = pfs.Branch.from_uri("guarded@master")


def put() -> None:
    with c.pfs.commit(branch=master) as commit:
        commit.put_file_from_bytes(path="/x", data=b"intruder")


opened = []


def gated(name: str) -> None:
    with c.pfs.commit(branch=pfs.Branch.from_uri("gated@master")) as commit:
        opened.append(commit.id)
        commit.put_file_from_bytes(path=f"/{name}", data=b"data")


def drop() -> None:  # the refused commit is still open: drop it (its set is its id)
    c.pfs.drop_commit_set(commit_set=pfs.CommitSet(id=opened[-1]))


out = {
    "checked": code(lambda: gated("bad")),  # the check refuses: the commit stays open
    "dropped": code(drop),
    "passes": code(lambda: gated("good")),
    "put": code(put),
    "start": code(lambda: c.pfs.start_commit(branch=master)),
    "move": code(
        lambda: c.pfs.create_branch(branch=master, head=pfs.Commit.from_uri("guarded@side"))
    ),
    "delete": code(lambda: c.pfs.delete_branch(branch=master)),
    "side": code(lambda: c.pfs.start_commit(branch=pfs.Branch.from_uri("guarded@side"))),
}
print(json.dumps(out))
