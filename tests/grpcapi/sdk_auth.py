"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv, with auth on: what
each identity may do through the gRPC API. Prints JSON."""

import json
import sys

import grpc
from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs

host, port, root, bob = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def code(call):
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"


images = pfs.Repo(name="images")
anonymous, as_root, as_bob = (Client(host=host, port=port, auth_token=t) for t in (None, root, bob))
print(
    json.dumps(
        {
            "anonymous list": code(lambda: list(anonymous.pfs.list_repo())),
            "anonymous version": code(anonymous.get_version),
            "bob inspect": code(lambda: as_bob.pfs.inspect_repo(repo=images)),
            "bob list": [r.repo.name for r in as_bob.pfs.list_repo()],
            "bob create": code(lambda: as_bob.pfs.create_repo(repo=pfs.Repo(name="bobs"))),
            "bob writes own": code(
                lambda: as_bob.pfs.put_file_from_bytes(
                    commit=pfs.Commit.from_uri("bobs@master"), path="/x", data=b"x"
                )
            ),
            "bob writes images": code(
                lambda: as_bob.pfs.put_file_from_bytes(
                    commit=pfs.Commit.from_uri("images@master"), path="/x", data=b"x"
                )
            ),
            "root inspect": code(lambda: as_root.pfs.inspect_repo(repo=images)),
            "root list": sorted(r.repo.name for r in as_root.pfs.list_repo()),
            "root is": as_root.auth.who_am_i().username,
            "bob is": as_bob.auth.who_am_i().username,
            "anonymous is": code(anonymous.auth.who_am_i),
        }
    )
)
