"""Print the figures `make faults` recorded, as the table in docs/RELIABILITY.md."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main(directory: str) -> int:
    path = Path(directory) / "cases.jsonl"
    if not path.exists():
        print(f"no figures in {path}", file=sys.stderr)
        return 1
    merged: dict[str, dict] = defaultdict(dict)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        case = row.pop("case")
        row.pop("time", None)
        for key, value in row.items():  # fuzz targets add up over parametrized runs
            if key == "executions" and key in merged[case]:
                value += merged[case][key]
            merged[case][key] = value
    print("| case | measured |")
    print("|---|---|")
    for case, figures in merged.items():
        print(f"| {case} | " + ", ".join(f"{k} {v}" for k, v in figures.items()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/faults"))
