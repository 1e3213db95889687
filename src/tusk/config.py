"""Where Tusk keeps its data, and the settings read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from tusk.values import frozen


def default_home() -> Path:
    """``$TUSK_HOME`` if set, else ``~/.tusk``."""
    env = os.environ.get("TUSK_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".tusk").resolve()


@frozen
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


# Settings: a flag wins over an environment variable (TUSK_<NAME>), which wins over the config
# file ($TUSK_CONFIG, else <home>/config.yaml): first the active context's value, then the
# file's top level. The file is YAML:
#
#   active_context: prod
#   contexts:
#     prod: {address: "http://tusk.internal:7800", token: "..."}
#   metadata_url: postgresql://tusk@db/tusk
#   storage_url: s3://bucket/tusk?region=eu-west-1
SETTINGS = (
    "address",
    "token",
    # The current project: bare repo and pipeline names are in it (docs/projects.md).
    "project",
    "metadata_url",
    "storage_url",
    "executor",
    "sandbox",
    # The most disk the image cache may use (<home>/images; a quantity like 20Gi).
    "image_cache_quota",
    "host",
    "port",
    "webhook_secret",
    # The webhook's action on a push (docs/deploy.md, "GitHub webhooks"; tusk.pps.webhooks).
    "webhook_action",
    "webhook_specs",
    "webhook_prune",
    "webhook_repo",
    "webhook_branch",
    "webhook_path",
    "webhook_ref",
    "webhook_git_url",
    "webhook_identity",
)


def config_path() -> Path:
    env = os.environ.get("TUSK_CONFIG")
    return Path(env).expanduser() if env else default_home() / "config.yaml"


def load_config(path: Path | None = None) -> dict[str, object]:
    """The config file as a dict ({} if there is none); a broken file is one clear error."""
    from tusk.errors import InvalidArgument

    path = path or config_path()
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument(f"cannot read config file {path}: {first}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {path} must hold a mapping of settings")
    unknown = set(data) - set(SETTINGS) - {"active_context", "contexts"}
    if unknown:
        raise InvalidArgument(
            f"config file {path}: unknown setting {sorted(unknown)[0]!r} "
            f"(known: {', '.join(SETTINGS)}, active_context, contexts)"
        )
    return data


def setting(name: str, flag: str | None = None) -> str | None:
    """The value of one setting: flag, else ``TUSK_<NAME>``, else the config file."""
    if name not in SETTINGS:
        raise KeyError(name)
    if flag:
        return flag
    env = os.environ.get(f"TUSK_{name.upper()}")
    if env:
        return env
    data = load_config()
    contexts = data.get("contexts") or {}
    active = data.get("active_context")
    if isinstance(contexts, dict) and isinstance(active, str):
        ctx = contexts.get(active) or {}
        if isinstance(ctx, dict) and ctx.get(name) not in (None, ""):
            return str(ctx[name])
    value = data.get(name)
    return None if value in (None, "") else str(value)


def save_config(data: dict[str, object], path: Path | None = None) -> Path:
    """Write the config file atomically (a temp file renamed over it); returns its path."""
    import yaml

    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path
