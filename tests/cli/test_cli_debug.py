"""``tusk debug datum`` (issue 18): the failed datum of a cross-input pipeline, written to a
folder from the commits its job read (newer commits on both inputs since), rerun as the
scheduler runs it next to the original run's log, then fixed on "the laptop" and rerun with
one command; in-process and against a live server; and a datum that ran in an image, rerun
in that image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clihelpers import Tusk, assert_one_error

from tusk import Client
from tusk.pps.executor import bwrap_works

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).parents[1] / "pps"))
from apihelpers import start_live, stop_live
from imagekit import busybox_image

# Fails on any input file that says "bad"; otherwise writes the pair's contents to /pfs/out.
CHECK = """for f in "$TUSK_PFS"/a/* "$TUSK_PFS"/b/*; do
  if grep -q bad "$f"; then echo "cannot read $(basename "$f")" >&2; exit 3; fi
done
echo "pair $(ls "$TUSK_PFS"/a) $(ls "$TUSK_PFS"/b)"
cat "$TUSK_PFS"/a/* "$TUSK_PFS"/b/* > "$TUSK_PFS/out/$(ls "$TUSK_PFS"/a)-$(ls "$TUSK_PFS"/b)"
"""
SPEC = {
    "pipeline": {"name": "pairs"},
    "input": {
        "cross": [
            {"pfs": {"repo": "letters", "glob": "/*", "name": "a"}},
            {"pfs": {"repo": "numbers", "glob": "/*", "name": "b"}},
        ]
    },
    "transform": {"cmd": ["sh", "check.sh"], "env": {"GREETING": "hi"}},
    "datum_tries": 1,
}


@dataclass(frozen=True)
class Failed:
    home: Path
    code: Path  # the pipeline's working directory, holding check.sh
    job: str
    datum: str
    files: dict[str, bytes]  # pfs/<input>/<path> -> content at the job's commits
    commits: dict[str, str]  # input name -> the commit the job read


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Failed:
    root = tmp_path_factory.mktemp("debug")
    home, code = root / "home", root / "code"
    code.mkdir()
    (code / "check.sh").write_text(CHECK)
    data = {"letters": {"/x.txt": b"x\n", "/y.txt": b"y\n"}, "numbers": {"/1.txt": b"one\n"}}
    data["numbers"]["/2.txt"] = b"bad\n"
    with Client(home) as c:
        for repo, files in data.items():
            c.create_repo(repo)
            c.put_files(f"{repo}@master", [(path, body) for path, body in files.items()])
        read = {
            "a": c.inspect_commit("letters@master").id,
            "b": c.inspect_commit("numbers@master").id,
        }
        c.create_pipeline(SPEC, working_dir=code)
        c.run_scheduler(once=True)
        [job] = c.list_jobs("pairs")
        assert job.state == "failure"
        [datum] = [d for d in c.list_datums(f"pairs@{job.id}") if d.state == "failed"]
        # Newer commits on both inputs: the datum must still come from the job's commits.
        c.put_file("numbers@master:/2.txt", b"fixed\n")
        c.put_file("letters@master:/z.txt", b"z\n")
    files = {}
    for f in datum.files:
        repo = "letters" if f["input_name"] == "a" else "numbers"
        files[f"pfs/{f['input_name']}{f['path']}"] = data[repo][f["path"]]
    assert files["pfs/b/2.txt"] == b"bad\n" and len(files) == 2
    return Failed(home, code, job.id, datum.id, files, read)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder.parent).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_failed_datum_is_rerun_on_its_exact_inputs_then_fixed(
    failed: Failed, tmp_path: Path
) -> None:
    tusk = Tusk(failed.home)
    folder = tmp_path / "dbg"
    shown = tusk("debug", "datum", "pairs", failed.job, failed.datum[:12], "--dir", str(folder))
    assert files_under(folder / "pfs") == failed.files  # that datum's files, nothing newer
    assert (folder / "pfs" / "out").is_dir()
    record = json.loads((folder / "datum.json").read_text())
    assert (record["datum"], record["state"], record["exit_code"]) == (failed.datum, "failed", 3)
    assert {f["input_name"]: f["commit"] for f in record["files"]} == failed.commits
    assert (record["version"], record["executor"], record["working_dir"]) == (
        1, "host", str(failed.code),
    )  # fmt: skip
    assert record["env"]["GREETING"] == "hi" and record["env"]["b"] == "/pfs/b/2.txt"
    assert record["env"]["b_COMMIT"] == failed.commits["b"]
    assert "export TUSK_PFS=" in (folder / "env.sh").read_text()
    assert f"{folder / 'run.sh'}" in shown.stdout and "--shell" in shown.stdout

    # --run reproduces the failure through the scheduler's executor: both logs, exit 1.
    rerun = ["debug", "datum", "pairs", failed.job, failed.datum, "--dir", str(folder), "--run"]
    r = tusk(*rerun, code=1)
    original, _, this = r.stdout.partition("== this run")
    assert original.startswith("== original run") and "exit code 3" in original
    assert "[stderr] cannot read 2.txt" in original and "[stderr] cannot read 2.txt" in this
    assert "failed, exit code 3" in this
    assert r.stderr.splitlines()[-1].startswith("error: the rerun of datum")
    assert "cannot read 2.txt" in (folder / "logs" / "original.txt").read_text()

    # An edited command sees the same environment: $b is this datum's file.
    edited = ["--", "sh", "-c", 'echo "$GREETING"; cat "$b" > "$TUSK_PFS/out/seen"']
    r = tusk(*rerun, *edited)
    assert "[stdout] hi" in r.stdout and (folder / "pfs/out/seen").read_bytes() == b"bad\n"

    # Fixed on the laptop (a copy of the code), rerun with one command: run.sh.
    laptop = tmp_path / "laptop"
    shutil.copytree(failed.code, laptop)
    fixed = CHECK.replace("exit 3", "continue")
    (laptop / "check.sh").write_text(fixed)
    env = {k: v for k, v in os.environ.items() if k != "TUSK_ADDRESS"}
    done = subprocess.run(
        [str(folder / "run.sh"), "--working-dir", str(laptop)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "success, exit code 0" in done.stdout and "[stdout] pair " in done.stdout
    [(name, body)] = files_under(folder / "pfs" / "out").items()
    assert name.startswith("out/") and body.endswith(b"bad\n")


def test_bad_input_and_the_shell(failed: Failed, tmp_path: Path) -> None:
    tusk = Tusk(failed.home)
    job, datum = failed.job, failed.datum
    assert "pipeline nope not found" in tusk.fails("debug", "datum", "nope", job, datum, code=3)
    assert "job pairs@f00d not found" in tusk.fails(
        "debug", "datum", "pairs", "f00d", datum, code=3
    )
    msg = tusk.fails("debug", "datum", "pairs", job, "ffffff", code=3)
    assert msg.startswith("datum ffffff of job pairs@") and "not found" in msg
    both = ("debug", "datum", "pairs", job, datum, "--shell", "--run")
    assert "not both" in tusk.fails(*both, code=2)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    place = ("debug", "datum", "pairs", job, datum, "--dir", str(busy))
    assert "--force" in tusk.fails(*place, code=4)
    assert sorted(os.listdir(busy)) == ["notes.txt"]  # refused: nothing written
    tusk(*place, "--force")
    assert (busy / "notes.txt").read_text() == "mine" and (busy / "datum.json").is_file()

    # --shell: $SHELL in the folder with the datum's environment.
    fake = tmp_path / "fake-shell"
    fake.write_text('#!/bin/sh\necho "$(pwd) $GREETING $b $TUSK_JOB_ID" > "$TUSK_PFS/out/env"\n')
    fake.chmod(0o755)
    r = Tusk(failed.home)(*place, "--shell", env={"SHELL": str(fake)})
    assert r.exit_code == 0
    seen = (busy / "pfs" / "out" / "env").read_text().split()
    assert seen == [str(busy), "hi", f"{busy}/pfs/b/2.txt", job]


@pytest.fixture
def server(failed: Failed) -> Iterator[str]:
    live = start_live(failed.home)
    try:
        yield live.url
    finally:
        stop_live(live)


def test_against_a_server(failed: Failed, server: str, tmp_path: Path) -> None:
    tusk = Tusk(failed.home)
    tusk.target = ["--address", server]
    folder = tmp_path / "remote"
    args = ("debug", "datum", "pairs", failed.job, failed.datum, "--dir", str(folder))
    tusk(*args)
    assert files_under(folder / "pfs") == failed.files
    assert f"--address {server}" in (folder / "run.sh").read_text()
    r = tusk(*args, "--run", code=1)
    assert r.stdout.count("[stderr] cannot read 2.txt") == 2
    assert_one_error(r.stderr.splitlines()[-1])
    with Client(address=server) as remote, Client(failed.home) as local:
        address = f"pairs@{failed.job}"
        assert remote.datum_run(address, failed.datum) == local.datum_run(address, failed.datum)


IMAGES = bool(shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox"))


@pytest.mark.skipif(
    not (IMAGES and bwrap_works()) and os.environ.get("CI") != "true",
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)
def test_a_datum_that_ran_in_an_image_reruns_in_it(tmp_path: Path) -> None:
    ref = busybox_image(tmp_path / "img", "v1", env=["MARK=in-image"])
    home = tmp_path / "home"
    probe = 'echo "$MARK $(id -u)" $(ls /pfs); grep -q bad "$w" && exit 5; cp "$w" /pfs/out/'
    with Client(home) as c:
        c.create_repo("words")
        c.put_files("words@master", [("/ok", b"fine\n"), ("/no", b"bad\n")])
        c.create_pipeline({
            "pipeline": {"name": "boxed"},
            "input": {"pfs": {"repo": "words", "glob": "/*", "name": "w"}},
            "transform": {"image": ref, "cmd": ["sh", "-c", probe]},
            "datum_tries": 1,
        })  # fmt: skip
        c.run_scheduler(once=True)
        [job] = c.list_jobs("boxed")
        [datum] = [d for d in c.list_datums(f"boxed@{job.id}") if d.state == "failed"]
    folder = tmp_path / "dbg"
    args = ("debug", "datum", "boxed", job.id, datum.id, "--dir", str(folder), "--run")
    r = Tusk(home)(*args, code=1)
    assert json.loads((folder / "datum.json").read_text())["executor"] == "image"
    assert f"this run: image {ref} ({job.image_digest}), failed, exit code 5" in r.stdout
    assert r.stdout.count("[stdout] in-image 0 out w") == 2  # the image's env, /pfs as it was
    # --shell: the image's sh with /pfs as the datum saw it (a real terminal's stdin here: a
    # pipe to the `tusk` process, which the shell inherits).
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    typed = 'echo "$MARK $(cat "$w") $(id -u)" > /pfs/out/seen; test -x /bin/busybox; exit $?\n'
    shell = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args[:-1], "--force",
         "--shell"], input=typed, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert (folder / "pfs" / "out" / "seen").read_text() == "in-image bad 0\n"


def test_a_failed_datum_of_a_datum_batching_pipeline_reruns_in_its_loop(tmp_path: Path) -> None:
    """The code's own `tusk next datum` loop runs again on this one datum, and fails again."""
    home = tmp_path / "home"
    loop = (
        'while tusk next datum; do for f in "$TUSK_PFS"/in/*; do '
        'grep -q bad "$f" && { echo "bad datum $(basename "$f")" >&2; exit 4; }; '
        'tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done; done'
    )
    with Client(home) as c:
        c.create_repo("in")
        c.put_files("in@master", [("/a", b"alpha\n"), ("/b", b"bad\n")])
        c.create_pipeline({
            "pipeline": {"name": "batched"},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", loop], "datum_batching": True},
            "datum_tries": 1,
        })  # fmt: skip
        c.run_scheduler(once=True)
        [job] = c.list_jobs("batched")
        [bad] = [d for d in c.list_datums(f"batched@{job.id}") if d.state == "failed"]
    folder = tmp_path / "dbg"
    args = ("debug", "datum", "batched", job.id, bad.id, "--dir", str(folder), "--run")
    r = Tusk(home)(*args, code=1)
    assert files_under(folder / "pfs") == {"pfs/in/b": b"bad\n"}  # only this datum's file
    _original, _, this = r.stdout.partition("== this run")
    assert "[stderr] bad datum b" in this and "failed" in this
    fixed = loop.replace("exit 4", "continue")
    r = Tusk(home)(*args, "--", "sh", "-c", fixed)
    assert "success" in r.stdout.partition("== this run")[2]
    assert files_under(folder / "pfs" / "out") == {}  # a bad datum is skipped: no output
