"""``tusk.Client``: the SDK, in-process on a home folder or, given an address, over HTTP.

Every method is :class:`tusk.sdk.base.BaseClient`'s (one API, two transports). This module
loads neither transport until a client is made: ``Client()`` on a home loads the storage
layer, ``Client(address=...)`` (or ``$TUSK_ADDRESS``) httpx only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tusk.config import StoreConfig, default_home, setting
from tusk.errors import InvalidArgument
from tusk.sdk.base import BaseClient, CommitHandle
from tusk.sdk.projects import current_project

if TYPE_CHECKING:
    from tusk.pfs import PfsService
    from tusk.pfs.tree import TreeParams
    from tusk.pps.service import PpsService
    from tusk.sdk.local import LocalTransport

__all__ = ["Client", "CommitHandle"]


class Client(BaseClient):
    """A Tusk client. ``Client()`` uses ``$TUSK_HOME`` (default ``~/.tusk``), made on first use.

    ``Client(address="http://host:7800")``, or ``Client()`` with ``$TUSK_ADDRESS`` set, talks
    to a server over HTTP instead (a :class:`tusk.sdk.remote.RemoteClient`, same methods); an
    explicit ``home`` always means in-process. ``token=`` is the server's bearer token
    (default: ``$TUSK_TOKEN``, else the config file's); the in-process client has no auth.

    ``project=`` is the current project (default: ``$TUSK_PROJECT``, else the config file's,
    else ``default``): every method that takes a repo or pipeline name or an address reads a
    bare name as ``project/name``; a name with a ``/`` names its project itself.
    """

    _t: LocalTransport

    def __new__(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
        config: StoreConfig | None = None,
        tree_params: TreeParams | None = None,
        project: str | None = None,
    ) -> Client:
        if address is not None and home is not None:
            raise InvalidArgument("give a home (in-process) or an address (a server), not both")
        remote = address
        if remote is None and cls is Client and home is None:
            remote = setting("address")  # $TUSK_ADDRESS, else the config file's context
        if remote:
            from tusk.sdk.remote import RemoteClient  # httpx loads only for remote use

            return cast("Client", RemoteClient(remote, token, project=project))
        return super().__new__(cls)

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
        config: StoreConfig | None = None,
        tree_params: TreeParams | None = None,
        project: str | None = None,
    ) -> None:
        from tusk.sdk.local import LocalTransport

        self.project = current_project(project)
        self._t = LocalTransport(
            Path(home) if home is not None else default_home(), config, tree_params
        )

    def __enter__(self) -> Client:
        return self

    @property
    def _pfs(self) -> PfsService:
        """The PFS service under this client (in-process only; for tests and tools)."""
        return self._t.pfs

    @property
    def _pps(self) -> PpsService:
        """The pipeline service under this client (in-process only)."""
        return self._t.pps
