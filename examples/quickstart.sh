#!/usr/bin/env bash
# Tusk in one minute: a repo, a generated dataset, two commits, the log, a diff, and a file
# read back from the first commit; then pipelines: Pachyderm's edges + montage tutorial on
# generated images, with lineage and an incremental run (examples/edges/run.sh). Runs on the
# embedded default (SQLite + a local folder).
set -euo pipefail
export TUSK_HOME="${TUSK_HOME:-$PWD/.tusk-demo}"
rm -rf "$TUSK_HOME"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# A sample dataset: 3 regions x 4 months of sales as CSV files.
python3 - "$DATA/sales" <<'PY'
import random, sys
from pathlib import Path
root = Path(sys.argv[1])
rng = random.Random(7)
for region in ("north", "south", "west"):
    for month in range(1, 5):
        path = root / region / f"2026-{month:02d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ["day,units,revenue"] + [
            f"{d},{(u := rng.randint(1, 90))},{u * 19.5:.2f}" for d in range(1, 29)
        ]
        path.write_text("\n".join(rows) + "\n")
PY

step tusk create repo sales -d "Monthly sales by region"
step tusk put file sales@master:/ -r -f "$DATA/sales" -d "Initial import"
# A correction to one month and a new month: one new commit.
sed -i 's/^1,/1,0/' "$DATA/sales/north/2026-02.csv"
printf 'day,units,revenue\n1,12,234.00\n' > "$DATA/sales/north/2026-05.csv"
step tusk start commit sales@master -d "Fix north February, add May"
step tusk put file sales@master:/north/2026-02.csv -f "$DATA/sales/north/2026-02.csv"
step tusk put file sales@master:/north/2026-05.csv -f "$DATA/sales/north/2026-05.csv"
step tusk finish commit sales@master
step tusk list commit sales@master
step tusk list file sales@master:/north
step tusk diff file sales@master sales@master^1
echo
echo "The February file as it was in the first commit (first 3 lines):"
tusk get file 'sales@master^1:/north/2026-02.csv' | head -3
step tusk fsck

# Pipelines, in the same home: images -> edges (one datum per image) -> montage.
printf '\n\033[1m# Pipelines: examples/edges/run.sh\033[0m\n'
bash "$(dirname "$0")/edges/run.sh"
echo
echo "Done. Data lives in $TUSK_HOME; try: TUSK_HOME=$TUSK_HOME tusk inspect repo sales"
echo "or: TUSK_HOME=$TUSK_HOME tusk lineage montage@master:/montage.png"
