#!/usr/bin/env bash
# A small training pipeline on Tusk: day files -> split -> train -> evaluate -> report.
# Then two changes show what reruns (see README.md):
#   1. labels fixed in day 3's held-out rows: 1 split, 0 train, 1 evaluate datum run;
#   2. a new day arrives: 1 split datum and the training run, then every evaluate datum,
#      because the model changed.
#
#   bash examples/ml/run.sh   # on $TUSK_HOME if set, else a fresh examples/ml/.tusk-demo
#
# Needs tusk and a python3 with numpy and scikit-learn first on PATH (./dev.sh's .venv/bin).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${TUSK_HOME:-}" ]; then
  export TUSK_HOME="$HERE/.tusk-demo"
  rm -rf "$TUSK_HOME"
fi
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# `put FILE ADDRESS DESCRIPTION`: put one file and print the id of the commit set it starts.
put() {
  printf '\n\033[1m$ tusk put file %s -f %s -d "%s"\033[0m\n' "$2" "$1" "$3" >&2
  tusk put file "$2" -f "$1" -d "$3" -o json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["commit"]["commit_set"])'
}

# `check_jobs COMMIT_SET PIPELINE=PROCESSED/SKIPPED...`: show the jobs of one change (one
# commit set); fail unless each pipeline's job succeeded with that many datums run and skipped.
check_jobs() {
  printf '\n\033[1m$ tusk list job --commit-set %s -o json\033[0m  (summed up)\n' "$1"
  tusk list job --commit-set "$1" -o json | python3 -c '
import json, sys
jobs = {j["pipeline"]: j for j in json.load(sys.stdin)}
for job in sorted(jobs.values(), key=lambda j: j["created_at"]):
    print("{pipeline:9} {state:8} {datums_total} datums: {processed} processed, "
          "{skipped} skipped".format(**job))
for want in sys.argv[1:]:
    name, counts = want.split("=")
    processed, skipped = (int(n) for n in counts.split("/"))
    job = jobs.get(name)
    got = (job["state"], job["processed"], job["skipped"]) if job else None
    if got != ("success", processed, skipped):
        sys.exit(f"expected {name} to succeed with {processed} processed, {skipped} skipped; "
                 f"got {got}")
' "${@:2}"
}

# Five days of 400 rows: id, four features, a label.
python3 "$HERE/generate.py" "$DATA" --days 5 >/dev/null

step tusk create repo data -d "Labelled rows, one CSV file per day"
# One file, four specs (split, train, evaluate, report), created in file order. Each gets an
# output repo of its name; its code runs in this folder.
step tusk create pipeline -f "$HERE/pipelines.yaml"
# The data: one commit, so one commit set with one job per pipeline.
step tusk put file data@master:/ -r -f "$DATA" -d "Days 1-5"
step tusk up --once
step tusk list job
step tusk get file report@master:/metrics.json

# 1. An audit fixes labels of day 3's held-out rows (ids that are multiples of 5). Only
#    test/day-03.csv changes: the model is the same, so train skips its datum and evaluate
#    scores day 3 again and skips the other days.
python3 - "$DATA/day-03.csv" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().splitlines()
fixed = 0
for i, line in enumerate(lines[1:], 1):
    cells = line.split(",")
    if int(cells[0]) % 5 == 0 and fixed < 8:
        cells[-1] = "1" if cells[-1] == "0" else "0"
        lines[i] = ",".join(cells)
        fixed += 1
open(path, "w").write("\n".join(lines) + "\n")
PY
cs="$(put "$DATA/day-03.csv" data@master:/day-03.csv "Relabel 8 held-out rows of day 3")"
step tusk up --once
check_jobs "$cs" split=1/4 train=0/1 evaluate=1/4 report=1/0
step tusk lineage evaluate@master:/day-03/metrics.json --depth 1

# 2. A new day: split runs for it alone, the model is trained again on all days, and so
#    every day is evaluated again with the new model.
python3 "$HERE/generate.py" "$DATA" --start 6 --days 1 >/dev/null
cs="$(put "$DATA/day-06.csv" data@master:/day-06.csv "Day 6")"
step tusk up --once
check_jobs "$cs" split=1/5 train=1/0 evaluate=6/0 report=1/0
step tusk get file report@master:/metrics.json
