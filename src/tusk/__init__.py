"""Tusk: version control and pipelines for data."""

from tusk import errors
from tusk.sdk import Client, CommitHandle

__version__ = "0.1.0"
__all__ = ["Client", "CommitHandle", "__version__", "errors"]
