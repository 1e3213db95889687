"""One commit of a git remote, fetched into a local cache and checked out (for webhooks).

Layout under the cache root (``<home>/webhooks``)::

    git/<key>/          a bare repository per remote URL (key: a hash of the URL)
    git/<key>.lock      held while that repository is fetched into (flock: threads and processes)
    checkouts/<sha>/    the tree of a commit, extracted once and kept (its mtime: last use)
    tmp/                scratch of deliveries that commit a tree (one folder each)
    in-use.lock         held shared by each delivery, exclusively by ``tusk gc``'s prune

Only what a push needs is fetched: the pushed ref (``+ref:ref``, which keeps its objects
reachable), and if the SHA is still missing (a force-push moved the ref on), the SHA itself,
which GitHub serves. A full ``clone --mirror`` would also fetch every pull-request ref. The
URL is given on the command line each time and never written into the cache (no remote is
configured, ``FETCH_HEAD`` is not written), so a token in it stays off the disk; error
messages name the URL without credentials.

Checkouts are ``git archive`` streams extracted with tarfile's ``data`` filter: a member that
would land outside the checkout (an absolute symlink, one pointing above the tree) is left
out rather than written. A checkout is extracted into a temporary folder and renamed into
place, so ``checkouts/<sha>`` is either complete or absent.

``tusk gc`` prunes the cache (:meth:`GitCache.prune`) while no delivery holds it: checkouts
not used within its grace period and that no pipeline runs in, and temporary folders that a
killed process left. A checkout is renamed to a temporary name before it is deleted, so a
kill during the deletion never leaves a partial ``checkouts/<sha>``.

Git runs with ``GIT_TERMINAL_PROMPT=0`` (a private remote without credentials fails instead
of waiting for a password) and, for URLs a request supplied, ``GIT_ALLOW_PROTOCOL=http:https``
(no local paths, no ssh, no ``ext::`` helpers).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

from tusk.errors import GitFetchError, SourceError

GIT_TIMEOUT = 600.0  # seconds for one git command (a first fetch of a big repository)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1, or SHA-256 repositories


def is_sha(text: str) -> bool:
    return _SHA.match(text) is not None


def without_credentials(url: str) -> str:
    """A remote URL without the user and token an HTTPS URL may carry (never raises: it
    reads URLs from requests)."""
    if "://" not in url:
        return url  # a path, or scp-like git@github.com:org/repo.git: no secret
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _keep_inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, skipping (not failing on) members that would escape."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


class GitCache:
    """Bare repositories and checkouts under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _run(
        self, url: str, args: list[str], *, protocols: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        if protocols is not None:
            env["GIT_ALLOW_PROTOCOL"] = protocols
        try:
            return subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                env=env,
                cwd=self.root,
            )
        except FileNotFoundError as exc:
            raise GitFetchError("the git command is not installed on the server") from exc
        except subprocess.TimeoutExpired as exc:
            command = next(a for a in args if not a.startswith("-"))
            raise GitFetchError(
                f"git {command} of {without_credentials(url)} took longer than {GIT_TIMEOUT:g}s"
            ) from exc

    def _failed(self, url: str, what: str, done: subprocess.CompletedProcess[str]) -> str:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        said = lines[-1] if lines else f"exit code {done.returncode}"
        # git may echo the URL it was given, token and all.
        said = said.replace(url, without_credentials(url))
        return f"{what} {without_credentials(url)} failed: {said}"

    def _has_commit(self, git_dir: Path, sha: str) -> bool:
        done = self._run("", [f"--git-dir={git_dir}", "cat-file", "-e", f"{sha}^{{commit}}"])
        return done.returncode == 0

    def fetch(self, url: str, ref: str, sha: str, *, protocols: str | None = None) -> Path:
        """The git dir of a bare repository holding commit ``sha`` of ``url`` (fetched if
        missing); ``protocols`` limits the transports git may use (``GIT_ALLOW_PROTOCOL``)."""
        if not is_sha(sha):
            raise SourceError(f"{sha!r} is not a full commit SHA")
        self.root.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(url.encode()).hexdigest()[:24]
        git_dir = self.root / "git" / key
        with _locked(self.root / "git" / f"{key}.lock"):
            if not git_dir.exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=git_dir.parent))
                done = self._run(url, ["init", "--quiet", "--bare", str(tmp)])
                if done.returncode != 0:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise GitFetchError(self._failed(url, "git init for", done))
                os.rename(tmp, git_dir)
            if self._has_commit(git_dir, sha):
                return git_dir
            fetch = [f"--git-dir={git_dir}", "fetch", "--quiet", "--no-tags"]
            fetch += ["--no-write-fetch-head", "--", url]
            done = self._run(url, [*fetch, f"+{ref}:{ref}"], protocols=protocols)
            if done.returncode == 0 and self._has_commit(git_dir, sha):
                return git_dir
            if done.returncode != 0 and "couldn't find remote ref" not in done.stderr:
                raise GitFetchError(self._failed(url, "git fetch of", done))
            # The ref moved on past a force-push, or no longer exists: ask for the SHA itself.
            by_sha = self._run(url, [*fetch, sha], protocols=protocols)
            if by_sha.returncode == 0 and self._has_commit(git_dir, sha):
                return git_dir
        raise GitFetchError(
            f"git fetch of {without_credentials(url)} failed: it has no commit {sha} "
            f"(not on {ref}, and the remote does not serve it by SHA)"
        )

    def checkout(self, git_dir: Path, sha: str, dest: Path) -> Path:
        """The tree of commit ``sha`` at ``dest`` (extracted unless it is there already)."""
        if dest.is_dir():
            with contextlib.suppress(OSError):
                os.utime(dest)  # used now: gc's prune measures its grace from here
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            self._extract(git_dir, sha, tmp)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():  # not a twin request that got there first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold the cache for a delivery: :meth:`prune` skips it until every holder is done."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "in-use.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def prune(self, older_than: float, keep: Collection[str] = (), dry_run: bool = False) -> int:
        """Remove checkouts last used before ``older_than`` whose name is not in ``keep``, and
        temporary folders older than that; how many (would) go. Nothing while a delivery
        holds the cache (see :meth:`in_use`): it is pruned by a later gc."""
        if not self.root.is_dir():
            return 0
        with open(self.root / "in-use.lock", "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            try:
                old = [p for p in self._prunable(set(keep)) if _mtime(p) < older_than]
                if not dry_run:
                    for path in old:
                        _remove_tree(path)
                return len(old)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _prunable(self, keep: set[str]) -> Iterator[Path]:
        checkouts = self.root / "checkouts"
        for entry in _folders(checkouts):
            if entry.name.startswith(".") or (is_sha(entry.name) and entry.name not in keep):
                yield entry  # a leftover of an extraction or removal, or an unused checkout
        yield from _folders(self.root / "tmp")
        yield from (e for e in _folders(self.root / "git") if e.name.startswith("."))

    def _extract(self, git_dir: Path, sha: str, into: Path) -> None:
        args = ["git", f"--git-dir={git_dir}", "archive", "--format=tar", sha]
        env = {**os.environ, "LC_ALL": "C"}
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    tar.extractall(into, filter=_keep_inside)
            except (tarfile.TarError, OSError) as exc:
                proc.kill()
                proc.wait()
                err.seek(0)
                said = err.read().decode(errors="replace").strip() or str(exc)
                raise GitFetchError(f"git archive of {sha} failed: {said}") from exc
            finally:
                proc.stdout.close()
            if proc.wait(timeout=GIT_TIMEOUT) != 0:
                err.seek(0)
                said = err.read().decode(errors="replace").strip()
                raise GitFetchError(f"git archive of {sha} failed: {said}")


def _folders(path: Path) -> list[Path]:
    try:
        return [e for e in path.iterdir() if e.is_dir() and not e.is_symlink()]
    except FileNotFoundError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _remove_tree(path: Path) -> None:
    """Delete a folder; a named one is first renamed to a dot name, so that a kill halfway
    leaves a leftover that looks like one, never a partial checkout or repository."""
    if not path.name.startswith("."):
        hidden = path.with_name(f".gc-{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, hidden)
        except FileNotFoundError:
            return
        path = hidden
    shutil.rmtree(path, ignore_errors=True)
