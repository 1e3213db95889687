"""``tusk auth ...`` and ``tusk audit``: tokens, roles and the audit log of a Tusk server.

Auth lives on a server (``tusk up`` / ``tusk serve``): these commands need ``--address``,
``$TUSK_ADDRESS`` or a context with an address; the home in-process has no auth. The token a
command sends is ``$TUSK_TOKEN``, else the one ``tusk auth login`` stored in the config file
(the active context's, else the file's top-level ``token``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tusk.cli import render
from tusk.cli.core import emit, fail, get_client, output_option, print_json, wants_json
from tusk.cli.parse import Duration

if TYPE_CHECKING:
    from tusk.sdk.remote import RemoteClient


def _remote(ctx: click.Context, command: str) -> RemoteClient:
    """The invocation's client, which must talk to a server (else one line, exit 2)."""
    from tusk.cli.core import State
    from tusk.config import setting

    state = ctx.find_root().ensure_object(State)
    if state.client is None and (state.home is not None or not setting("address")):
        fail(
            f"tusk {command} talks to a server: give --address URL, set TUSK_ADDRESS or use a "
            "context with an address (a home in-process has no auth)"
        )
    client = get_client(ctx)
    from tusk.sdk.remote import RemoteClient

    if not isinstance(client, RemoteClient):
        fail(f"tusk {command} talks to a server: give --address URL or set TUSK_ADDRESS")
    return client


def _roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    if not roles:
        fail(f"no role in {text!r}: give ROLE[,ROLE] (or none)")
    return roles


def _roles_table(ctx: click.Context, roles: dict[str, list[str]]) -> None:
    def table() -> None:
        rows = [(p, ", ".join(rs) or "none") for p, rs in sorted(roles.items())]
        render.print_table(("PRINCIPAL", "ROLES"), rows)

    emit(ctx, roles, table)


def _show_token(ctx: click.Context, info: dict[str, Any] | None, token: str, what: str) -> None:
    """A new token: once, on stdout (alone, for scripts); what it is on stderr."""
    if wants_json(ctx):
        print_json({"token": token, **({"info": info} if info is not None else {})})
    else:
        click.echo(token)
    click.echo(f"{what}: store it now, it is not shown again", err=True)


def _config_token_slot(data: dict[str, Any]) -> dict[str, Any]:
    """The mapping a stored token lives in: the active context's, else the file's top level."""
    active = data.get("active_context")
    contexts = data.get("contexts")
    if isinstance(active, str) and isinstance(contexts, dict):
        entry = contexts.get(active)
        if isinstance(entry, dict):
            return entry
    return data


def _save_private(data: dict[str, Any]) -> Path:
    """Save the config file readable by its owner only (it holds a token)."""
    from tusk.config import save_config

    old = os.umask(0o077)  # the temp file save_config renames is born 0600
    try:
        path = save_config(data)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return path


@click.group("auth")
def auth() -> None:
    """Tokens and roles on a Tusk server (needs --address, $TUSK_ADDRESS or a context)."""


@auth.command("activate")
@output_option
@click.pass_context
def activate(ctx: click.Context) -> None:
    """Turn auth on; prints the root token (user:root, clusterAdmin) this once.

    Store it (tusk auth login reads it from stdin); from now on every request needs a token.
    """
    token = _remote(ctx, "auth activate").auth_activate()
    _show_token(ctx, None, token, "auth is on; this is user:root's token (clusterAdmin)")


@auth.command("deactivate")
@click.pass_context
def deactivate(ctx: click.Context) -> None:
    """Turn auth off (user:root only): tokens and roles go, the audit log stays."""
    client = _remote(ctx, "auth deactivate")
    client.auth_deactivate()
    click.echo(f"auth is off on {client.address}")


@auth.command("login")
@click.pass_context
def login(ctx: click.Context) -> None:
    """Store a token in the config file (0600) after checking it with the server.

    The token is read from stdin (its first line), else from $TUSK_TOKEN; it goes into the
    active context, else the file's top level.
    """
    from tusk.config import config_path, load_config
    from tusk.errors import Conflict, Unauthorized
    from tusk.sdk.remote import RemoteClient

    client = _remote(ctx, "auth login")
    env = os.environ.get("TUSK_TOKEN", "").strip()
    if sys.stdin.isatty():
        token = env or click.prompt("token", hide_input=True, err=True).strip()
    else:
        token = (sys.stdin.readline() or "").strip() or env
    if not token:
        raise Unauthorized("no token: pipe one into tusk auth login or set $TUSK_TOKEN")
    path = config_path()
    data: dict[str, Any] = dict(load_config(path))  # a broken file fails before the server
    with RemoteClient(client.address, token) as check:
        me = check.whoami()
    if not me.get("active"):
        raise Conflict(f"auth is not active on {client.address}: tusk auth activate turns it on")
    _config_token_slot(data)["token"] = token
    path = _save_private(data)
    click.echo(f"logged in to {client.address} as {me['principal']} (token {me['token_id']})")
    click.echo(f"token stored in {path}", err=True)
    if env and env != token:
        click.echo("note: $TUSK_TOKEN is set and wins over the config file", err=True)


@auth.command("logout")
def logout() -> None:
    """Remove the stored token from the config file (the token itself stays valid)."""
    from tusk.config import config_path, load_config

    data: dict[str, Any] = dict(load_config())
    slot = _config_token_slot(data)
    if slot.pop("token", None) is None:
        click.echo(f"no token stored in {config_path()}")
        return
    click.echo(f"logged out: token removed from {_save_private(data)}")
    if os.environ.get("TUSK_TOKEN"):
        click.echo("note: $TUSK_TOKEN is still set", err=True)


@auth.command("whoami")
@output_option
@click.pass_context
def whoami(ctx: click.Context) -> None:
    """Who the token you send is, and its cluster roles."""
    client = _remote(ctx, "auth whoami")
    me = client.whoami()

    def table() -> None:
        if not me.get("active"):
            click.echo(f"auth is not active on {client.address}: everyone may do everything")
            return
        render.print_fields(
            [
                ("Principal", me["principal"]),
                ("Token", me.get("token_id") or "-"),
                ("Cluster roles", ", ".join(me.get("cluster_roles") or []) or "none"),
            ]
        )

    emit(ctx, me, table)


@auth.command("create-token")
@click.option(
    "--user",
    "principal",
    default=None,
    metavar="PRINCIPAL",
    help="user:NAME or robot:NAME (default: yourself; others need clusterAdmin).",
)
@click.option("--ttl", type=Duration(), default=None, help="Expires after this, e.g. 30d, 12h.")
@click.option("-d", "--description", default="", help="What the token is for.")
@click.option(
    "--s3",
    is_flag=True,
    help="Also an S3 key pair for the S3 gateway: prints its access key id and secret access "
    "key (as lines of an AWS credentials file).",
)
@output_option
@click.pass_context
def create_token(
    ctx: click.Context, principal: str | None, ttl: float | None, description: str, s3: bool
) -> None:
    """Make a new token; prints it this once."""
    if ttl is not None and ttl <= 0:
        fail("--ttl must be more than 0 (omit it for a token that never expires)")
    client = _remote(ctx, "auth create-token")
    info, token = client.create_token(principal, ttl, description, s3=s3)
    keys = info.pop("s3", None)
    end = info.get("expires_at")
    expires = "never expires" if end is None else f"expires {render.iso(end)}"
    what = f"token {info['id']} for {info['principal']} ({expires})"
    if keys is None:
        _show_token(ctx, info, token, what)
    elif wants_json(ctx):
        print_json({"token": token, "info": info, "s3": keys})
        click.echo(f"{what}, with S3 keys: store them now, they are not shown again", err=True)
    else:
        click.echo(token)
        click.echo(f"aws_access_key_id = {keys['access_key_id']}")
        click.echo(f"aws_secret_access_key = {keys['secret_access_key']}")
        click.echo(f"{what}, with S3 keys: store them now, they are not shown again", err=True)


@auth.command("list-tokens")
@output_option
@click.pass_context
def list_tokens(ctx: click.Context) -> None:
    """Your tokens (every token for clusterAdmin); never their secrets."""
    tokens = _remote(ctx, "auth list-tokens").list_tokens()

    def table() -> None:
        rows = [
            (
                t["id"],
                t["principal"],
                t["state"],
                render.ago(t["created_at"]),
                "never" if t.get("expires_at") is None else render.iso(t["expires_at"]),
                render.first_line(t.get("description") or ""),
            )
            for t in tokens
        ]
        render.print_table(("ID", "PRINCIPAL", "STATE", "CREATED", "EXPIRES", "DESCRIPTION"), rows)

    emit(ctx, tokens, table)


@auth.command("revoke")
@click.argument("token_id")
@output_option
@click.pass_context
def revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke the token TOKEN_ID (see list-tokens): refused from its next request on."""
    info = _remote(ctx, "auth revoke").revoke_token(token_id)
    emit(ctx, info, lambda: click.echo(f"token {info['id']} of {info['principal']} revoked"))


@auth.group("set")
def set_() -> None:
    """Give an identity roles on a repo, a project or the cluster."""


@auth.group("get")
def get() -> None:
    """Show who has which role on a repo, a project or the cluster."""


@auth.group("check")
def check() -> None:
    """Show your own roles and permissions."""


@set_.command("repo")
@click.argument("repo")
@click.argument("roles", metavar="ROLE[,ROLE]")
@click.argument("principal")
@output_option
@click.pass_context
def set_repo(ctx: click.Context, repo: str, roles: str, principal: str) -> None:
    """Replace PRINCIPAL's roles on REPO: repoReader, repoWriter, repoOwner, or none."""
    client = _remote(ctx, "auth set repo")
    _roles_table(ctx, client.set_repo_roles(repo, principal, _roles(roles)))


@get.command("repo")
@click.argument("repo")
@output_option
@click.pass_context
def get_repo(ctx: click.Context, repo: str) -> None:
    """Who has which role on REPO."""
    _roles_table(ctx, _remote(ctx, "auth get repo").get_repo_roles(repo))


@check.command("repo")
@click.argument("repo")
@output_option
@click.pass_context
def check_repo(ctx: click.Context, repo: str) -> None:
    """Your roles and permissions on REPO."""
    access = _remote(ctx, "auth check repo").check_repo(repo)

    def table() -> None:
        render.print_fields(
            [
                ("Principal", access["principal"] or "-"),
                ("Repo", access["repo"]),
                ("Roles", ", ".join(access.get("roles") or []) or "none"),
                ("Permissions", ", ".join(access.get("permissions") or []) or "none"),
            ]
        )

    emit(ctx, access, table)


@set_.command("project")
@click.argument("project")
@click.argument("roles", metavar="ROLE[,ROLE]")
@click.argument("principal")
@output_option
@click.pass_context
def set_project(ctx: click.Context, project: str, roles: str, principal: str) -> None:
    """Replace PRINCIPAL's roles on PROJECT: projectViewer, projectWriter (creates repos in
    it), projectOwner (owns every repo of it), a repo role for every repo of it (repoReader,
    repoWriter, repoOwner), or none."""
    client = _remote(ctx, "auth set project")
    _roles_table(ctx, client.set_project_roles(project, principal, _roles(roles)))


@get.command("project")
@click.argument("project")
@output_option
@click.pass_context
def get_project(ctx: click.Context, project: str) -> None:
    """Who has which role on PROJECT."""
    _roles_table(ctx, _remote(ctx, "auth get project").get_project_roles(project))


@set_.command("cluster")
@click.argument("roles", metavar="ROLE[,ROLE]")
@click.argument("principal")
@output_option
@click.pass_context
def set_cluster(ctx: click.Context, roles: str, principal: str) -> None:
    """Replace PRINCIPAL's cluster roles: clusterAdmin, pipelineCreator, or none."""
    client = _remote(ctx, "auth set cluster")
    _roles_table(ctx, client.set_cluster_roles(principal, _roles(roles)))


@get.command("cluster")
@output_option
@click.pass_context
def get_cluster(ctx: click.Context) -> None:
    """Who has which cluster role (clusterAdmin)."""
    _roles_table(ctx, _remote(ctx, "auth get cluster").get_cluster_roles())


@click.command("audit")
@click.option("--user", default=None, metavar="PRINCIPAL", help="Only this identity's entries.")
@click.option("--repo", default=None, help="Only entries about this repo.")
@click.option("--since", type=Duration(), default=None, help="Only the last 1h, 30m, 2d...")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
    help="At most this many entries.",
)  # fmt: skip
@output_option
@click.pass_context
def audit(
    ctx: click.Context, user: str | None, repo: str | None, since: float | None, limit: int
) -> None:
    """The server's audit log, newest first (clusterAdmin): changes and denials."""
    entries = _remote(ctx, "audit").audit(user=user, repo=repo, since=since, limit=limit)

    def table() -> None:
        rows = [
            (
                render.iso(e["ts"]),
                e["principal"],
                e["edge"],
                e["operation"],
                f"{e['resource_type']} {e['resource']}" if e.get("resource") else "-",
                "yes" if e["allowed"] else "no",
                render.first_line(e.get("detail") or ""),
            )
            for e in entries
        ]
        columns = ("TIME", "WHO", "EDGE", "OPERATION", "RESOURCE", "ALLOWED", "DETAIL")
        render.print_table(columns, rows)

    emit(ctx, entries, table)
