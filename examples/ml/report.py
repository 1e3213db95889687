"""Sum up every day's metrics into /pfs/out/metrics.json (glob ``/``: one datum).

Overall accuracy is weighted by the number of test rows of each day.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))


def main() -> None:
    days = [json.loads(p.read_text()) for p in sorted((PFS / "evaluate").glob("*/metrics.json"))]
    rows = sum(d["rows"] for d in days)
    correct = sum(d["accuracy"] * d["rows"] for d in days)
    report = {
        "accuracy": round(correct / rows, 6) if rows else 0.0,
        "rows": rows,
        "days": {d["day"]: {"accuracy": d["accuracy"], "rows": d["rows"]} for d in days},
    }
    (PFS / "out" / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"accuracy {report['accuracy']:.3f} over {rows} test rows of {len(days)} days")


if __name__ == "__main__":
    main()
