"""python scripts/sparse_figure.py RUNS [OUT]: the README's plot of FSDD accuracy against connectivity.

RUNS is the folder ``scripts/readme_figures.py --only fsdd_sparse --keep RUNS`` kept, whose
claim names its runs ``fsdd0`` (dense) and ``fsdd0-n<neurons>-p<connectivity>``; each run's
config.json gives its neurons and connectivity, its metrics.json the test accuracy of its last
epoch. OUT defaults to docs/fsdd_sparse.png.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    runs, out = Path(argv[0]), Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "fsdd_sparse.png"
    points = {}
    for folder in [runs / "fsdd0", *sorted(runs.glob("fsdd0-n*-p*"))]:
        config = json.loads((folder / "config.json").read_text())
        accuracy = json.loads((folder / "metrics.json").read_text())["test_acc"][-1]
        points.setdefault(config["hidden"], []).append((config.get("connectivity", 1.0), 100 * accuracy))
    ax = Figure(figsize=(5, 3.2), layout="constrained").add_subplot()
    for hidden, values in sorted(points.items()):
        values.sort()
        ax.plot([c for c, _ in values], [a for _, a in values], "o-", label=f"{hidden} neurons")
    ax.set(xscale="log", xlabel="connectivity (share of each projection's inputs)", ylabel="test accuracy (%)",
           title="FSDD, ALIF e-prop, seed 0")
    ax.legend()
    ax.figure.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
