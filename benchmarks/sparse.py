"""Sparse connectivity: e-prop's time per step and peak memory against the dense layer.

ALIF, recurrent, float32, a per-step loss on a leaky readout (kappa 0.9, so e-prop keeps a
filtered eligibility per synapse), M input channels with 5% input spikes. The sparse layer
gives each neuron round(P x M) input and round(P x N) recurrent partners. Time per step is the
best pass over T steps after a warm-up pass, divided by T; memory is the tracemalloc peak of a
pass above what was allocated before it (numpy's and Numba's arrays report to it), next to what
``TracePlan.memory`` predicts from nnz. The layer four times as wide at the same connectivity
holds about the dense layer's number of synapses; dense, it is only predicted (it would not fit
beside the rest on a 24 GB machine).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgrad import models
from symgrad.runtime import Network, backends, eprop

from .common import Section, Target, best_seconds, mib, pyplot, table, trace_plan, traced_peak

NAME = "sparse"
TITLE = "Sparse connectivity"
MODEL, KAPPA, RATE, LOSS = "alif", 0.9, 0.05, "ce"


def sizes(quick: bool) -> dict:
    if quick:
        return dict(batch=4, n_in=70, hidden=128, wide=512, steps=5, probability=0.05)
    return dict(batch=32, n_in=700, hidden=1024, wide=4096, steps=100, probability=0.05)


def network(size: dict, hidden: int, connectivity, backend: str) -> Network:
    return Network(models.builtin(MODEL), size["n_in"], hidden, 20, recurrent=True, kappa=KAPPA, seed=0,
                   dtype="float32", backend=backend, connectivity=connectivity)


def predicted(net: Network, batch: int) -> int:
    """What the plan says a pass keeps for the layer's traces and buffers."""
    from symgrad.runtime.eprop import memory

    return memory(net, batch, LOSS)


def measure(size: dict, hidden: int, connectivity, backend: str) -> dict:
    net = network(size, hidden, connectivity, backend)
    rng = np.random.default_rng(1)
    x = (rng.random((size["steps"], size["batch"], size["n_in"])) < RATE).astype(np.float32)
    labels = rng.integers(0, 20, size["batch"])
    result = eprop(net, x, labels, loss=LOSS)  # the warm-up: compiles, and checks the layer spikes
    if not result.spikes[0]:
        raise RuntimeError(f"the N={hidden} layer is silent: its timing would say nothing")
    seconds = best_seconds(lambda: eprop(net, x, labels, loss=LOSS), repeats=3, warmup=0)
    peak = traced_peak(lambda: eprop(net, x, labels, loss=LOSS))
    synapses = sum(port.synapses.count or hidden * port.n_pre for layer in net.layers for port in layer.ports)
    row = dict(hidden=hidden, connectivity=connectivity or 1.0, synapses=synapses,
               ms_per_step=1e3 * seconds / size["steps"], peak_bytes=peak, predicted_bytes=predicted(net, size["batch"]))
    print(f"  N={hidden:5d} P={row['connectivity']:<5g} synapses {synapses:>10,d}  {row['ms_per_step']:8.2f} ms/step"
          f"  peak {mib(peak):>9s} MiB (plan {mib(row['predicted_bytes'])} MiB)")
    return row


def dense_prediction(size: dict, hidden: int, backend: str) -> int:
    """What the dense layer of ``hidden`` neurons would keep, from the plan alone (not built)."""
    return trace_plan(MODEL, False).memory(size["batch"], hidden, size["n_in"] + hidden, 4, filtered=True,
                                           fused=backends.get(backend).fused)["total"]


def run(quick: bool, out: Path, backend: str = backends.DEFAULT) -> Section:
    size = sizes(quick)
    p = size["probability"]
    dense = measure(size, size["hidden"], None, backend)
    sparse = measure(size, size["hidden"], p, backend)
    wide = measure(size, size["wide"], p, backend)
    wide_dense = dense_prediction(size, size["wide"], backend)
    rows = [dense, sparse, wide]
    figures = dict(size=size, backend=backend, model=MODEL, kappa=KAPPA, loss=LOSS, rows=rows,
                   wide_dense_predicted_bytes=wide_dense)
    targets = [
        Target(f"time per step at P={p:g} / dense (N={size['hidden']})", sparse["ms_per_step"] / dense["ms_per_step"],
               0.15),
        Target(f"peak memory at P={p:g} / dense (N={size['hidden']})", sparse["peak_bytes"] / dense["peak_bytes"], 0.12),
        Target(f"time per step, N={size['wide']} at P={p:g} / N={size['hidden']} dense",
               wide["ms_per_step"] / dense["ms_per_step"], 1.5),
    ]
    plot = "sparse.png"
    _plot(rows, out / plot)
    return Section(NAME, TITLE, figures, _markdown(size, rows, wide_dense, backend), [plot], targets)


def _markdown(size: dict, rows: list, wide_dense: int, backend: str) -> str:
    setting = (f"{MODEL}, recurrent, B={size['batch']}, M={size['n_in']}, T={size['steps']}, float32, "
               f"loss {LOSS} with kappa {KAPPA}, {backends.get(backend).title} backend")
    lines = [[r["hidden"], f"{r['connectivity']:g}", f"{r['synapses']:,d}", f"{r['ms_per_step']:.2f}",
              mib(r["peak_bytes"]), mib(r["predicted_bytes"])] for r in rows]
    dense, sparse = rows[0], rows[1]
    return (f"{setting}.\n\n"
            + table(["N", "connectivity", "synapses", "ms/step", "peak MiB", "plan MiB"], lines)
            + f"\n\nAt {sparse['connectivity']:g}: {sparse['ms_per_step'] / dense['ms_per_step']:.3f}x the dense "
              f"time per step and {sparse['peak_bytes'] / dense['peak_bytes']:.3f}x its peak memory. "
              f"The dense layer of {rows[2]['hidden']} neurons would keep {mib(wide_dense)} MiB (the plan's "
              f"prediction; not run).\n")


def _plot(rows: list, path: Path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [f"N={r['hidden']}\nP={r['connectivity']:g}" for r in rows]
    axes[0].bar(labels, [r["ms_per_step"] for r in rows])
    axes[0].set(ylabel="ms per step", title="time per step")
    axes[1].bar(labels, [r["peak_bytes"] / 2**20 for r in rows], label="measured")
    axes[1].plot(labels, [r["predicted_bytes"] / 2**20 for r in rows], "ko", label="plan")
    axes[1].set(ylabel="peak MiB", title="peak memory of a pass")
    axes[1].legend()
    fig.suptitle("e-prop with sparse connectivity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
