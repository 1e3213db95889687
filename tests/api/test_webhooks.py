"""``POST /api/v1/webhooks/github``: signed GitHub deliveries against a local bare git repo.

Every test builds a real git remote (``git init --bare`` plus a work clone that pushes to
it), starts a live server with the ``TUSK_WEBHOOK_*`` settings it needs (they are read when
the server starts), and posts GitHub-shaped payloads signed as GitHub signs them. The
payload's ``clone_url`` names a GitHub URL, as GitHub's would; ``TUSK_WEBHOOK_GIT_URL``
points the server at the local remote instead.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from apihelpers import Live, start_live, stop_live

from schemahelpers import undo_migrations
from tusk.pps.webhooks import signature_of
from tusk.storage.meta.store import MetaTx

ENGINES = ("sqlite", "postgresql")

SECRET = "It's a Secret to Everybody"
CLONE_URL = "https://github.com/acme/pipelines.git"
HOOK = "/api/v1/webhooks/github"
# Run from the spec folder of the checkout (as `tusk apply -f specs/` runs from specs/).
UP = ["sh", "../code/up.sh"]
UP_SH = (
    'for f in "$TUSK_PFS"/data/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done\n'
)


class Remote:
    """A bare repository (the remote) and a work clone that commits and pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        subprocess.run(["git", "init", "-q", "--bare", str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        self.git("config", "user.email", "ci@example.com")
        self.git("config", "user.name", "CI")
        self.git("remote", "add", "origin", str(self.bare))
        self.head = "0" * 40

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.work), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, files: dict[str, str | None]) -> None:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def push(self, files: dict[str, str | None], branch: str = "main") -> dict[str, Any]:
        """Commit ``files`` (None deletes) and push; the push event's payload."""
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", f"change {sorted(files)}")
        sha = self.git("rev-parse", "HEAD")
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        before, self.head = self.head, sha
        return push_payload(f"refs/heads/{branch}", before, sha)


def push_payload(ref: str, before: str, after: str, clone_url: str = CLONE_URL) -> dict[str, Any]:
    """A push event as GitHub sends it (the fields Tusk reads, and some it does not)."""
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == "0" * 40,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/acme/pipelines/compare/{before[:12]}...{after[:12]}",
        "commits": [{"id": after, "message": "change", "distinct": True}],
        "head_commit": {
            "id": after,
            "tree_id": "f" * 40,
            "message": "change",
            "timestamp": "2024-05-01T12:00:00+02:00",
            "author": {"name": "CI", "email": "ci@example.com", "username": "ci"},
            "added": [],
            "removed": [],
            "modified": [],
        },
        "repository": {
            "id": 123456,
            "name": "pipelines",
            "full_name": "acme/pipelines",
            "private": False,
            "html_url": "https://github.com/acme/pipelines",
            "clone_url": clone_url,
            "ssh_url": "git@github.com:acme/pipelines.git",
            "default_branch": "main",
        },
        "pusher": {"name": "ci", "email": "ci@example.com"},
        "sender": {"login": "ci", "id": 1, "type": "User"},
    }


def deliver(
    live: Live,
    event: str,
    payload: dict[str, Any] | bytes,
    delivery: str | None = None,
    *,
    secret: str | None = SECRET,
    signature: str | bytes | None = None,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers: dict[str, str | bytes] = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc1234",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "42",
    }
    if signature is None and secret is not None:
        signature = signature_of(secret, body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(f"{live.url}{HOOK}", content=body, headers=headers, timeout=120)


def error_of(r: httpx.Response) -> dict[str, str]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    error: dict[str, str] = body["error"]
    return error


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "git")


Serve = Callable[..., Live]


@pytest.fixture
def serve(
    home: Path, engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Serve]:
    """``serve(action="apply", ...)``: a live server with those TUSK_WEBHOOK_* settings."""
    started: list[Live] = []
    monkeypatch.setenv("TUSK_CONFIG", str(tmp_path / "config.yaml"))  # not the user's file
    monkeypatch.setenv("TUSK_SANDBOX", "none")

    def start(**settings: str | None) -> Live:
        for name in ("secret", "action", "specs", "prune", "repo", "branch", "path", "ref"):
            monkeypatch.delenv(f"TUSK_WEBHOOK_{name.upper()}", raising=False)
        monkeypatch.delenv("TUSK_WEBHOOK_GIT_URL", raising=False)
        settings = {"secret": SECRET, **settings}
        for name, value in settings.items():
            if value is not None:
                monkeypatch.setenv(f"TUSK_WEBHOOK_{name.upper()}", value)
        live = start_live(home)
        started.append(live)
        return live

    yield start
    for live in started:
        stop_live(live)


def specs(up_cmd: list[str] = UP, description: str = "upper-case every file") -> dict[str, str]:
    repo = {"kind": "repo", "name": "data", "description": "raw text"}
    up = {
        "pipeline": {"name": "up"},
        "description": description,
        "input": {"pfs": {"repo": "data", "glob": "/*"}},
        "transform": {"cmd": up_cmd},
    }
    return {
        "specs/repos.yaml": yaml.safe_dump(repo),
        "specs/pipelines.yaml": yaml.safe_dump(up),
        "code/up.sh": UP_SH,
    }


def state(live: Live) -> dict[str, Any]:
    """Repos, branches' heads, pipelines and their versions: what a delivery could change."""
    c = live.client()
    return {
        "repos": {r.name: sorted(r.branches) for r in c.list_repos()},
        "heads": {
            (r.name, b.name): b.head for r in c.list_repos() for b in c.list_branches(r.name)
        },
        "pipelines": {p.name: p.version for p in c.list_pipelines()},
    }


# Signatures


def test_signature_is_githubs() -> None:
    # The example of GitHub's "Validating webhook deliveries" page.
    assert signature_of(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_a_bad_or_missing_signature_is_401_and_does_nothing(serve: Serve, remote: Remote) -> None:
    live = serve(action="apply", git_url=str(remote.bare))
    payload = remote.push(specs())
    before = state(live)
    delivery = str(uuid.uuid4())

    bad = deliver(live, "push", payload, delivery, secret="not the secret")
    assert bad.status_code == 401 and error_of(bad)["code"] == "unauthorized"
    assert "does not match" in error_of(bad)["message"]
    missing = deliver(live, "push", payload, delivery, secret=None)
    assert (
        missing.status_code == 401 and "missing X-Hub-Signature-256" in error_of(missing)["message"]
    )
    body = json.dumps(payload).encode()
    tampered = deliver(
        live,
        "push",
        body.replace(b"main", b"mainx"),
        delivery,
        signature=signature_of(SECRET, body),
    )
    assert tampered.status_code == 401
    garbage = deliver(
        live, "push", payload, delivery, signature="sha256=\u00e9\u00e9".encode("latin-1")
    )
    assert garbage.status_code == 401
    assert state(live) == before
    assert not (live.services.home / "webhooks" / "git").exists()  # nothing was fetched

    # Nothing was recorded either: the same delivery, signed, is carried out.
    ok = deliver(live, "push", payload, delivery)
    assert ok.status_code == 200, ok.text
    assert "x-tusk-replayed" not in ok.headers


def test_no_secret_configured_is_401(serve: Serve, remote: Remote) -> None:
    live = serve(secret=None, action="apply", git_url=str(remote.bare))
    payload = remote.push(specs())
    for secret in (SECRET, "", None):
        r = deliver(live, "push", payload, secret=secret)
        assert r.status_code == 401, r.text
        assert "no webhook secret is configured" in error_of(r)["message"]
    assert deliver(live, "ping", {"zen": "x"}).status_code == 401
    assert state(live)["pipelines"] == {}


def test_ping_and_other_events(serve: Serve, tmp_path: Path) -> None:
    # The secret from the config file this time.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"webhook_secret": "from-the-file"}))
    live = serve(secret=None)
    ping = deliver(
        live,
        "ping",
        {"zen": "Keep it logically awesome.", "hook_id": 42},
        "p-1",
        secret="from-the-file",
    )
    assert ping.status_code == 200
    assert ping.json() == {
        "delivery": "p-1",
        "event": "ping",
        "ok": True,
        "zen": "Keep it logically awesome.",
    }
    issue = deliver(live, "issues", {"action": "opened"}, "i-1", secret="from-the-file")
    assert issue.status_code == 202 and issue.json()["ignored"] == "issues events"
    again = deliver(live, "issues", {"action": "opened"}, "i-1", secret="from-the-file")
    assert again.status_code == 202 and again.json() == issue.json()
    assert again.headers["x-tusk-replayed"] == "true"
    # A push while no action is configured: ignored, and not recorded.
    push = push_payload("refs/heads/main", "0" * 40, "a" * 40)
    first = deliver(live, "push", push, "n-1", secret="from-the-file")
    assert first.status_code == 202 and "no webhook action" in first.json()["ignored"]
    assert (
        "x-tusk-replayed" not in deliver(live, "push", push, "n-1", secret="from-the-file").headers
    )


def test_malformed_deliveries_are_400(serve: Serve) -> None:
    live = serve(action="apply")
    assert deliver(live, "push", b"{not json").status_code == 400
    assert deliver(live, "push", b"[1, 2]").status_code == 400
    no_sha = push_payload("refs/heads/main", "0" * 40, "not-a-sha")
    r = deliver(live, "push", no_sha)
    assert r.status_code == 400 and "after" in error_of(r)["message"]
    r = deliver(live, "push", {"zen": "x"}, delivery="has space")
    assert r.status_code == 400 and "X-GitHub-Delivery" in error_of(r)["message"]
    deep = b"[" * 100_000 + b"]" * 100_000
    assert deliver(live, "push", deep).status_code == 400


# The apply action


def test_a_push_applies_the_specs_at_that_sha_once(serve: Serve, remote: Remote) -> None:
    live = serve(action="apply", git_url=str(remote.bare))
    payload = remote.push(specs())
    sha = payload["after"]

    r = deliver(live, "push", payload, "d-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["delivery"], body["event"], body["action"]) == ("d-1", "push", "apply")
    assert (body["sha"], body["ref"]) == (sha, "refs/heads/main")
    assert {(c["name"], c["action"]) for c in body["result"]["changes"]} == {
        ("data", "create"),
        ("up", "create"),
    }
    c = live.client()
    info = c.inspect_pipeline("up", history=True)
    origin = info.versions[-1].origin
    assert origin["git"]["sha"] == sha
    assert origin["git"]["remote"] == CLONE_URL
    assert origin["git"]["branch"] == "main"
    assert origin["git"]["path"] == "specs/pipelines.yaml"
    assert origin["git"]["dirty"] is False
    checkout = live.services.home / "webhooks" / "checkouts" / sha
    assert origin["working_dir"] == str(checkout / "specs")

    # The code at that SHA runs: the transform is a script of the repository.
    c.put_file("data@master:/a.txt", b"hello\n")
    c.run_scheduler(once=True)
    assert c.get_file("up@master:/a.txt") == b"HELLO\n"

    # A replay does nothing again and answers as before.
    before = state(live)
    again = deliver(live, "push", payload, "d-1")
    assert again.status_code == 200 and again.json() == body
    assert again.headers["x-tusk-replayed"] == "true"
    assert state(live) == before
    assert c.inspect_pipeline("up").version == 1

    # The next push updates the pipeline and records the new SHA.
    second = remote.push(specs(description="v2"))
    r2 = deliver(live, "push", second, "d-2")
    assert r2.status_code == 200, r2.text
    assert {(c["name"], c["action"]) for c in r2.json()["result"]["changes"]} == {
        ("data", "unchanged"),
        ("up", "update"),
    }
    info = c.inspect_pipeline("up", history=True)
    assert info.version == 2
    assert [v.origin["git"]["sha"] for v in info.versions] == [sha, second["after"]]
    # The same SHA delivered again under a new id (a re-run of the workflow): nothing changes.
    r3 = deliver(live, "push", second, "d-3")
    assert r3.status_code == 200
    assert {c["action"] for c in r3.json()["result"]["changes"]} == {"unchanged"}
    assert c.inspect_pipeline("up").version == 2


def test_the_action_and_its_record_are_one_transaction(
    serve: Serve, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure between doing the action and recording the delivery leaves neither."""
    live = serve(action="apply", git_url=str(remote.bare))
    payload = remote.push(specs())

    def crash(self: MetaTx, record: Any) -> None:
        raise RuntimeError("killed before the delivery was recorded")

    with monkeypatch.context() as m:
        m.setattr(MetaTx, "insert_webhook_delivery", crash)
        r = deliver(live, "push", payload, "d-1")
        assert r.status_code == 500
    assert state(live)["pipelines"] == {} and "data" not in state(live)["repos"]
    r = deliver(live, "push", payload, "d-1")
    assert r.status_code == 200 and "x-tusk-replayed" not in r.headers
    assert live.client().inspect_pipeline("up").version == 1
    assert deliver(live, "push", payload, "d-1").headers["x-tusk-replayed"] == "true"


def test_bad_specs_are_422_and_a_redelivery_retries(serve: Serve, remote: Remote) -> None:
    live = serve(action="apply", git_url=str(remote.bare))
    files = specs()
    files["specs/broken.yaml"] = yaml.safe_dump({"pipeline": {"name": "p"}, "input": {}})
    payload = remote.push(files)
    for _ in range(2):  # failures are not recorded: the redelivery tries again
        r = deliver(live, "push", payload, "d-1")
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "invalid_spec"
        assert "specs/broken.yaml" in error_of(r)["message"]
        assert "x-tusk-replayed" not in r.headers
    assert state(live)["pipelines"] == {} and "data" not in state(live)["repos"]


def test_pushes_to_other_refs_are_ignored(serve: Serve, remote: Remote) -> None:
    live = serve(action="apply", git_url=str(remote.bare), ref="main")
    dev = remote.push(specs(), branch="dev")
    r = deliver(live, "push", dev)
    assert r.status_code == 202
    assert r.json()["ignored"] == "a push to refs/heads/dev; only pushes to refs/heads/main act"
    tag = push_payload("refs/tags/v1", "0" * 40, dev["after"])
    assert deliver(live, "push", tag).status_code == 202
    deleted = {**push_payload("refs/heads/main", dev["after"], "0" * 40), "deleted": True}
    assert deliver(live, "push", deleted).status_code == 202
    assert state(live)["pipelines"] == {}
    main = remote.push({}, branch="main")
    assert deliver(live, "push", main).status_code == 200


def test_git_failures_are_502(serve: Serve, remote: Remote, tmp_path: Path) -> None:
    live = serve(action="apply", git_url=str(tmp_path / "no-such-repo.git"))
    payload = remote.push(specs())
    for _ in range(2):
        r = deliver(live, "push", payload, "d-1")
        assert r.status_code == 502 and error_of(r)["code"] == "git_fetch_failed"
        assert "no-such-repo.git" in error_of(r)["message"]
    assert state(live)["pipelines"] == {}


def test_a_commit_force_pushed_away_is_still_fetched(serve: Serve, remote: Remote) -> None:
    """GitHub may deliver a push after a later force-push replaced it: the ref no longer
    leads to the commit, so it is fetched by its SHA."""
    live = serve(action="apply", git_url=str(remote.bare))
    first = remote.push(specs())
    remote.git("commit", "-q", "--amend", "-m", "rewritten")
    remote.git("push", "-q", "-f", "origin", "HEAD:refs/heads/main")
    r = deliver(live, "push", first)
    assert r.status_code == 200, r.text
    origin = live.client().inspect_pipeline("up", history=True).versions[0].origin
    assert origin["git"]["sha"] == first["after"]


def test_a_sha_the_remote_lacks_is_502(serve: Serve, remote: Remote) -> None:
    live = serve(action="apply", git_url=str(remote.bare))
    remote.push(specs())
    r = deliver(live, "push", push_payload("refs/heads/main", "0" * 40, "b" * 40))
    assert r.status_code == 502 and f"no commit {'b' * 40}" in error_of(r)["message"]


def test_payload_urls_must_be_http(serve: Serve, remote: Remote) -> None:
    """Without TUSK_WEBHOOK_GIT_URL the payload's clone_url is fetched, but only over HTTP(S):
    never a path on the server or another transport."""
    live = serve(action="apply")
    payload = remote.push(specs())
    for url in (str(remote.bare), f"file://{remote.bare}", "ext::sh -c touch% /tmp/pwned"):
        r = deliver(live, "push", {**payload, "repository": {"clone_url": url}})
        assert r.status_code == 422, r.text
        assert "not an http(s) URL" in error_of(r)["message"]
    assert not (live.services.home / "webhooks" / "git").exists()
    # An http URL is fetched (and fails here, with the token kept out of the message).
    url = "https://bot:s3cret@127.0.0.1:9/acme/pipelines.git"
    r = deliver(live, "push", {**payload, "repository": {"clone_url": url}})
    assert r.status_code == 502 and "s3cret" not in r.text
    assert "https://127.0.0.1:9/acme/pipelines.git" in error_of(r)["message"]
    for url in ("http://[", "https://host:port/x", "https://"):
        r = deliver(live, "push", {**payload, "repository": {"clone_url": url}})
        assert r.status_code == 502, r.text


def test_checkouts_keep_their_files_inside(remote: Remote, tmp_path: Path) -> None:
    import shutil

    from tusk.pps.gitcache import GitCache

    (remote.work / "passwd").symlink_to("/etc/passwd")
    (remote.work / "up").symlink_to("../../outside")
    (remote.work / "inside").symlink_to("ok.txt")
    payload = remote.push({"ok.txt": "ok"})
    sha = payload["after"]
    cache = GitCache(tmp_path / "cache")
    git_dir = cache.fetch(str(remote.bare), payload["ref"], sha)
    tree = cache.checkout(git_dir, sha, tmp_path / "cache" / "checkouts" / sha)
    assert sorted(p.name for p in tree.iterdir()) == ["inside", "ok.txt"]
    assert (tree / "inside").read_text() == "ok"
    # The commit is in the cache now: no need of the remote for it again.
    shutil.rmtree(remote.bare)
    assert cache.fetch(str(remote.bare), payload["ref"], sha) == git_dir
    assert cache.checkout(git_dir, sha, tmp_path / "again").joinpath("ok.txt").read_text() == "ok"


# The commit action


def test_a_push_commits_the_tree_into_a_data_repo(serve: Serve, remote: Remote) -> None:
    live = serve(action="commit", repo="raw", path="data", git_url=str(remote.bare))
    c = live.client()
    # Symlinks are not committed; one pointing out of the tree is not even extracted.
    (remote.work / "data").mkdir()
    (remote.work / "data" / "passwd").symlink_to("/etc/passwd")
    (remote.work / "data" / "readme").symlink_to("../README.md")
    first = remote.push({"data/a.csv": "1,2\n", "data/sub/b.csv": "3,4\n", "README.md": "hi\n"})
    r = deliver(live, "push", first, "c-1")
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert (result["repo"], result["branch"], result["files"]) == ("raw", "main", 2)
    commit = c.inspect_commit(f"raw@{result['commit']}")
    assert commit.description == f"git {first['after']} refs/heads/main"
    assert sorted(f.path for f in c.glob_files("raw@main:/**")) == ["/a.csv", "/sub", "/sub/b.csv"]
    assert c.get_file("raw@main:/sub/b.csv") == b"3,4\n"

    # A file deleted in git disappears; a changed one changes; one commit for the push.
    second = remote.push({"data/a.csv": None, "data/sub/b.csv": "5,6\n", "data/c.csv": "7\n"})
    r2 = deliver(live, "push", second, "c-2")
    assert r2.status_code == 200, r2.text
    assert r2.json()["result"]["deleted"] == 1
    assert sorted(f.path for f in c.glob_files("raw@main:/**")) == ["/c.csv", "/sub", "/sub/b.csv"]
    assert c.get_file("raw@main:/sub/b.csv") == b"5,6\n"
    commits = c.list_commits("raw@main")
    assert len(commits) == 2 and commits[0].parent == commits[1].id

    # A replay changes nothing; a push that only touches files outside data/ commits nothing.
    again = deliver(live, "push", second, "c-2")
    assert again.json() == r2.json() and again.headers["x-tusk-replayed"] == "true"
    third = remote.push({"README.md": "hello\n"})
    r3 = deliver(live, "push", third, "c-3")
    assert r3.status_code == 200 and r3.json()["result"]["unchanged"] is True
    assert r3.json()["result"]["commit"] is None
    assert len(c.list_commits("raw@main")) == 2


def test_commit_into_a_fixed_branch_feeds_a_pipeline(serve: Serve, remote: Remote) -> None:
    live = serve(action="commit", repo="data", branch="master", git_url=str(remote.bare))
    c = live.client()
    c.create_repo("data")
    c.create_pipeline(
        {
            "pipeline": {"name": "up"},
            "input": {"pfs": {"repo": "data", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", UP_SH]},
        }
    )
    payload = remote.push({"x.txt": "abc\n"}, branch="feature-1")
    r = deliver(live, "push", payload)
    assert r.status_code == 200 and r.json()["result"]["branch"] == "master"
    c.run_scheduler(once=True)
    assert c.get_file("up@master:/x.txt") == b"ABC\n"


def test_a_git_branch_tusk_cannot_name_is_422(serve: Serve, remote: Remote) -> None:
    live = serve(action="commit", repo="raw", git_url=str(remote.bare))
    payload = remote.push({"x.txt": "x"}, branch="feature/x")
    r = deliver(live, "push", payload)
    assert r.status_code == 422 and "TUSK_WEBHOOK_BRANCH" in error_of(r)["message"]
    assert "raw" not in state(live)["repos"]


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Checked when the server starts (``Server.start`` builds the config)."""
    from tusk.errors import InvalidArgument
    from tusk.pps.webhooks import WebhookConfig

    monkeypatch.setenv("TUSK_CONFIG", str(tmp_path / "config.yaml"))
    for name, value, message in [
        ("ACTION", "deploy", "'apply' or 'commit'"),
        ("PRUNE", "maybe", "TUSK_WEBHOOK_PRUNE"),
        ("SPECS", "../elsewhere", "TUSK_WEBHOOK_SPECS"),
        ("PATH", "/etc", "TUSK_WEBHOOK_PATH"),
        ("REPO", "bad name", "invalid repo name"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(f"TUSK_WEBHOOK_{name}", value)
            with pytest.raises(InvalidArgument, match=message):
                WebhookConfig.from_settings()
    monkeypatch.setenv("TUSK_WEBHOOK_ACTION", "commit")
    with pytest.raises(InvalidArgument, match="TUSK_WEBHOOK_REPO"):
        WebhookConfig.from_settings()
    monkeypatch.setenv("TUSK_WEBHOOK_REPO", "raw")
    monkeypatch.setenv("TUSK_WEBHOOK_REF", "main")
    monkeypatch.setenv("TUSK_WEBHOOK_PRUNE", "yes")
    config = WebhookConfig.from_settings()
    assert (config.repo, config.ref, config.prune, config.path) == (
        "raw",
        "refs/heads/main",
        True,
        "",
    )


# The delivery table


def test_a_database_of_the_previous_schema_gains_the_delivery_table(
    home: Path, engine: str
) -> None:
    import os

    import sqlalchemy as sa

    from tusk.storage.meta.store import MetaStore, sqlite_url
    from tusk.storage.meta.store_webhooks import WebhookDeliveryRecord

    home.mkdir(parents=True)
    url = os.environ.get("TUSK_METADATA_URL") or sqlite_url(home / "tusk.db")
    store = MetaStore(url)
    with store.write() as tx:  # back to revision 0002, as a home made before webhooks is
        for table in ("s3_parts", "s3_uploads", "s3_etags"):
            tx.conn.execute(sa.text(f"DROP TABLE {table}"))
        for table in ("webhook_deliveries", "auth_settings", "auth_tokens", "role_bindings"):
            tx.conn.execute(sa.text(f"DROP TABLE {table}"))
        tx.conn.execute(sa.text("DROP TABLE audit_log"))
        tx.conn.execute(sa.text("DROP TABLE secrets"))
        tx.conn.execute(sa.text("DROP TABLE projects"))
        undo_migrations(tx.conn, "0002")
    store.close()
    store = MetaStore(url)
    try:
        record = WebhookDeliveryRecord("github", "d-1", "push", 200, '{"ok": true}', 1.5)
        with store.write() as tx:
            tx.insert_webhook_delivery(record)
        with store.read() as tx:
            assert tx.get_webhook_delivery("github", "d-1") == record
            assert tx.get_webhook_delivery("gitlab", "d-1") is None
    finally:
        store.close()
