"""Write a generated tabular dataset for the ML example: one CSV file per day.

    python3 generate.py OUT_DIR [--days N] [--start D] [--rows R] [--seed S]

Day ``d`` is ``OUT_DIR/day-<dd>.csv`` with columns ``id,x1,x2,x3,x4,label``: four numeric
features and a binary label from a fixed noisy linear rule, drifting a little from day to day.
Row ids are ``d * 10000 + i``, unique across days. The same seed and day give the same file,
so ``--start 6 --days 1`` adds day 6 to an earlier set of five.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WEIGHTS = np.array([1.5, -2.0, 0.7, 0.0])  # x4 is noise: the model should learn ~0 for it
COLUMNS = ["id", "x1", "x2", "x3", "x4", "label"]


def day_rows(day: int, rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, day])
    drift = 0.05 * day
    x = rng.normal(loc=drift, scale=1.0, size=(rows, 4))
    score = x @ WEIGHTS - 0.3 + rng.normal(scale=0.8, size=rows)
    label = (score > 0).astype(int)
    lines = [",".join(COLUMNS)]
    for i in range(rows):
        values = ",".join(f"{v:.4f}" for v in x[i])
        lines.append(f"{day * 10000 + i},{values},{label[i]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the CSV files into")
    parser.add_argument("--days", type=int, default=5, help="how many days (default 5)")
    parser.add_argument("--start", type=int, default=1, help="the first day (default 1)")
    parser.add_argument("--rows", type=int, default=400, help="rows per day (default 400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for day in range(args.start, args.start + args.days):
        path = args.out / f"day-{day:02d}.csv"
        path.write_text("\n".join(day_rows(day, args.rows, args.seed)) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
