"""A network imported from NIR, trained here and in snnTorch: time per batch, in one run.

The network is the NIR paper's recurrent shape at FSDD's sizes: 40 inputs -> Affine ->
CubaLIF with a recurrent weight node -> Affine -> CubaLIF (10 spiking outputs), in snnTorch's
NIR convention (dt = 1e-4, r = tau_mem/dt, w_in = tau_syn/dt, reset to zero). The loss is the
cross-entropy of the output spikes at every step. Three versions: time constants per neuron
(every trace per synapse), one time constant per layer (the synaptic current's trace a
presynaptic filter; the membrane's stays per synapse, since its gradient sees the reset), and
one per layer with the reset detached (``detach_reset``: every trace presynaptic).

symgrad runs the imported graph with e-prop and with BPTT (numba backend). snnTorch runs the same
equations as its own modules (Linear, RSynaptic, Linear, Synaptic; zero reset, default reset
delay, since RSynaptic's reset_delay=False path fails in 1.0.0: the cost per step is the same)
with BPTT by autograd, float32, eager, as its tutorials train.
"""
from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from .common import Section, best_seconds, pyplot, table

NAME = "nir"
TITLE = "A NIR graph trained online: symgrad e-prop against snnTorch BPTT"
DT = 1e-4
SIZES = dict(n_in=40, hidden=128, n_out=10, steps=100, batch=32)
QUICK = dict(n_in=8, hidden=16, n_out=3, steps=10, batch=4)


def graph(n_in, hidden, n_out, per_neuron: bool, seed=0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)

    def cuba(n):
        draw = (lambda lo, hi: rng.uniform(lo, hi, n)) if per_neuron else (lambda lo, hi: np.full(n, (lo + hi) / 2))
        tau_syn, tau_mem = draw(3e-4, 8e-4), draw(8e-4, 3e-3)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=np.zeros(n),
                           v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=tau_syn / DT)

    def weights(rows, cols, scale):
        return rng.normal(0, scale / np.sqrt(cols), (rows, cols))

    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "fc1": nir.Affine(weight=weights(hidden, n_in, 0.6), bias=np.zeros(hidden)), "lif1": cuba(hidden),
             "rec1": nir.Linear(weight=weights(hidden, hidden, 0.2)),
             "fc2": nir.Affine(weight=weights(n_out, hidden, 1.0), bias=np.zeros(n_out)), "lif2": cuba(n_out),
             "output": nir.Output(output_type=np.array([n_out]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec1"), ("rec1", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


VERSIONS = ((True, False), (False, False), (False, True))  # (per-neuron time constants, reset detached)


def _symgrad(g, x, labels, rule, detach_reset):
    from symgrad import nir as symgrad_nir
    from symgrad.runtime import bptt, eprop
    from symgrad.runtime import backends
    from symgrad.runtime.parallel import FusedThreads

    net = symgrad_nir.load(g, dtype="float32", backend="numba", detach_reset=detach_reset)
    run, fn = FusedThreads(backends.get("numba"), 1, blas=1), {"eprop": eprop, "bptt": bptt}[rule]
    result = run(fn, net, x, labels, loss="ce")
    assert result.spikes[0] > 0, "the imported network is silent: its timing would say nothing"
    return lambda: run(fn, net, x, labels, loss="ce")


def _snntorch(g, x, labels):
    """snnTorch's modules with the graph's values, and one BPTT step of the same loss."""
    import snntorch as snn
    import torch

    torch.set_num_threads(1)
    nodes = g.nodes
    lif1, lif2 = nodes["lif1"], nodes["lif2"]
    fc1, fc2 = torch.nn.Linear(*nodes["fc1"].weight.shape[::-1]), torch.nn.Linear(*nodes["fc2"].weight.shape[::-1])
    with torch.no_grad():
        for module, node in ((fc1, nodes["fc1"]), (fc2, nodes["fc2"])):
            module.weight.copy_(torch.tensor(node.weight)), module.bias.copy_(torch.tensor(node.bias))
    hidden = lif1.tau_mem.shape[0]
    decay = {name: torch.tensor(1 - DT / getattr(node, field), dtype=torch.float32)
             for name, node, field in (("a1", lif1, "tau_syn"), ("b1", lif1, "tau_mem"),
                                       ("a2", lif2, "tau_syn"), ("b2", lif2, "tau_mem"))}
    rec = snn.RSynaptic(alpha=decay["a1"], beta=decay["b1"], all_to_all=True, linear_features=hidden,
                        reset_mechanism="zero")
    with torch.no_grad():
        rec.recurrent.weight.copy_(torch.tensor(nodes["rec1"].weight)), rec.recurrent.bias.zero_()
    out = snn.Synaptic(alpha=decay["a2"], beta=decay["b2"], reset_mechanism="zero")
    params = list(fc1.parameters()) + list(fc2.parameters()) + [rec.recurrent.weight]
    xs, target = torch.tensor(x), torch.tensor(labels)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        spk1, syn1, mem1 = rec.init_rsynaptic()
        syn2, mem2 = out.init_synaptic()
        loss = 0.0
        for xt in xs:
            spk1, syn1, mem1 = rec(fc1(xt), spk1, syn1, mem1)
            spk2, syn2, mem2 = out(fc2(spk1), syn2, mem2)
            loss = loss + loss_fn(spk2, target)
        for p in params:
            p.grad = None
        loss.backward()

    return step


def run(quick: bool, out: Path) -> Section:
    sizes = QUICK if quick else SIZES
    rng = np.random.default_rng(1)
    x = (rng.random((sizes["steps"], sizes["batch"], sizes["n_in"])) < 0.2).astype(np.float32)
    labels = rng.integers(0, sizes["n_out"], sizes["batch"])
    repeats = 2 if quick else 3
    rows, skipped = [], {}
    for per_neuron, detach_reset in VERSIONS:
        g = graph(sizes["n_in"], sizes["hidden"], sizes["n_out"], per_neuron)
        row = {"per_neuron": per_neuron, "detach_reset": detach_reset}
        for rule in ("eprop", "bptt"):
            row[f"symgrad_{rule}"] = best_seconds(_symgrad(g, x, labels, rule, detach_reset), repeats)
        try:
            row["snntorch_bptt"] = best_seconds(_snntorch(g, x, labels), repeats)
        except ImportError as err:
            skipped["snnTorch"] = f"not installed ({err}); pip install -e '.[interop]'"
        rows.append(row)
        print(f"  {_label(row)}: " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in row.items()
                                             if k.startswith(("symgrad", "snntorch"))))
    plot = "nir.png"
    _plot(rows, out / plot)
    return Section(NAME, TITLE, {"sizes": sizes, "rows": rows}, _markdown(sizes, rows), [plot], skipped=skipped)


def _markdown(sizes: dict, rows: list) -> str:
    head = ["version", "symgrad e-prop (ms)", "symgrad BPTT (ms)", "snnTorch BPTT (ms)",
            "snnTorch / symgrad e-prop"]
    lines = []
    for row in rows:
        theirs = row.get("snntorch_bptt")
        lines.append([_label(row), f"{1e3 * row['symgrad_eprop']:.1f}",
                      f"{1e3 * row['symgrad_bptt']:.1f}", f"{1e3 * theirs:.1f}" if theirs else "-",
                      f"{theirs / row['symgrad_eprop']:.2f}x" if theirs else "-"])
    return (f"One batch's gradient: B={sizes['batch']}, T={sizes['steps']}, {sizes['n_in']} inputs, "
            f"{sizes['hidden']} recurrent CubaLIF, {sizes['n_out']} spiking outputs, float32, one thread "
            "each; best of several.\n\n" + table(head, lines) + "\n")


def _label(row: dict) -> str:
    return ("taus per neuron" if row["per_neuron"] else "taus per layer") + (
        ", reset detached" if row["detach_reset"] else "")


def _plot(rows: list, path: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = ["symgrad_eprop", "symgrad_bptt", "snntorch_bptt"]
    width = 0.25
    for i, key in enumerate(labels):
        values = [1e3 * row.get(key, np.nan) for row in rows]
        ax.bar(np.arange(len(rows)) + (i - 1) * width, values, width, label=key.replace("_", " "))
    ax.set_xticks(range(len(rows)), [_label(row).replace(", ", ",\n") for row in rows])
    ax.set(ylabel="ms per batch gradient", title="NIR CubaLIF network: one batch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
