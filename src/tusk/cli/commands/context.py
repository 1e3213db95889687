"""``tusk context``: named server addresses in the config file, like pachctl's contexts.

``tusk context set prod --address http://tusk.internal:7800`` then ``tusk context use prod``
makes every command talk to that server (``$TUSK_ADDRESS`` and ``--address`` still win);
``tusk context use local`` (a context without an address) goes back to the home in-process.
"""

from __future__ import annotations

from typing import Any

import click

from tusk.cli.core import emit, fail, output_option
from tusk.config import config_path, load_config, save_config


def _contexts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    contexts = data.get("contexts") or {}
    if not isinstance(contexts, dict):
        fail(f"config file {config_path()}: 'contexts' must be a mapping of names")
    return contexts


@click.group("context")
def context() -> None:
    """Named servers to talk to (stored in $TUSK_CONFIG, default <home>/config.yaml)."""


@context.command("list")
@output_option
@click.pass_context
def list_context(ctx: click.Context) -> None:
    """List the contexts; the active one is marked."""
    data = load_config()
    active = data.get("active_context")
    rows = [
        {"name": n, "active": n == active, "address": (c or {}).get("address") or "(in-process)"}
        for n, c in sorted(_contexts(data).items())
    ]

    def table() -> None:
        for r in rows:
            click.echo(f"{'*' if r['active'] else ' '} {r['name']:<16} {r['address']}")

    emit(ctx, rows, table)


@context.command("set")
@click.argument("name")
@click.option("--address", default=None, help="The server's URL (omit for in-process).")
@click.option("--token", default=None, help="A bearer token sent with every request.")
@click.option(
    "--project", default=None, help="The project bare repo names belong to (default: default)."
)
def set_context(name: str, address: str | None, token: str | None, project: str | None) -> None:
    """Create or change the context NAME."""
    if not name or any(c in name for c in "/:\n"):
        fail(f"invalid context name {name!r}: use letters, digits, '-' and '_'")
    if project is not None:
        from tusk.ids import check_project_name

        check_project_name(project)
    data = load_config()
    contexts = _contexts(data)
    entry = dict(contexts.get(name) or {})
    for key, value in (("address", address), ("token", token), ("project", project)):
        if value is not None:
            entry[key] = value
    contexts[name] = entry
    data["contexts"] = contexts
    click.echo(f"context {name} saved in {save_config(data)}")


@context.command("use")
@click.argument("name")
def use_context(name: str) -> None:
    """Make NAME the active context."""
    data = load_config()
    if name not in _contexts(data):
        fail(f"no context {name!r} (list them with: tusk context list)")
    data["active_context"] = name
    save_config(data)
    click.echo(f"active context: {name}")


@context.command("delete")
@click.argument("name")
def delete_context(name: str) -> None:
    """Delete the context NAME (the active one too: then no context is active)."""
    data = load_config()
    contexts = _contexts(data)
    if name not in contexts:
        fail(f"no context {name!r} (list them with: tusk context list)")
    del contexts[name]
    if data.get("active_context") == name:
        data.pop("active_context")
    save_config(data)
    click.echo(f"context {name} deleted")
