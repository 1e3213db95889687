"""Many clients at once against one server process: 50 doing put/get/list on several repos,
20 committing to one branch. No lost commit, no error but documented conflicts, fsck clean.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from apihelpers import spawn

import tusk
from tusk.errors import Conflict
from tusk.sdk.remote import RemoteClient

REPOS = 5
READERS_WRITERS = 50
COMMITTERS = 20


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_fifty_clients_and_twenty_committers(home: Path, engine: str) -> None:
    proc, url = spawn(home, "serve", "--port", "0")
    errors: list[str] = []
    conflicts: list[str] = []
    try:
        setup = RemoteClient(url)
        for r in range(REPOS):
            setup.create_repo(f"r{r}")
        setup.create_repo("shared")
        setup.put_file("shared@master:/seed", b"seed")
        start = threading.Barrier(READERS_WRITERS + COMMITTERS)

        def reader_writer(k: int) -> None:
            c = RemoteClient(url)
            try:
                start.wait()
                repo = f"r{k % REPOS}"
                for i in range(3):
                    path = f"/c{k}/f{i}.txt"
                    data = f"{k}:{i}".encode() * 100
                    c.put_file(f"{repo}@master:{path}", data)
                    assert c.get_file(f"{repo}@master:{path}") == data
                    assert any(f.path == path for f in c.list_files(f"{repo}@master:/c{k}"))
            except Conflict as exc:
                conflicts.append(str(exc))
            except Exception as exc:  # collected, reported below
                errors.append(f"client {k}: {type(exc).__name__}: {exc}")
            finally:
                c.close()

        def committer(k: int) -> None:
            c = RemoteClient(url)
            try:
                start.wait()
                c.put_file(f"shared@master:/w{k}.txt", f"writer {k}".encode())
            except Exception as exc:
                errors.append(f"committer {k}: {type(exc).__name__}: {exc}")
            finally:
                c.close()

        threads = [threading.Thread(target=reader_writer, args=(k,)) for k in range(50)]
        threads += [threading.Thread(target=committer, args=(k,)) for k in range(COMMITTERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert not conflicts  # puts to a branch each make their own commit: nothing to retry

        # No lost commit: every committer's file is on the branch, one commit each.
        shared = {f.path for f in setup.list_files("shared@master:/")}
        assert shared == {"/seed"} | {f"/w{k}.txt" for k in range(COMMITTERS)}
        assert len(setup.list_commits("shared@master")) == COMMITTERS + 1
        for r in range(REPOS):
            files = setup.glob_files(f"r{r}@master:/**/*.txt")
            assert len(files) == 3 * (READERS_WRITERS // REPOS)
        setup.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with tusk.Client(home) as c:
        assert c.fsck().ok
