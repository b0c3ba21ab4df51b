"""Skipping rows at rest: the event-driven synapse step against the dense fused one.

With a compact surrogate (the triangle), a neuron far from threshold has zero surrogate
derivatives, and its (sample, post) row of per-synapse work reduces to a constant decay with
zero eligibility (``TracePlan.quiescence``). ``synapse_events`` skips such rows and decays them
lazily; ``synapse_step`` sweeps every row. Both run on the same layer (ALIF, a leaky readout,
the speed benchmark's sizes) with a chosen fraction of rows active, from 1% to 100%: the
crossover is where skipping stops paying.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgrad.runtime.layer_code import SynapseBuffers

from .common import Problem, Section, best_seconds, pyplot, table

NAME = "events"
TITLE = "Event-driven rows: step time against the fraction of active rows"
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def _layer_step(problem: Problem, fraction: float, events: bool):
    """One synapse step of the problem's first layer, with ``fraction`` of its rows active."""
    net = problem.network()
    layer, code = net.layers[0], net.layers[0].code
    port = code.ports[layer.ports[0].input]
    rng = np.random.default_rng(problem.seed)
    dtype, (batch, n, n_pre) = net.dtype, (problem.batch, layer.n, layer.n_pre)
    K = code.fixed_entries(net.neuron_params(layer))
    kernel = code.kernels.kernels["synapse_events"]
    decay = {arg.name: K["decay"][arg.of] for arg in kernel.args if arg.role == "decay"}  # by local name
    active = rng.random((batch, n)) < fraction
    J = {}
    for name in code.DYNAMIC:
        resting = dict(kernel.rests).get(name)
        rest = 0.0 if resting in (None, "0") else float(decay[resting])
        J[name] = np.where(active, rng.random((batch, n)), rest).astype(dtype)
    traces = port.traces(batch, n, n_pre, dtype)
    for value in traces.arrays.values():
        value[...] = rng.random(value.shape)
    shapes = layer.plan.buffers(batch, n, n_pre, filtered=True, fused=True, events=events)
    arrays = {name: np.zeros(shape, dtype) for name, shape in shapes.items()}
    buffers = SynapseBuffers(u=(rng.random((batch, n_pre)) < 0.05).astype(dtype), **arrays)
    L = rng.standard_normal((batch, n)).astype(dtype)

    def step():
        port.synapse_step(traces, J, K, buffers, L, net.kappa, skip_rest=events)
        buffers.step += 1
    return step


def run(quick: bool, out: Path) -> Section:
    problem = Problem(model="alif", kappa=0.9, backend="numba")
    if quick:
        problem = problem.but(batch=4, n_in=12, hidden=16, n_out=5)
    repeats = 2 if quick else 5
    rows = []
    dense = best_seconds(_layer_step(problem, 1.0, events=False), repeats)
    for fraction in FRACTIONS:
        seconds = best_seconds(_layer_step(problem, fraction, events=True), repeats)
        rows.append({"fraction": fraction, "events": seconds, "dense": dense})
        print(f"  {100 * fraction:5.1f}% active: events {1e3 * seconds:.3f} ms, dense {1e3 * dense:.3f} ms "
              f"({dense / seconds:.1f}x)")
    crossover = next((r["fraction"] for r in rows if r["events"] >= r["dense"]), None)
    plot = "events.png"
    _plot(rows, out / plot)
    figures = {"problem": vars(problem), "rows": rows, "crossover": crossover}
    return Section(NAME, TITLE, figures, _markdown(problem, rows, crossover), [plot])


def _markdown(problem: Problem, rows: list, crossover) -> str:
    lines = [[f"{100 * r['fraction']:g}%", f"{1e3 * r['events']:.3f}", f"{1e3 * r['dense']:.3f}",
              f"{r['dense'] / r['events']:.1f}x"] for r in rows]
    where = (f"Skipping stops paying at about {100 * crossover:g}% active rows."
             if crossover else "Skipping never costs more than the dense step, even with every row active.")
    return (f"ALIF, kappa=0.9 (a filtered eligibility), B={problem.batch}, M={problem.n_in}, "
            f"N={problem.hidden} recurrent, {problem.dtype}; one synapse step, best of several.\n\n"
            + table(["active rows", "ms event-driven", "ms dense", "speed-up"], lines) + f"\n\n{where}\n")


def _plot(rows: list, path: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    fractions = [100 * r["fraction"] for r in rows]
    ax.plot(fractions, [1e3 * r["events"] for r in rows], marker="o", label="event-driven (synapse_events)")
    ax.plot(fractions, [1e3 * r["dense"] for r in rows], linestyle="--", label="dense (synapse_step)")
    ax.set(xscale="log", yscale="log", xlabel="active rows (%)", ylabel="ms per synapse step",
           title="ALIF synapse step against activity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
