"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv: writes to a protected
branch (guarded@master) through Pachyderm's own client. Prints JSON of each call's status."""

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


out = {
    "put": code(put),
    "start": code(lambda: c.pfs.start_commit(branch=master)),
    "move": code(
        lambda: c.pfs.create_branch(branch=master, head=pfs.Commit.from_uri("guarded@side"))
    ),
    "delete": code(lambda: c.pfs.delete_branch(branch=master)),
    "side": code(lambda: c.pfs.start_commit(branch=pfs.Branch.from_uri("guarded@side"))),
}
print(json.dumps(out))
