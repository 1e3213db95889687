"""The steps of the Tusk GitHub Action (action.yml): install Tusk, then run one tusk command.

    python3 action/run_action.py install   # TUSK_ACTION_VERSION, TUSK_ACTION_PYTHON
    python3 action/run_action.py run       # TUSK_ACTION_COMMAND, TUSK_ACTION_ADDRESS, ...

action.yml passes its inputs as environment variables (never spliced into a script, so a
command holding quotes or ``$(...)`` is data, not shell). ``run`` splits the command like a
shell would (quotes work; no ``$VAR``, globs or pipes), runs ``tusk`` with it and:

- writes the step outputs ``commit-set``, ``jobs`` and ``markdown`` to ``$GITHUB_OUTPUT``
  (several values one per line, in GitHub's ``name<<DELIMITER`` syntax);
- appends a markdown summary to ``$GITHUB_STEP_SUMMARY``: the change table of ``apply``, the
  report itself for ``report``, the jobs for ``wait commit-set``, else the command and its
  output;
- turns tusk's ``error: ...`` and ``warning: ...`` lines into GitHub annotations, and exits
  with tusk's exit code.

The token (input ``token``, else the job's ``$TUSK_TOKEN``) is a secret: ``run`` first prints
``::add-mask::<token>`` so GitHub masks it in every later log line, and replaces it with
``***`` in everything the script writes itself (log lines, annotations, the summary and the
outputs), in case a message of tusk's ever echoes it.

Only the standard library and the installed ``tusk`` command are used, so the script runs on
any Python 3.8+ that a runner has before Tusk is installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

ACTION_PATH = Path(os.environ.get("GITHUB_ACTION_PATH") or Path(__file__).resolve().parents[1])
# Global options of the tusk command that take a value (they may come before the verb).
GLOBAL_OPTIONS_WITH_VALUE = ("--home", "--address", "-o", "--output")
# A pinned tusk-data version: PEP 440 characters only, so it cannot smuggle a pip option in.
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+!_-]*$")
# What the summary shows of a command's own output at most (GitHub caps a summary at 1 MiB).
MAX_SUMMARY_OUTPUT = 60_000
MIN_PYTHON = (3, 11)
INSTALLED_MARKER = "tusk-action-installed"
# How apply's change actions read in the summary, in this order.
APPLIED_WORDS = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "unchanged": "unchanged",
}
DRY_RUN_WORDS = {
    "create": "to create",
    "update": "to update",
    "delete": "to delete",
    "unchanged": "unchanged",
}


class ActionError(Exception):
    """A problem with the action's inputs or environment: one error annotation, exit 2."""


# Secrets: masked by GitHub, and never written by this script

SECRETS: list[str] = []
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def _redact_bytes(data: bytes) -> bytes:
    for secret in SECRETS:
        data = data.replace(secret.encode("utf-8"), REDACTED.encode())
    return data


class _Redacting:
    """A text stream that passes on what it is given with the secrets redacted."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return int(self.stream.write(redact(text)))

    def __getattr__(self, name: str) -> Any:  # flush, buffer, fileno, encoding, ...
        return getattr(self.stream, name)


def add_mask(secret: str) -> None:
    """Have GitHub mask ``secret`` in the log from now on (each line of it too: the runner
    masks line by line), and redact it from everything this script writes."""
    # To the stream under the redaction: redacted, the command would mask nothing.
    out = sys.stdout.stream if isinstance(sys.stdout, _Redacting) else sys.stdout
    parts = [secret, *(line.strip() for line in secret.splitlines())]
    for part in dict.fromkeys(p for p in parts if p):
        out.write(f"::add-mask::{_escape_data(part)}\n")
        SECRETS.append(part)
    out.flush()
    SECRETS.sort(key=len, reverse=True)  # a secret before any part of it
    if not isinstance(sys.stdout, _Redacting):
        sys.stdout = _Redacting(sys.stdout)
    if not isinstance(sys.stderr, _Redacting):
        sys.stderr = _Redacting(sys.stderr)


# GitHub's workflow commands and files


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotate(level: str, message: str, title: str = "") -> None:
    """An ``::error::`` / ``::warning::`` / ``::notice::`` line: shown on the run's page."""
    props = f" title={_escape_property(redact(title))}" if title else ""
    sys.stderr.write(f"::{level}{props}::{_escape_data(redact(message))}\n")
    sys.stderr.flush()


def set_output(name: str, value: str) -> None:
    """Append one step output to ``$GITHUB_OUTPUT``; several lines use a random delimiter."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    value = redact(value)
    if "\n" in value or "\r" in value:
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        while delimiter in value:  # practically never; GitHub rejects a clash
            delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        entry = f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
    else:
        entry = f"{name}={value}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(entry)


def add_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path and markdown:
        markdown = redact(markdown)
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")


def add_path(folder: Path) -> None:
    """Put ``folder`` first on PATH for the steps after this one (``$GITHUB_PATH``)."""
    path = os.environ.get("GITHUB_PATH")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{folder}\n")


# Running tusk


class Done:
    """What one tusk run gave: exit code, stdout (all of it) and its error line, if any."""

    def __init__(self, code: int, stdout: str, error: str) -> None:
        self.code = code
        self.stdout = stdout
        self.error = error


def _relay_stderr(stream: Any, title: str, errors: list[str]) -> None:
    """tusk's stderr as it comes: error and warning lines become annotations."""
    for raw in iter(stream.readline, b""):
        line = redact(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if line.startswith("error: "):
            errors.append(line[len("error: ") :])
            annotate("error", line[len("error: ") :], title)
        elif line.startswith("warning: "):
            annotate("warning", line[len("warning: ") :], title)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def run_tusk(args: list[str], *, echo: bool, title: str) -> Done:
    """Run ``tusk ARGS``; with ``echo`` its stdout goes to the log as it comes."""
    exe = shutil.which("tusk")
    if exe is None:
        raise ActionError("tusk is not on PATH: the action's install step did not run or failed")
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[str] = []
    relay = threading.Thread(target=_relay_stderr, args=(proc.stderr, title, errors))
    relay.start()
    chunks: list[bytes] = []
    assert proc.stdout is not None
    # Line by line (a token holds no newline), so no secret is split between two writes.
    for line in iter(proc.stdout.readline, b""):
        chunks.append(line)
        if echo:
            sys.stdout.flush()
            sys.stdout.buffer.write(_redact_bytes(line))
            sys.stdout.buffer.flush()
    code = proc.wait()
    relay.join()
    stdout = b"".join(chunks).decode("utf-8", "replace")
    return Done(code, stdout, errors[-1] if errors else "")


def split_command(command: str) -> tuple[list[str], list[str]]:
    """(global options, verb and the rest) of a tusk command line; a leading ``tusk`` is
    dropped."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError as exc:
        raise ActionError(f"cannot split the command {command!r}: {exc}") from None
    if words and words[0] == "tusk":
        words = words[1:]
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in GLOBAL_OPTIONS_WITH_VALUE else 1
    if i >= len(words):
        raise ActionError("the command input names no tusk command (e.g. 'apply -f specs/')")
    return words[:i], words[i:]


def _has_option(words: list[str], *names: str) -> bool:
    return any(w in names or any(w.startswith(n + "=") for n in names) for w in words)


def _shown(words: list[str]) -> str:
    return "tusk " + " ".join(shlex.quote(w) for w in words)


def _cell(text: Any) -> str:
    """A value for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _failed(done: Done) -> str:
    reason = done.error or "see the log"
    return f"**Failed** (exit {done.code}): {reason}\n"


def _jobs_of_commit_set(globals_: list[str], commit_set: str, title: str) -> list[str]:
    """The jobs a commit set holds, as PIPELINE@ID: one per pipeline output commit in it.

    Output commits are made with the input commit, jobs a moment later by the scheduler, so
    the commits are the reliable answer right after a put or a run.
    """
    done = run_tusk(
        [*globals_, "inspect", "commit-set", commit_set, "-o", "json"], echo=False, title=title
    )
    if done.code != 0:
        return []
    commits = json.loads(done.stdout)
    return sorted({f"{c['repo']}@{commit_set}" for c in commits if c.get("provenance")})


# The commands


def do_apply(globals_: list[str], words: list[str]) -> tuple[int, dict[str, str]]:
    title = "tusk apply"
    done = run_tusk([*globals_, *words, "-o", "json"], echo=False, title=title)
    head = f"### `{_shown(words)}`\n\n"
    if done.code != 0:
        return done.code, {"markdown": head + _failed(done)}
    result = json.loads(done.stdout)
    changes = result.get("changes", [])
    counts: dict[str, int] = {}
    for c in changes:
        counts[c["action"]] = counts.get(c["action"], 0) + 1
    dry = bool(result.get("dry_run"))
    labels = DRY_RUN_WORDS if dry else APPLIED_WORDS
    order = [*labels, *sorted(set(counts) - set(labels))]
    tally = ", ".join(f"{counts[a]} {labels.get(a, a)}" for a in order if a in counts)
    tally = tally or "nothing declared"
    lines = []
    if dry:
        lines.append(f"Dry run: {tally}; nothing was applied.")
    else:
        lines.append(f"Applied: {tally}.")
        if result.get("jobs"):
            sets = ", ".join(result.get("commit_sets", []))
            lines.append(f"{len(result['jobs'])} job(s) started, commit set(s): {sets}.")
    md = [head, "\n".join(lines), "\n\n"]
    if changes:
        md.append("| Action | Kind | Name | Version | Source |\n|---|---|---|---:|---|\n")
        for c in changes:
            version = "" if c.get("version") is None else c["version"]
            reprocess = " (reprocess)" if c.get("reprocess") else ""
            md.append(
                f"| {_cell(c['action'])}{reprocess} | {_cell(c['kind'])} | `{_cell(c['name'])}`"
                f" | {version} | {_cell(c.get('source', ''))} |\n"
            )
    for c in changes:
        if c.get("diff"):
            md.append(
                f"\n<details><summary>{_cell(c['kind'])} <code>{_cell(c['name'])}</code>: "
                f"spec diff</summary>\n\n{_fence(c['diff'], 'diff')}\n</details>\n"
            )
    for job in result.get("jobs", []):
        md.append(f"\n- job `{job}`")
    for warning in result.get("warnings", []):
        md.append(f"\n> [!WARNING]\n> {warning}\n")
    markdown = "".join(md).rstrip() + "\n"
    # The log: the same facts as plain text.
    print(lines[0] if len(lines) == 1 else "\n".join(lines))
    for c in changes:
        version = "-" if c.get("version") is None else f"v{c['version']}"
        print(f"  {c['action']:<10} {c['kind']:<9} {c['name']:<24} {version:<5} {c['source']}")
    for c in changes:
        if c.get("diff"):
            print(f"::group::{c['kind']} {c['name']}: spec diff")
            print(c["diff"].rstrip())
            print("::endgroup::")
    for job in result.get("jobs", []):
        print(f"  job {job}")
    return 0, {
        "commit-set": "\n".join(result.get("commit_sets", [])),
        "jobs": "\n".join(result.get("jobs", [])),
        "markdown": markdown,
    }


def do_report(globals_: list[str], words: list[str]) -> tuple[int, dict[str, str]]:
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary or _has_option(words, "-o", "--output", "--output-file"):
        return do_other(globals_, words)
    before = os.path.getsize(summary) if os.path.exists(summary) else 0
    done = run_tusk(
        [*globals_, *words, "--output-file", summary, "--append"], echo=True, title="tusk report"
    )
    if done.code != 0:
        return done.code, {"markdown": f"### `{_shown(words)}`\n\n{_failed(done)}"}
    with open(summary, "rb") as f:
        f.seek(before)
        markdown = f.read().decode("utf-8", "replace")
    if redact(markdown) != markdown:  # tusk wrote this part itself: redact it there too
        markdown = redact(markdown)
        with open(summary, "r+b") as f:
            f.truncate(before)
            f.seek(before)
            f.write(markdown.encode("utf-8"))
    print(markdown.rstrip())
    return 0, {"markdown": markdown, "_written": "yes"}


def do_started(globals_: list[str], words: list[str]) -> tuple[int, dict[str, str]]:
    """``put file`` and ``run pipeline``: both return a commit; its commit set is the output."""
    title = f"tusk {words[0]} {words[1]}"
    done = run_tusk([*globals_, *words, "-o", "json"], echo=False, title=title)
    head = f"### `{_shown(words)}`\n\n"
    if done.code != 0:
        return done.code, {"markdown": head + _failed(done)}
    result = json.loads(done.stdout)
    commit = result.get("commit", result)
    commit_set = commit["commit_set"]
    jobs = _jobs_of_commit_set(globals_, commit_set, title)
    where = f"{commit['repo']}@{commit['branch'] or commit['id']}"
    if words[0] == "put":
        text = (
            f"Put {result.get('files', '?')} file(s), {result.get('bytes', '?')} bytes, into "
            f"`{where}`: commit `{commit['id']}`, commit set `{commit_set}`."
        )
    else:
        text = f"Output commit `{commit['id']}` on `{where}`, commit set `{commit_set}`."
    lines = [text] + [f"- job `{j}`" for j in jobs]
    print("\n".join(lines).replace("`", ""))
    return 0, {
        "commit-set": commit_set,
        "jobs": "\n".join(jobs),
        "markdown": head + "\n".join(lines) + "\n",
    }


def do_wait_commit_sets(globals_: list[str], words: list[str]) -> tuple[int, dict[str, str]]:
    """``wait commit-set ID...``: several ids (the ``commit-set`` output of apply may hold
    more than one) are waited for one by one; none is nothing to wait for."""
    ids: list[str] = []
    options: list[str] = []
    rest = words[2:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in ("--timeout", "-o", "--output"):
            if word == "--timeout" and i + 1 < len(rest):
                options += rest[i : i + 2]
            i += 2
        elif word.startswith("-"):
            if not word.startswith(("-o=", "--output=")):
                options.append(word)
            i += 1
        else:
            ids.append(word)
            i += 1
    head = f"### `{_shown(words)}`\n\n"
    if not ids:
        print("No commit set to wait for: nothing was started.")
        return 0, {"markdown": head + "No commit set to wait for: nothing was started.\n"}
    code = 0
    rows = []
    failures = []
    for commit_set in ids:
        done = run_tusk(
            [*globals_, "wait", "commit-set", commit_set, *options, "-o", "json"],
            echo=False,
            title="tusk wait",
        )
        if done.stdout.strip():
            for job in json.loads(done.stdout):
                rows.append(job)
        if done.code != 0:
            code = code or done.code
            failures.append(f"`{commit_set}`: {_failed(done).strip()}")
    md = [head]
    if rows:
        md.append("| Pipeline | Job | State | Processed | Skipped | Failed | Duration |\n")
        md.append("|---|---|---|---:|---:|---:|---:|\n")
    for job in rows:
        started, finished = job.get("started_at"), job.get("finished_at")
        took = f"{finished - started:.1f} s" if started and finished else ""
        md.append(
            f"| `{_cell(job['pipeline'])}` | `{job['id']}` | {_cell(job['state'])} "
            f"| {job.get('processed', '')} | {job.get('skipped', '')} | {job.get('failed', '')} "
            f"| {took} |\n"
        )
        reason = f" ({job['reason']})" if job.get("reason") else ""
        print(
            f"{job['pipeline']}@{job['id']}: {job['state']}{reason}, {job.get('processed')} "
            f"processed, {job.get('skipped')} skipped, {job.get('failed')} failed"
        )
    if not rows and not failures:
        md.append("No jobs.\n")
    md.extend(f"\n{f}\n" for f in failures)
    return code, {"markdown": "".join(md)}


def do_other(globals_: list[str], words: list[str]) -> tuple[int, dict[str, str]]:
    done = run_tusk([*globals_, *words], echo=True, title=f"tusk {words[0]}")
    md = f"### `{_shown(words)}`\n\n"
    out = done.stdout
    if len(out) > MAX_SUMMARY_OUTPUT:
        out = out[:MAX_SUMMARY_OUTPUT] + "\n... (cut; the whole output is in the log)"
    if out.strip():
        md += _fence(out)
    md += _failed(done) if done.code != 0 else ("" if out.strip() else "Done.\n")
    return done.code, {"markdown": md}


def run() -> int:
    token = os.environ.get("TUSK_ACTION_TOKEN", "").strip()
    # Before anything is printed: GitHub masks the token (the input's, else the job's own
    # $TUSK_TOKEN) in every log line after this one, and this script never writes it.
    if token or os.environ.get("TUSK_TOKEN", "").strip():
        add_mask(token or os.environ["TUSK_TOKEN"].strip())
    command = os.environ.get("TUSK_ACTION_COMMAND", "")
    address = os.environ.get("TUSK_ACTION_ADDRESS", "").strip()
    # Empty inputs leave the job's own TUSK_ADDRESS / TUSK_TOKEN (or a tusk context) alone.
    if address:
        os.environ["TUSK_ADDRESS"] = address
    if token:
        os.environ["TUSK_TOKEN"] = token
    globals_, words = split_command(command)
    if not os.environ.get("TUSK_ADDRESS") and not _has_option(globals_, "--address", "--home"):
        annotate(
            "notice",
            "no server address (input 'address' or TUSK_ADDRESS): tusk works on a home on "
            "this runner, which is gone when the job ends",
            "tusk",
        )
    verb = words[0]
    noun = words[1] if len(words) > 1 else ""
    if verb == "apply":
        code, outputs = do_apply(globals_, words)
    elif verb == "report":
        code, outputs = do_report(globals_, words)
    elif (verb, noun) in (("put", "file"), ("run", "pipeline")):
        code, outputs = do_started(globals_, words)
    elif (verb, noun) == ("wait", "commit-set"):
        code, outputs = do_wait_commit_sets(globals_, words)
    else:
        code, outputs = do_other(globals_, words)
    if not outputs.pop("_written", None):
        add_summary(outputs.get("markdown", ""))
    for name in ("commit-set", "jobs", "markdown"):
        set_output(name, outputs.get(name, ""))
    return code


# Installing


def _python_of(script: str) -> str | None:
    """The interpreter named on the first line of a console script."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode("utf-8", "replace").strip()
    except OSError:
        return None
    return first[2:].strip().split()[0] if first.startswith("#!") and first[2:].strip() else None


def _installed_from_checkout(script: str, checkout: Path) -> bool:
    """Whether the ``tusk`` on PATH imports its code from ``checkout`` (an editable install
    of it), so installing it again would change nothing."""
    python = _python_of(script)
    if python is None:
        return False
    found = subprocess.run(
        [python, "-c", "import tusk, sys; sys.stdout.write(tusk.__file__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        return False
    try:
        Path(found.stdout).resolve().relative_to((checkout / "src").resolve())
    except ValueError:
        return False
    return True


def _version_of(script: str) -> str | None:
    done = subprocess.run(
        [script, "version", "-o", "json"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    try:
        return str(json.loads(done.stdout)["tusk"])
    except (ValueError, KeyError, TypeError):
        return None


def install() -> int:
    wanted = os.environ.get("TUSK_ACTION_VERSION", "").strip()
    local = wanted in ("", "local")
    if not local and not VERSION_RE.match(wanted):
        raise ActionError(
            f"version {wanted!r} is not a tusk-data version (such as 0.1.0) or 'local'"
        )
    if sys.version_info < MIN_PYTHON:
        raise ActionError(
            f"Tusk needs Python {'.'.join(map(str, MIN_PYTHON))}+, and {sys.executable} is "
            f"{sys.version.split()[0]}: run actions/setup-python first, or set the input python"
        )
    target = str(ACTION_PATH) if local else f"tusk-data=={wanted}"
    # A venv of its own: runner images refuse pip installs into the system Python (PEP 668).
    venv = Path(os.environ.get("RUNNER_TEMP") or Path.home()) / "tusk-venv"
    bin_dir = venv / "bin"
    marker = venv / INSTALLED_MARKER  # what an earlier step of this job installed there
    if (bin_dir / "tusk").exists() and marker.is_file() and marker.read_text() == target:
        print(f"{target} is already installed in {venv} (by an earlier step)")
        add_path(bin_dir)
        return 0
    existing = shutil.which("tusk")
    if existing and local and _installed_from_checkout(existing, ACTION_PATH):
        print(f"tusk from {ACTION_PATH} is already installed ({existing})")
        return 0
    if existing and not local and _version_of(existing) == wanted:
        print(f"tusk {wanted} is already installed ({existing})")
        return 0
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {target} into {venv}", flush=True)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if subprocess.run([*pip, target], check=False).returncode != 0:
        raise ActionError(f"pip could not install {target} (see the lines above)")
    marker.write_text(target)
    add_path(bin_dir)
    subprocess.run([str(bin_dir / "tusk"), "version"], check=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("install", "run"):
        sys.stderr.write("usage: run_action.py install | run\n")
        return 2
    try:
        return install() if argv[1] == "install" else run()
    except ActionError as exc:
        annotate("error", str(exc), "tusk action")
        return 2
    except (ValueError, KeyError, TypeError) as exc:  # tusk's JSON was not what we read
        annotate("error", f"unexpected output from tusk ({type(exc).__name__}: {exc})", "tusk")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
