"""Split each day's rows into a training and a held-out test part.

Input ``data`` with glob ``/*``: each datum is one day's file, so a changed day is split again
and the others are not. A row is held out when its id is a multiple of 5 (20%): the rule
depends on the row alone, so the same rows always land on the same side and an unchanged day
gives byte-identical outputs. Writes ``/pfs/out/train/<day>.csv`` and ``/pfs/out/test/<day>.csv``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))
TEST_EVERY = 5


def is_test(row_id: str) -> bool:
    return int(row_id) % TEST_EVERY == 0


def main() -> None:
    for path in sorted((PFS / "data").rglob("*.csv")):
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
        parts = {
            "train": [r for r in rows if not is_test(r[0])],
            "test": [r for r in rows if is_test(r[0])],
        }
        for part, part_rows in parts.items():
            target = PFS / "out" / part / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(part_rows)
        print(f"{path.name}: {len(parts['train'])} train rows, {len(parts['test'])} test rows")


if __name__ == "__main__":
    main()
