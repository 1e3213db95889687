"""The Python SDK. ``Client()`` runs in-process on the embedded home (``$TUSK_HOME``)."""

from tusk.sdk.client import Client, CommitHandle

__all__ = ["Client", "CommitHandle"]
