#!/usr/bin/env bash
# Pachyderm's "edges + montage" tutorial on Tusk, offline: generated images go into a repo,
# `edges` makes an edge image of each (one datum per image), `montage` puts every image next
# to its edges in one picture. Then one more image is added: `edges` processes that one datum
# and skips the rest, and `montage` is made again.
#
#   bash examples/edges/run.sh   # on $TUSK_HOME if set, else a fresh examples/edges/.tusk-demo
#
# Needs tusk and a python3 with numpy and Pillow first on PATH (./dev.sh makes .venv/bin so).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${TUSK_HOME:-}" ]; then
  export TUSK_HOME="$HERE/.tusk-demo"
  rm -rf "$TUSK_HOME"
fi
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# Six small synthetic pictures (shapes on gradients, fixed seed), and a seventh for later.
python3 "$HERE/generate.py" "$DATA/images" --count 6 >/dev/null
python3 "$HERE/generate.py" "$DATA/later" --start 6 --count 1 >/dev/null

step tusk create repo images -d "Pictures to find edges in"
step tusk put file images@master:/ -r -f "$DATA/images" -d "Six pictures"
# Each pipeline gets an output repo of its name; its code runs in the spec file's folder.
step tusk create pipeline -f "$HERE/edges.yaml"
step tusk create pipeline -f "$HERE/montage.yaml"
# Run every waiting job here, then exit (`tusk up` alone keeps running and waits for data).
step tusk up --once
step tusk list job
step tusk list file edges@master
# Where an output file came from: pipeline version, job, datum, spec file, and input files.
step tusk lineage edges@master:/shapes-0.png

# One more picture: one new commit, so one new job per pipeline (one commit set).
step tusk put file images@master:/shapes-6.png -f "$DATA/later/shapes-6.png" -d "One more"
step tusk up --once
job="$(tusk list job -p edges -o json | python3 -c '
import json, sys
job = json.load(sys.stdin)[0]  # newest first
counts = (job["state"], job["processed"], job["skipped"])
if counts != ("success", 1, 6):
    sys.exit(f"expected the edges job to process 1 datum and skip 6, got {counts}")
print(job["id"])
')"
step tusk list datum "edges@$job"
echo
echo "The edges job $job processed 1 new datum and skipped the 6 unchanged ones."
echo "The montage was made again with 7 rows; get it with:"
echo "  TUSK_HOME=$TUSK_HOME tusk get file montage@master:/montage.png -o montage.png"
