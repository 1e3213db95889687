#!/usr/bin/env bash
# Developer entry point: sets up .venv by itself, then runs the quickstart or the test suite.
#   ./dev.sh quickstart   create a repo, ingest a sample dataset, commit twice, log, diff, read back
#   ./dev.sh test         lint (Python, and the console's JavaScript), type-check, layering check,
#                         then the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv

# Debian packages the pipelines need: bubblewrap maps /pfs in a private mount namespace.
ensure_debs() {
  local missing=()
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  # actionlint checks the run: steps of the example workflows with shellcheck (tests/test_github.py).
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  # Pipelines that name an image: skopeo copies it into an OCI layout, umoci unpacks its layers
  # (docs/images.md); the tests build their images from busybox-static's binary.
  command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
  command -v umoci >/dev/null 2>&1 || missing+=(umoci)
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  # The registry pull tests start Debian's registry on 127.0.0.1, with an htpasswd file for auth.
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
  # PostgreSQL's server binaries: the tests start their own server in a temp dir.
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 ||
    missing+=(postgresql)
  # The web console's browser tests (tests/console) drive Debian's chromium (/usr/bin/chromium)
  # with Playwright: `playwright install` cannot download its own browser builds on these machines.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # tusk mount (tests/test_mount.py) serves commits through FUSE 3: libfuse3 and fusermount3;
  # the tests read the mount with rsync, among other tools.
  command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  # ESLint checks the console's JavaScript (ensure_eslint installs it with npm). Debian's Node.js
  # only where the machine has none: a NodeSource nodejs already brings its own npm.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
      { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
}

ensure_venv() {
  ensure_debs
  if [ ! -x "$VENV/bin/tusk" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip 2>&1 |
      { grep -v "is ignored: it is neither a file nor a directory" || true; }
    # (pip warns about every package index folder it cannot use; keep only what matters)
    "$VENV/bin/pip" install -q -e '.[test,dev,examples]' 2>&1 |
      { grep -v "is ignored: it is neither a file nor a directory" || true; }
    touch "$VENV/.installed"
  fi
  # The aws CLI (tests/s3/test_clients.py) pins botocore exactly, against s3fs's aiobotocore in
  # the test extra: it gets a venv of its own inside .venv.
  # Pachyderm's own Python client (tests/grpcapi) pins python-dotenv and betterproto exactly,
  # against the test extra's: a venv of its own too, driven by the tests as a subprocess.
  if [ ! -x "$VENV/pachsdk/bin/python" ] ||
    ! "$VENV/pachsdk/bin/python" -c "import pachyderm_sdk" 2>/dev/null; then
    python3 -m venv "$VENV/pachsdk"
    "$VENV/pachsdk/bin/pip" install -q "pachyderm-sdk==2.12.2" 2>&1 |
      { grep -v "is ignored: it is neither a file nor a directory" || true; }
  fi
  if [ ! -x "$VENV/awscli/bin/aws" ]; then
    python3 -m venv "$VENV/awscli"
    "$VENV/awscli/bin/pip" install -q awscli 2>&1 |
      { grep -v "is ignored: it is neither a file nor a directory" || true; }
  fi
}

# ESLint for the console's JavaScript (src/tusk/console/static; rules in eslint.config.mjs, which
# finds @eslint/js and globals here too), pinned exactly, in .venv/node rather than a node_modules
# at the root; npm installs them again when these pins change.
# axe-core (MPL-2.0) is not shipped: tests/console injects it into the pages to check them
# for WCAG 2 A/AA problems (labels, contrast, roles).
ESLINT_PKGS=(eslint@9.39.5 @eslint/js@9.39.5 globals@17.15.0 axe-core@4.14.1)
ensure_eslint() {
  if [ ! -x "$VENV/node/node_modules/.bin/eslint" ] ||
    [ "$(cat "$VENV/node/.installed" 2>/dev/null)" != "${ESLINT_PKGS[*]}" ]; then
    npm install --prefix "$VENV/node" --no-save --no-audit --no-fund --loglevel=error \
      "${ESLINT_PKGS[@]}" >/dev/null
    echo "${ESLINT_PKGS[*]}" >"$VENV/node/.installed"
  fi
}

case "${1:-}" in
  quickstart)
    ensure_venv
    PATH="$PWD/$VENV/bin:$PATH" exec bash examples/quickstart.sh
    ;;
  protos)
    # Tusk's .proto files (src/tusk/grpcapi/gen) into Python beside them, after editing them.
    ensure_venv
    "$VENV/bin/python" -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
      src/tusk/grpcapi/gen/*.proto
    ;;
  test)
    ensure_venv
    ensure_eslint
    "$VENV/bin/ruff" check src tests bench action
    "$VENV/bin/ruff" format --check src tests bench action
    "$VENV/bin/mypy"
    "$VENV/bin/lint-imports"
    # The console's JavaScript (vendor/ is ignored by eslint.config.mjs). ESLint 9 exits 2 when
    # a folder holds nothing to lint: that is no error here.
    "$VENV/node/node_modules/.bin/eslint" --no-error-on-unmatched-pattern --max-warnings 0 \
      src/tusk/console/static
    shift
    # Two test processes (pytest-xdist), each taking whole files so that a module's server is
    # started once: most tests wait on servers and child processes, so two halve the time
    # on a 2-core machine. Each process starts its own PostgreSQL and S3 endpoints.
    exec "$VENV/bin/pytest" -q -n "${TUSK_TEST_WORKERS:-2}" --dist loadfile "$@"
    ;;
  *)
    echo "usage: ./dev.sh quickstart | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
