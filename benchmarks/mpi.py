"""Data-parallel training over MPI: measured on this machine, then extrapolated on paper.

Measured: ``symgrad train alif --task fsdd`` (randman at quick sizes) on 1 and 2 processes,
with each run's own split of a batch's time into computing its slice and the all-reduce
(which includes waiting for the slowest rank).

Extrapolated: SSC-sized training (140 pooled channels, 256 recurrent ALIF neurons, 35 classes,
100 steps) on P ranks of a cluster. Each batch all-reduces one buffer of every weight; its
time is modelled as a ring all-reduce, 2 (P-1)/P bytes / bandwidth + 2 (P-1) latency, at a
typical interconnect's bandwidth and latency. Computing a batch's slice takes B/P times the
measured per-sample time of one rank on one core (rounded up: a rank with one sample more
sets the pace). Efficiency = compute(1) / (P (compute(P) + all-reduce(P))).
"""
from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Problem, Section, Target, best_seconds, pyplot, table

NAME = "mpi"
TITLE = "MPI data parallelism: 1 and 2 processes here, and SSC on a cluster on paper"
FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
BANDWIDTH, LATENCY = 10e9, 2e-6  # bytes/s and s: 100 Gb/s InfiniBand (EDR) or RoCE
SSC = dict(channels=140, hidden=256, classes=35, steps=100)
TIMING = re.compile(r"compute ([\d.]+) ms(?:, all-reduce \(with waiting for the slowest rank\) ([\d.]+) ms)?")


def train_cli(ranks: int, options: list, folder: Path) -> dict:
    """One training run; its wall time and its per-batch split."""
    command = [sys.executable, "-m", "symgrad.cli", "train", "alif", "--quiet", "--out", str(folder), *options]
    if ranks > 1:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    compute, communicate = TIMING.search(done.stdout).groups()
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", done.stdout).group(1))
    return dict(ranks=ranks, wall_s=wall, compute_ms=float(compute), allreduce_ms=float(communicate or 0),
                accuracy=accuracy)


def _per_sample_seconds(quick: bool) -> float:
    """One rank's e-prop time per sample at SSC's sizes, on one core (the numba backend)."""
    sizes = dict(n_in=SSC["channels"], hidden=SSC["hidden"], n_out=SSC["classes"], steps=SSC["steps"])
    if quick:
        sizes = dict(n_in=20, hidden=16, n_out=5, steps=10)
    problem = Problem(model="alif", kappa=0.9, backend="numba", batch=4, recurrent=True, **sizes)
    net = problem.network(fresh=True)
    x, labels = problem.data()
    from symgrad.runtime.eprop import eprop
    from symgrad.runtime import backends
    from symgrad.runtime.parallel import FusedThreads

    run = FusedThreads(backends.get("numba"), 1, blas=1)
    seconds = best_seconds(lambda: run(eprop, net, x, labels, loss="ce_mean"), 2 if quick else 3)
    return seconds / problem.batch


def allreduce_seconds(nbytes: float, ranks: int) -> float:
    """A ring all-reduce of ``nbytes`` over ``ranks`` ranks at BANDWIDTH and LATENCY."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / BANDWIDTH + 2 * (ranks - 1) * LATENCY


def efficiency(per_sample: float, nbytes: float, batch: int, ranks: int) -> float:
    compute_one = batch * per_sample
    compute = math.ceil(batch / ranks) * per_sample
    return compute_one / (ranks * (compute + allreduce_seconds(nbytes, ranks)))


def run(quick: bool, out: Path) -> Section:
    skipped, measured = {}, []
    if quick or not FSDD.is_dir():
        options = ["--set", "samples=64", "--set", "test_samples=16", "--set", "channels=12",
                   "--set", "steps=20", "--set", "n_classes=3", "--hidden", "16", "--epochs", "1"]
        workload = "randman, 64 samples, 16 neurons, 1 epoch"
    else:
        options = ["--task", "fsdd", "--data", str(FSDD)]
        workload = "fsdd (the defaults: 128 ALIF neurons, 12 epochs)"
    with tempfile.TemporaryDirectory() as scratch:
        measured.append(train_cli(1, options, Path(scratch) / "p1"))
        if importlib.util.find_spec("mpi4py") and MPIEXEC.exists():
            measured.append(train_cli(2, options, Path(scratch) / "p2"))
        else:
            skipped["2 processes"] = "mpi4py or mpiexec is not installed (pip install -e \".[mpi]\")"
    per_sample = _per_sample_seconds(quick)
    weights = SSC["hidden"] * (SSC["channels"] + SSC["hidden"]) + SSC["classes"] * (SSC["hidden"] + 1)
    nbytes = 4 * weights
    counts = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    batches = (32, 256)
    curves = {b: [efficiency(per_sample, nbytes, b, p) for p in counts] for b in batches}
    largest = {b: max(p for p in range(1, 1025) if efficiency(per_sample, nbytes, b, p) >= 0.8) for b in batches}
    figures = dict(workload=workload, measured=measured, per_sample_s=per_sample, weights=weights,
                   allreduce_bytes=nbytes, bandwidth=BANDWIDTH, latency=LATENCY, ranks=counts,
                   efficiency={str(b): c for b, c in curves.items()}, largest_80={str(b): p for b, p in largest.items()},
                   allreduce_64_ms=1e3 * allreduce_seconds(nbytes, 64))
    plot = f"{NAME}.png"
    _plot(counts, curves, out / plot)
    targets = [Target("2 processes: all-reduce share of a batch's time", _share(measured[-1]), 0.2)] \
        if len(measured) > 1 else []
    return Section(NAME, TITLE, figures, _markdown(figures), [plot], targets, skipped)


def _share(row: dict) -> float:
    return row["allreduce_ms"] / (row["allreduce_ms"] + row["compute_ms"])


def _markdown(f: dict) -> str:
    rows = [[r["ranks"], f"{r['wall_s']:.1f}", f"{r['compute_ms']:.1f}", f"{r['allreduce_ms']:.2f}",
             f"{r['accuracy']:.1f}%"] for r in f["measured"]]
    measured = table(["processes", "wall s", "compute ms/batch", "all-reduce ms/batch", "test accuracy"], rows)
    model = (f"SSC on paper: {f['weights']:,} weights, an all-reduce of {f['allreduce_bytes'] / 1e3:.0f} kB per "
             f"batch ({1e3 * f['allreduce_64_ms']:.0f} us at 64 ranks, {f['bandwidth'] / 1e9:g} GB/s, "
             f"{1e6 * f['latency']:g} us latency); e-prop computes one sample in "
             f"{1e3 * f['per_sample_s']:.1f} ms on one core. Efficiency at 64 ranks: "
             + ", ".join(f"{100 * f['efficiency'][b][f['ranks'].index(64)]:.0f}% with batch {b}"
                         for b in f["efficiency"])
             + ". Largest P at 80% efficiency or more: "
             + ", ".join(f"{p} with batch {b}" for b, p in f["largest_80"].items()) + ".")
    return f"Measured ({f['workload']}):\n\n{measured}\n\n{model}\n"


def _plot(counts, curves: dict, path: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for batch, values in curves.items():
        ax.plot(counts, [100 * v for v in values], marker="o", label=f"global batch {batch}")
    ax.axhline(80, color="grey", linestyle=":", label="80%")
    ax.set(xscale="log", xlabel="ranks", ylabel="parallel efficiency (%)", ylim=(0, 105),
           title="SSC-sized e-prop on a cluster (model)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
