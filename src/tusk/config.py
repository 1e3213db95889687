"""Where Tusk keeps its data, and the settings read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    """``$TUSK_HOME`` if set, else ``~/.tusk``."""
    env = os.environ.get("TUSK_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".tusk").resolve()


@dataclass(frozen=True)
class StoreConfig:
    """Chunking and packing parameters; the defaults suit files from bytes to hundreds of GiB."""

    chunk_min: int = 32 * 1024
    chunk_avg: int = 128 * 1024
    chunk_max: int = 512 * 1024
    pack_target: int = 16 * 1024 * 1024
    # zstd is tried on an 8 KiB sample first; the chunk is compressed only if the sample shrinks.
    compress_level: int = 3
    compress_sample_ratio: float = 0.9
    # "full": packs are flushed to disk before the index names them (survives power loss).
    # "none": the OS flushes when it likes; a killed process loses nothing, a power cut may.
    sync: str = "full"

    @classmethod
    def from_env(cls) -> StoreConfig:
        sync = os.environ.get("TUSK_SYNC", "full")
        if sync not in ("full", "none"):
            from tusk.errors import InvalidArgument

            raise InvalidArgument(f"TUSK_SYNC must be 'full' or 'none', not {sync!r}")
        return cls(sync=sync)
