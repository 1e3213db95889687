"""Score the model on one day's held-out rows; write /pfs/out/<day>/metrics.json.

Input: a cross of ``model`` (the train repo, glob ``/``: the model file) and ``test`` (the
split repo, glob ``/test/*``: one day's test file). So each datum is (model, one day): when
only one day's test rows change, only that datum runs; when the model changes, every day is
scored again, as it must be.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))


def main() -> None:
    model = json.loads((PFS / "model" / "model.json").read_text())
    for path in sorted((PFS / "test" / "test").glob("*.csv")):  # /pfs/<input>/<path>
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        x, y = table[:, 1:5], table[:, 5].astype(int)
        z = ((x - model["mean"]) / model["scale"]) @ np.array(model["coef"]) + model["intercept"]
        p = 1.0 / (1.0 + np.exp(-z))
        pred = (p >= 0.5).astype(int)
        tp = int(((pred == 1) & (y == 1)).sum())
        fp = int(((pred == 1) & (y == 0)).sum())
        fn = int(((pred == 0) & (y == 1)).sum())
        eps = 1e-12
        metrics = {
            "day": path.stem,
            "rows": len(y),
            "accuracy": round(float((pred == y).mean()) if len(y) else 0.0, 6),
            "precision": round(tp / (tp + fp) if tp + fp else 0.0, 6),
            "recall": round(tp / (tp + fn) if tp + fn else 0.0, 6),
            "log_loss": round(
                float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))), 6
            ),
        }
        target = PFS / "out" / path.stem / "metrics.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"{path.stem}: accuracy {metrics['accuracy']:.3f} on {metrics['rows']} rows")


if __name__ == "__main__":
    main()
