"""Time per step of one gradient pass (forward and gradient) against JAX and PyTorch peers.

Every implementation gets the same network, input and labels, in the same process, warmed up
once (which also compiles the jitted peers), and is timed as the best of several passes: the
least disturbed one. "symgrad e-prop" runs as the trainer runs it, with the batch sharded over
the CPU's threads (runtime.parallel); the peers use every core too. Each peer's gradients are checked against symgrad first (common.verify_peer).

The e-prop step is bound by the per-synapse arrays it sweeps, so beside the time the module
works out the least traffic a step needs (each (batch, post, pre) array that carries state
read once and written once) and the bandwidth that traffic implies, next to the machine's
copy bandwidth: the gap says how far the step is from one fused sweep per array.
"""
from __future__ import annotations

from pathlib import Path

from symgrad.runtime import bptt, eprop
from symgrad.runtime.eprop import sweeps_synapses
from symgrad.runtime.parallel import default_workers, gradient_pass

from . import peers_jax, peers_torch
from .common import Problem, Section, Target, best_seconds, copy_bandwidth, pyplot, table, verify_peer

NAME = "speed"
TITLE = "Time per step of a gradient pass"
PEERS = (peers_torch, peers_jax)  # in the order they are timed
SYMGRAD_EPROP, JAX_EPROP, JAX_BPTT = "symgrad e-prop", "JAX e-prop (per-synapse)", "JAX BPTT"
NUMPY_EPROP = "symgrad e-prop, NumPy backend"
MAIN, LIF, BIG = "ALIF, kappa=0.9", "LIF, kappa=0", "ALIF, kappa=0.9, N=512"


def settings(quick: bool) -> dict:
    """The settings timed; quick keeps the two the targets are stated on, at tiny sizes."""
    base = Problem(model="alif", steps=100, batch=32, n_in=140, hidden=256, n_out=20, kappa=0.9)
    if quick:
        base = base.but(steps=20, batch=4, n_in=12, hidden=16, n_out=5)
        return {MAIN: base, LIF: base.but(model="lif", kappa=0.0)}
    return {
        MAIN: base,
        "ALIF, kappa=0": base.but(kappa=0.0),
        LIF: base.but(model="lif", kappa=0.0),
        BIG: base.but(hidden=512),
    }


def symgrad_runners(problem: Problem) -> dict:
    """e-prop as the trainer runs it (the default backend, on the CPU's threads), on one thread,
    and on the NumPy backend (the readable reference, its batch sharded over the threads)."""
    net, reference = problem.network(), problem.but(backend="numpy").network()
    shard = sweeps_synapses(net, "ce")
    on_all, on_one = gradient_pass(net, default_workers(net.backend), shard), gradient_pass(net, 1, False)
    on_numpy = gradient_pass(reference, default_workers("numpy"), shard)
    return {SYMGRAD_EPROP: lambda x, y: on_all(eprop, net, x, y),
            f"{SYMGRAD_EPROP}, 1 thread": lambda x, y: on_one(eprop, net, x, y),
            "symgrad BPTT": lambda x, y: bptt(net, x, y),
            NUMPY_EPROP: lambda x, y: on_numpy(eprop, reference, x, y)}


def peer_runners(module):
    """problem -> {label: fn(x, labels)} for one peer module."""
    def runners(problem) -> dict:
        peer = module.Peer(problem.network())
        found = {f"{module.NAME} BPTT": peer.bptt}
        if hasattr(peer, "eprop"):
            found[f"{module.NAME} e-prop (per-synapse)"] = peer.eprop
        return found
    return runners


def traffic(problem: Problem, seconds_per_step: float, bandwidth: float, dense: bool) -> dict:
    """Least bytes an e-prop step moves through per-synapse arrays, and what the time implies."""
    arrays = len(problem.plan(dense).per_synapse) + (problem.kappa != 0)
    moved = 2 * arrays * problem.synapse_bytes()
    return {"per_synapse_arrays": arrays, "bytes_per_step": moved,
            "implied_bandwidth": moved / seconds_per_step,
            "fraction_of_copy_bandwidth": moved / seconds_per_step / bandwidth,
            "array_transfers_per_step": seconds_per_step * bandwidth / problem.synapse_bytes()}


def run(quick: bool, out: Path) -> Section:
    """Time symgrad, then each peer in turn over all settings.

    One library at a time: a library's worker threads keep spinning for a while after its
    last call, and on a small machine they would slow whichever library runs next (JAX's
    pool slowed PyTorch's eager loop tenfold when interleaved). JAX goes last for that reason.
    """
    repeats, budget = (1, 0.0) if quick else (3, 3.0)
    problems = settings(quick)
    data = {label: problem.data() for label, problem in problems.items()}
    families, skipped, checks = [("symgrad", None, symgrad_runners)], {}, {}
    for module in PEERS:
        if module.MISSING:
            skipped[module.NAME] = module.MISSING
            print(f"  skipping {module.NAME}: {module.MISSING}")
        else:
            families.append((module.NAME, module.Peer, peer_runners(module)))
    times = {label: {} for label in problems}
    for family, peer, runners in families:
        if peer is not None:
            checks[family] = verify_peer(peer)
        for label, problem in problems.items():
            x, labels = data[label]
            for name, fn in runners(problem).items():
                times[label][name] = best_seconds(lambda: fn(x, labels), repeats, budget=budget) / problem.steps
                print(f"  {label:24s} {name:26s} {1e3 * times[label][name]:9.3f} ms/step")
    bandwidth = copy_bandwidth(32 if quick else 512)
    figures = {"copy_bandwidth": bandwidth, "peer_checks": checks, "settings": {}}
    for label, problem in problems.items():
        entry = {"problem": vars(problem), "seconds_per_step": times[label],
                 "traffic": {SYMGRAD_EPROP: traffic(problem, times[label][SYMGRAD_EPROP], bandwidth, False)}}
        if JAX_EPROP in times[label]:
            entry["traffic"][JAX_EPROP] = traffic(problem, times[label][JAX_EPROP], bandwidth, True)
        figures["settings"][label] = entry
    plot = "speed.png"
    _plot(figures["settings"], out / plot)
    return Section(NAME, TITLE, figures, _markdown(figures), [plot], _targets(figures["settings"]), skipped)


def _targets(results: dict) -> list:
    def ratio(label, other):
        times = results[label]["seconds_per_step"]
        return times[SYMGRAD_EPROP] / times[other] if other in times else None

    targets = []
    for label in (MAIN, BIG):
        if label in results and (value := ratio(label, JAX_EPROP)) is not None:
            targets.append(Target(f"ALIF e-prop step / JAX per-synapse e-prop ({label})", value, 0.4, "x"))
        if label in results and (value := ratio(label, JAX_BPTT)) is not None:
            targets.append(Target(f"ALIF e-prop step / JAX BPTT ({label})", value, 5.0, "x"))
    if (value := ratio(LIF, JAX_BPTT)) is not None:
        targets.append(Target(f"LIF e-prop step / JAX BPTT ({LIF})", value, 1.0, "x"))
    share = results[MAIN]["traffic"][SYMGRAD_EPROP]["fraction_of_copy_bandwidth"]
    targets.append(Target(f"e-prop step's least traffic / copy bandwidth ({MAIN})", share, 0.5, "x", higher=True))
    return targets


def _markdown(figures: dict) -> str:
    results = figures["settings"]
    names = list(next(iter(results.values()))["seconds_per_step"])
    first = next(iter(results.values()))["problem"]
    size = (f"T={first['steps']}, B={first['batch']}, M={first['n_in']}, N={first['hidden']} recurrent, "
            f"K={first['n_out']}, {first['dtype']}")
    timing = table(["setting"] + [f"{n} (ms/step)" for n in names],
                   [[label] + [f"{1e3 * r['seconds_per_step'][n]:.3f}" for n in names]
                    for label, r in results.items()])
    ratios = table(["setting"] + [f"e-prop / {n}" for n in names[1:]],
                   [[label] + [f"{r['seconds_per_step'][SYMGRAD_EPROP] / r['seconds_per_step'][n]:.2f}"
                               for n in names[1:]] for label, r in results.items()])
    rows = []
    for label, r in results.items():
        for name, t in r["traffic"].items():
            rows.append([label, name, t["per_synapse_arrays"], f"{t['bytes_per_step'] / 1e6:.1f}",
                         f"{t['implied_bandwidth'] / 1e9:.2f}", f"{100 * t['fraction_of_copy_bandwidth']:.0f}%",
                         f"{t['array_transfers_per_step']:.1f}"])
    moved = table(["setting", "e-prop", "per-synapse arrays", "least MB/step", "implied GB/s",
                   "of copy bandwidth", "step time in array transfers"], rows)
    bounds = "; ".join(f"{label}: {r['traffic'][SYMGRAD_EPROP]['per_synapse_arrays']}/"
                       f"{r['traffic'][JAX_EPROP]['per_synapse_arrays']}"
                       for label, r in results.items() if JAX_EPROP in r["traffic"])
    checks = ", ".join(f"{peer} {rule} {err:.1e}" for peer, errs in figures["peer_checks"].items()
                       for rule, err in errs.items())
    return f"""Base setting: {size}; other rows change what their label names.
Best of at least 3 passes (more for cheap ones, up to 3 s each), after a warm-up.
Peer gradients checked against symgrad in float64 before timing (largest rel. error: {checks or 'no peers'}).

{timing}

Ratios (symgrad e-prop time over each; below 1 means symgrad e-prop is faster):

{ratios}

Traffic of the e-prop step: the least it must move (each per-synapse array that carries state
read and written once per step) over its time, against the machine's numpy copy bandwidth
({figures['copy_bandwidth'] / 1e9:.1f} GB/s, counting bytes read and written). "Array transfers" is
the step time over the time to read or write one (batch, post, pre) array once at that speed.

{moved}

If both steps swept each of their state arrays exactly once, the e-prop time ratio would be the
ratio of their array counts (symgrad/per-synapse peer): {bounds or 'no peer'}.
"""


def _plot(results: dict, path: Path):
    plt = pyplot()
    labels = list(results)
    names = list(next(iter(results.values()))["seconds_per_step"])
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, name in enumerate(names):
        values = [1e3 * results[label]["seconds_per_step"].get(name, float("nan")) for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
    ax.set(yscale="log", ylabel="ms per step", title="gradient pass, time per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
