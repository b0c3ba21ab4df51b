"""Random NIR graphs through symgrad.nir: every chain symgrad reads loads, round-trips exactly
and runs; where e-prop is exact (one layer, no recurrent weights) it equals BPTT.

The graphs are chains of one to three layers of any of NIR's six neuron types, with random
sizes, per-neuron or uniform fields, Affine or Linear weights, recurrent weight nodes (flat, or
in a subgraph as snnTorch writes them), and an LI readout or none. By default the examples are
fixed (``derandomize``); SYMGRAD_FUZZ_NIR_EXAMPLES=N draws N fresh ones.
"""
from __future__ import annotations

import os

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from symgrad import nir as snir
from symgrad.runtime import bptt, eprop

from helpers import relative_error

pytestmark = pytest.mark.fuzz

LONG_RUN = "SYMGRAD_FUZZ_NIR_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_NIR_EXAMPLES", 25))
DT = snir.DT
RANGES = {"tau": (2e-4, 3e-3), "tau_mem": (2e-4, 3e-3), "tau_syn": (2e-4, 1e-3), "v_leak": (-0.1, 0.1),
          "v_threshold": (0.5, 1.5), "v_reset": (-0.2, 0.2)}


@st.composite
def graphs(draw):
    """(graph, description): a random chain symgrad can read."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in = draw(st.integers(2, 5))
    count = draw(st.integers(1, 3))
    readout = draw(st.booleans())
    nodes, edges, previous, size, layers = {"input": nir.Input(input_type=np.array([n_in]))}, [], "input", n_in, []
    for index in range(count):
        kind = draw(st.sampled_from(list(snir.models.KINDS)))
        n = draw(st.integers(2, 5))
        per_neuron = {f for f in snir.models.KINDS[kind].fields if draw(st.booleans())}
        values = {}
        for field in snir.models.KINDS[kind].fields:
            if field == "r":
                scale = 1.0 / DT if kind in ("IF", "I") else None
                low, high = (0.3 * (scale or 0), 1.0 * (scale or 0)) if scale else (0.5, 1.5)
            elif field == "w_in":
                low, high = 0.5, 1.5
            else:
                low, high = RANGES[field]
            values[field] = rng.uniform(low, high, n) if field in per_neuron else np.full(n, rng.uniform(low, high))
        if kind in ("LIF", "CubaLIF", "LI", "CubaLI"):  # r so that an input of 1 moves v by about 1
            tau = values["tau"] if "tau" in values else values["tau_mem"]
            values["r"] = values["r"] * tau / DT
        if "w_in" in values:
            values["w_in"] = values["w_in"] * values["tau_syn"] / DT
        dense = nir.Affine(weight=rng.normal(0, 2 / np.sqrt(size), (n, size)), bias=rng.uniform(0, 0.2, n)) \
            if draw(st.booleans()) else nir.Linear(weight=rng.normal(0, 2 / np.sqrt(size), (n, size)))
        name = f"{kind.lower()}{index}"
        nodes[f"w{index}"], nodes[name] = dense, getattr(nir, kind)(**values)
        edges += [(previous, f"w{index}"), (f"w{index}", name)]
        recurrent = draw(st.booleans())
        if recurrent:
            nodes[f"rec{index}"] = nir.Linear(weight=rng.normal(0, 0.5 / np.sqrt(n), (n, n)))
            edges += [(name, f"rec{index}"), (f"rec{index}", name)]
        layers.append((kind, n, recurrent, isinstance(dense, nir.Affine)))
        previous, size = name, n
    if readout:
        k = draw(st.integers(2, 4))
        nodes["w_out"] = nir.Affine(weight=rng.normal(0, 1 / np.sqrt(size), (k, size)), bias=rng.normal(0, 0.1, k))
        nodes["li"] = nir.LI(tau=np.full(k, rng.uniform(2e-4, 2e-3)), r=rng.uniform(5, 15, k),
                             v_leak=rng.uniform(-0.1, 0.1, k))
        edges += [(previous, "w_out"), ("w_out", "li")]
        previous, size = "li", k
    elif layers[-1][0] == "LI" and count >= 2 and not layers[-1][2] and np.ptp(nodes[previous].tau) == 0:
        readout, layers = True, layers[:-1]  # a last LI with one tau is the readout too
    nodes["output"] = nir.Output(output_type=np.array([size]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dict(layers=layers, readout=readout, n_in=n_in)


def fuzz_settings():
    return settings(max_examples=EXAMPLES, derandomize=not LONG_RUN, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def spikes(steps, batch, n_in, seed=0):
    return (np.random.default_rng(seed).random((steps, batch, n_in)) < 0.4).astype(float)


@fuzz_settings()
@given(graphs())
def test_random_graphs_load_round_trip_and_run(tmp_path_factory, drawn):
    graph, spec = drawn
    net = snir.load(graph, dtype="float64")
    assert [(layer.n, layer.recurrent, layer.bias) for layer in net.layers] == [
        (n, recurrent, bias) for _, n, recurrent, bias in spec["layers"]]
    assert net.readout == spec["readout"]
    back = snir.load(snir.save(net, tmp_path_factory.mktemp("nir") / "g.nir"), dtype="float64")
    for key, value in net.params.items():
        assert np.array_equal(back.params[key], value), key
    x = spikes(15, 2, spec["n_in"])
    (ys, outputs), (ys2, outputs2) = net.forward(x), back.forward(x)
    assert all(np.array_equal(a, b) for a, b in zip(outputs, outputs2))
    assert (ys is None and ys2 is None) or np.array_equal(ys, ys2)
    assert all(np.all(np.isfinite(o)) for o in outputs)


@fuzz_settings()
@given(graphs(), st.sampled_from(["ce", "ce_mean", "ce_last"]))
def test_eprop_equals_bptt_on_random_single_layer_graphs(drawn, loss):
    graph, spec = drawn
    assume(len(spec["layers"]) == 1 and not spec["layers"][0][2])  # where e-prop is exact
    net = snir.load(graph, dtype="float64")
    x = spikes(15, 2, spec["n_in"], seed=1)
    labels = np.arange(2) % net.n_out
    fast, reference = eprop(net, x, labels, loss=loss), bptt(net, x, labels, loss=loss)
    assume(fast.spikes[0] != 0)  # a silent layer proves nothing
    assert fast.loss == pytest.approx(reference.loss, rel=1e-10)
    for key in reference.grads:
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-8, key
