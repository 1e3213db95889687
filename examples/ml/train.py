"""Fit a logistic regression on every training row; write /pfs/out/model.json.

Input ``split`` with glob ``/train``: one datum holding every day's training file, since the
model depends on all of them. The model is written as JSON (feature scaling, coefficients,
intercept), readable, diffable and the same bytes for the same data, and ``evaluate`` needs
only numpy to apply it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))
FEATURES = ["x1", "x2", "x3", "x4"]


def load(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    tables = [np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2) for p in paths]
    table = np.vstack(tables)
    return table[:, 1:5], table[:, 5].astype(int)


def main() -> None:
    paths = sorted((PFS / "split" / "train").glob("*.csv"))
    x, y = load(paths)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x), y)
    doc = {
        "kind": "logistic_regression",
        "features": FEATURES,
        "mean": [round(float(v), 8) for v in scaler.mean_],
        "scale": [round(float(v), 8) for v in scaler.scale_],
        "coef": [round(float(v), 8) for v in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 8),
        "train_rows": len(y),
        "train_files": [p.name for p in paths],
        "train_accuracy": round(float(model.score(scaler.transform(x), y)), 6),
    }
    (PFS / "out" / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"trained on {len(y)} rows from {len(paths)} files: coef {doc['coef']}")


if __name__ == "__main__":
    main()
