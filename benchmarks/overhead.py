"""Per-step overhead, and the layer size where work takes over from it.

Overhead: on a network too small to have work (ALIF, N=16 recurrent, M=8 inputs, B=1, the
FSDD run's kappa and dtype), the time per step per layer of symgrad e-prop and BPTT, each run
as ``symgrad train`` runs it (``as_trained``), with one layer and the run's loss, and with one
and two layers and the per-step loss ("ce"; e-prop sends learning signals down several layers
only with a per-step loss). Whatever a step costs here is dispatch: kernel launches, argument
binding and Python between kernels.

Scaling: ms per step against N (16 to 1024) at the FSDD run's settings (ALIF, kappa, loss,
batch, float32; M=40 channels, T=100 steps, 10 classes, random input spikes) for symgrad
e-prop, symgrad BPTT and JAX BPTT (jitted, its gradient checked against symgrad's first), on a
log-log plot: flat where dispatch dominates, rising where the work does. JAX runs last: its
threads keep spinning after its last call and would slow whatever ran next (see speed.run).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from symgrad import models
from symgrad.data import TASKS
from symgrad.runtime import Network, bptt, eprop
from symgrad.runtime.config import Config
from symgrad.runtime.eprop import sweeps_synapses
from symgrad.runtime.parallel import default_workers, gradient_pass
from symgrad.runtime.projection import Source

from . import peers_jax
from .common import Problem, Section, Target, best_seconds, pyplot, table, verify_peer

NAME = "overhead"
TITLE = "Per-step overhead, and where work begins"
SIZES = (16, 32, 64, 128, 256, 512, 1024)
LIMIT_US = 10.0  # the target: microseconds per step per layer on a network without work
# On a fresh cache the passes after the first may still compile (seen: 13.6 s, 2.0 s, 1.8 s, then
# 2 ms for e-prop at N=16), so even quick sizes take the best of several passes.
QUICK_REPEATS = 4
EPROP, BPTT, JAX_BPTT = "symgrad e-prop", "symgrad BPTT", "JAX BPTT"


# -- shared with benchmarks.trained ----------------------------------------------------------
def fsdd_config() -> Config:
    """The settings ``symgrad train alif --task fsdd`` trains with (Config's, and the task's own)."""
    return Config(task="fsdd", **TASKS["fsdd"].defaults)


def as_trained(net: Network, rule: str, loss: str):
    """fn(x, labels): one gradient pass as the trainer runs it (runtime.trainer.Trainer): e-prop
    on the CPU's threads where it sweeps per-synapse arrays, BPTT on one."""
    step = eprop if rule == "eprop" else bptt
    run = gradient_pass(net, default_workers(net.backend), rule == "eprop" and sweeps_synapses(net, loss))
    return lambda x, labels: run(step, net, x, labels, loss=loss, whole_pass=True)  # the default, whatever
    # the environment says


def active_rows(net: Network, x) -> float | None:
    """The fraction of (sample, neuron) rows not at rest, averaged over the steps of x and the
    inputs of each layer whose kernels can skip rows at rest (the share of per-synapse work an
    event-driven step does); None where no kernel can. The network runs as ``Network.forward``
    runs it, keeping each step's Jacobian entries, which forward drops."""
    x = net.xp.asarray(x, dtype=net.dtype)
    batch = x.shape[1]
    params = [net.neuron_params(layer) for layer in net.layers]
    fixed = [net.fixed_entries(layer, p) for layer, p in zip(net.layers, params)]
    states = [net.initial_state(layer, batch) for layer in net.layers]
    outputs = [net.xp.zeros((batch, layer.n), net.dtype) for layer in net.layers]
    fractions = []
    for inp in x:
        for l, layer in enumerate(net.layers):
            currents = net.synaptic_input(layer, inp, outputs[l])
            states[l], outputs[l], J = layer.code.neuron_step(states[l], *currents, params[l])
            fractions += [port.active_fraction(J, fixed[l]) for port in layer.code.ports.values() if port.events]
            inp = outputs[l]
    return float(np.mean(fractions)) if fractions else None


@functools.lru_cache(maxsize=None)
def verified(peer) -> dict:
    """verify_peer for a peer module, once per process (each check compiles the JAX peer)."""
    return verify_peer(peer.Peer)


# -- this benchmark --------------------------------------------------------------------------
def overhead_rows(quick: bool) -> tuple[list, Problem]:
    """Time per step per layer on a network without work, each rule as the trainer runs it."""
    config = fsdd_config()
    steps = 50 if quick else 200
    repeats, budget = (QUICK_REPEATS, 0.2) if quick else (5, 2.0)
    # Inputs at 20% and a doubled input gain keep the first layer firing (about 3% of
    # neuron-steps): a silent network would have no work to skip, either.
    problem = Problem(model=config.model, steps=steps, batch=1, n_in=8, hidden=16, n_out=4, kappa=config.kappa,
                      dtype=config.dtype, rate=0.2, gain=2.0, backend=config.backend)
    x, labels = problem.data()
    rows = []
    for layers, loss in ((1, config.loss), (1, "ce"), (2, "ce")):
        net = Network(models.builtin(problem.model), problem.n_in, [problem.hidden] * layers, problem.n_out,
                      recurrent=True, kappa=problem.kappa, seed=problem.seed, dtype=problem.dtype,
                      backend=problem.backend)
        for projection in net.layers[0].projections:
            if projection.source is Source.INPUT:
                net.params[projection.key] *= problem.gain
        row = {"layers": layers, "loss": loss}
        for rule, label in (("eprop", EPROP), ("bptt", BPTT)):
            gradient = as_trained(net, rule, loss)
            row["spikes"] = [float(count) for count in gradient(x, labels).spikes]  # the warm-up
            row[label] = best_seconds(lambda: gradient(x, labels), repeats, warmup=0, budget=budget) / (steps * layers)
            print(f"  N=16, B=1, {layers} layer(s), loss {loss:8s} {label:15s} "
                  f"{1e6 * row[label]:8.1f} us per step per layer")
        rows.append(row)
    return rows, problem


def scaling(quick: bool, skipped: dict) -> tuple[dict, dict, Problem]:
    """ms per step against N for symgrad e-prop and BPTT, then JAX BPTT; and each N's activity."""
    config = fsdd_config()
    base = Problem(model=config.model, steps=100, batch=config.batch, n_in=40, hidden=SIZES[0], n_out=10,
                   kappa=config.kappa, dtype=config.dtype, backend=config.backend)
    sizes = SIZES[:3] if quick else SIZES
    if quick:
        base = base.but(steps=20)
    repeats, budget = (QUICK_REPEATS, 0.0) if quick else (3, 2.0)
    times = {EPROP: {}, BPTT: {}}
    activity = {}
    for n in sizes:
        problem = base.but(hidden=n)
        net = problem.network()
        x, labels = problem.data()
        for rule, label in (("eprop", EPROP), ("bptt", BPTT)):
            gradient = as_trained(net, rule, config.loss)
            spikes = gradient(x, labels).spikes[0]  # the warm-up
            seconds = best_seconds(lambda: gradient(x, labels), repeats, warmup=0, budget=budget)
            times[label][n] = seconds / problem.steps
            print(f"  N={n:5d} {label:15s} {1e3 * times[label][n]:8.3f} ms/step")
        activity[n] = {"spike_rate": float(spikes) / (problem.steps * problem.batch * n),
                       "active_rows": active_rows(net, x)}
    if peers_jax.MISSING:
        skipped[peers_jax.NAME] = peers_jax.MISSING
        print(f"  skipping {peers_jax.NAME}: {peers_jax.MISSING}")
    else:
        verified(peers_jax)
        times[JAX_BPTT] = {}
        for n in sizes:
            problem = base.but(hidden=n)
            peer, (x, labels) = peers_jax.Peer(problem.network()), problem.data()
            times[JAX_BPTT][n] = best_seconds(lambda: peer.bptt(x, labels), repeats, budget=budget) / problem.steps
            print(f"  N={n:5d} {JAX_BPTT:15s} {1e3 * times[JAX_BPTT][n]:8.3f} ms/step")
    return times, activity, base


def run(quick: bool, out: Path) -> Section:
    skipped = {}
    rows, small = overhead_rows(quick)
    times, activity, base = scaling(quick, skipped)
    config = fsdd_config()
    figures = {"overhead": {"problem": vars(small), "rows": rows},
               "scaling": {"problem": vars(base), "loss": config.loss, "seconds_per_step": times,
                           "activity": activity}}
    if JAX_BPTT in times:
        figures["peer_checks"] = {peers_jax.NAME: verified(peers_jax)}
    plot = f"{NAME}.png"
    _plot(times, out / plot)
    targets = [Target(f"{label} per step per layer, N=16, M=8, B=1 (worst of the rows)",
                      1e6 * max(row[label] for row in rows), LIMIT_US, " us") for label in (EPROP, BPTT)]
    return Section(NAME, TITLE, figures, _markdown(figures), [plot], targets, skipped)


def _markdown(figures: dict) -> str:
    small, rows = figures["overhead"]["problem"], figures["overhead"]["rows"]
    overhead = table(["layers", "loss", "spikes per layer", f"{EPROP} (us/step/layer)", f"{BPTT} (us/step/layer)"],
                     [[r["layers"], r["loss"], ", ".join(f"{s:g}" for s in r["spikes"]),
                       f"{1e6 * r[EPROP]:.1f}", f"{1e6 * r[BPTT]:.1f}"] for r in rows])
    scale = figures["scaling"]
    base, times, activity = scale["problem"], scale["seconds_per_step"], scale["activity"]
    sizes = list(times[EPROP])
    names = list(times)
    per_n = table(["N"] + [f"{name} (ms/step)" for name in names]
                  + ([f"e-prop / {JAX_BPTT}"] if JAX_BPTT in times else []) + ["spiking", "active rows"],
                  [[n] + [f"{1e3 * times[name][n]:.3f}" for name in names]
                   + ([f"{times[EPROP][n] / times[JAX_BPTT][n]:.2f}"] if JAX_BPTT in times else [])
                   + [f"{100 * activity[n]['spike_rate']:.1f}%",
                      "n/a" if activity[n]["active_rows"] is None else f"{100 * activity[n]['active_rows']:.1f}%"]
                   for n in sizes])
    checks = ", ".join(f"{rule} {err:.1e}" for rule, err in figures.get("peer_checks", {}).get("JAX", {}).items())
    return f"""A network too small to have work: ALIF, N={small['hidden']} recurrent, M={small['n_in']}, B=1,
T={small['steps']}, kappa={small['kappa']:g}, {small['dtype']}, inputs at {100 * small['rate']:g}%; each rule as
`symgrad train` runs it (e-prop on the CPU's threads where it sweeps per-synapse arrays). Time per step
divided by the layers: best of several passes after a warm-up.

{overhead}

Time per step against N at the FSDD run's settings (ALIF, kappa={base['kappa']:g}, loss {scale['loss']},
B={base['batch']}, M={base['n_in']}, T={base['steps']}, {base['dtype']}; random input spikes at
{100 * base['rate']:g}%). JAX BPTT is the hand-written jitted peer, whose one loss is the per-step
cross-entropy (the mean readout's costs the same sweeps but for one log-softmax per step); its
gradients were checked against symgrad's BPTT first (largest rel. error: {checks or 'not run'}).
"Spiking": neuron-steps with a spike; "active rows": (sample, neuron) rows not at rest per step.

{per_n}

Where a curve is flat, a step costs its dispatch; where it rises with N, the work.
"""


def _plot(times: dict, path: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per_n in times.items():
        ax.plot(list(per_n), [1e3 * t for t in per_n.values()], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="recurrent ALIF neurons N", ylabel="ms per step",
           title="gradient pass per step against N (B=32, M=40)")
    sizes = list(next(iter(times.values())))
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.tick_params(axis="x", which="minor", labelbottom=False)  # 3x10^1 beside 32 says nothing
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
