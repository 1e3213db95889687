"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv, with auth on: what
each identity may do through the gRPC API. Prints JSON."""

import json
import sys

from pachyderm_sdk import Client
from pachyderm_sdk.api import auth, pfs
from sdk_common import code as status_of

host, port, root, bob = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def code(call):
    """The status name of what ``call()`` raised, or "OK"."""
    result = status_of(call)
    return "OK" if result == "ok" else result[0]


images = pfs.Repo(name="images")
anonymous, as_root, as_bob = (Client(host=host, port=port, auth_token=t) for t in (None, root, bob))
out = {
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
# Role bindings, permission checks and robot tokens: Tusk's roles under Pachyderm's RPCs.
on_images = auth.Resource(type=auth.ResourceType.REPO, name="default/images")
out["bob binds"] = code(lambda: as_bob.auth.modify_role_binding(
    resource=on_images, principal="user:bob", roles=["repoOwner"]))  # fmt: skip
as_root.auth.modify_role_binding(resource=on_images, principal="user:bob", roles=["repoReader"])
binding = as_root.auth.get_role_binding(resource=on_images).binding
out["binding"] = {p: sorted(r.roles) for p, r in binding.entries.items()}
out["bob reads now"] = code(lambda: as_bob.pfs.inspect_repo(repo=images))
asked = [auth.Permission.REPO_READ, auth.Permission.REPO_WRITE]
verdict = as_bob.auth.authorize(resource=on_images, permissions=asked)


def names(values):
    return [auth.Permission(p).name for p in values]


out["authorize"] = [verdict.authorized, names(verdict.satisfied), names(verdict.missing),
                    verdict.principal]  # fmt: skip
perms = as_bob.auth.get_permissions(resource=on_images)
granted = names(perms.permissions)
out["permissions"] = [perms.roles, "REPO_LIST_FILE" in granted, "REPO_WRITE" in granted]
out["bob robot"] = code(lambda: as_bob.auth.get_robot_token(robot="ci"))
robot = as_root.auth.get_robot_token(robot="ci", ttl=600).token
as_robot = Client(host=host, port=port, auth_token=robot)
out["robot is"] = as_robot.auth.who_am_i().username
out["revoked"] = as_root.auth.revoke_auth_token(token=robot).number
out["robot after"] = code(as_robot.auth.who_am_i)
out["activate again"] = code(lambda: as_root.auth.activate())
out["cluster binding"] = code(lambda: as_bob.auth.get_role_binding(
    resource=auth.Resource(type=auth.ResourceType.CLUSTER)))  # fmt: skip
print(json.dumps(out))
