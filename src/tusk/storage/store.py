"""Opens the storage layer: object backend + metadata store + chunk store, from one home or URLs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tusk.config import StoreConfig, setting
from tusk.gcpause import start_up_done
from tusk.storage.backends import ObjectBackend, open_backend
from tusk.storage.chunks import ChunkStore
from tusk.storage.meta.store import MetaStore, sqlite_url


@dataclass
class Storage:
    backend: ObjectBackend
    meta: MetaStore
    chunks: ChunkStore
    config: StoreConfig

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        metadata_url: str | None = None,
        storage_url: str | None = None,
        config: StoreConfig | None = None,
    ) -> Storage:
        """The embedded default: ``home/tusk.db`` (SQLite) and ``home/objects/``.

        ``TUSK_METADATA_URL`` (e.g. ``postgresql://user@host/db``) and ``TUSK_STORAGE_URL``
        (or the same settings in the config file, see ``tusk.config.setting``) replace either;
        the home still holds scratch space for pipelines.
        """
        config = config or StoreConfig.from_env()
        home = Path(home).resolve()
        home.mkdir(parents=True, exist_ok=True)
        storage_url = setting("storage_url", storage_url) or str(home / "objects")
        metadata_url = setting("metadata_url", metadata_url)
        backend = open_backend(storage_url)
        meta = MetaStore(metadata_url or sqlite_url(home / "tusk.db"))
        start_up_done()  # the `tusk` command has loaded what it runs on (tusk.gcpause)
        return cls(backend, meta, ChunkStore(backend, meta, config), config)

    def close(self) -> None:
        self.meta.close()
        self.backend.close()
