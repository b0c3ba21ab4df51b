"""Writing a symgrad Network as a NIR graph.

Each layer's model must be the discretisation of a NIR neuron node (``models.kind_of`` checks
the forward map symbolically); its parameters are written per neuron, its weights as Affine
nodes (Linear where there is no bias). The leaky readout becomes an Affine node and an LI
node whose tau, r and v_leak give back the network's kappa, gain and offset exactly under
load's mapping. The graph is flat: a recurrent layer is a cycle neuron -> weights -> neuron.
"""
from __future__ import annotations

import io
from pathlib import Path

import nir
import numpy as np

from .. import store
from ..runtime.network import Network
from ..runtime.projection import Source
from .graph import NirError
from .models import KINDS, kind_of


def to_graph(net: Network) -> nir.NIRGraph:
    """The NIR graph of ``net`` (its current weights), or a NirError naming what NIR lacks. NIR
    has no sparse node: a sparse weight is written as its dense matrix, zero where no synapse is
    (``load(..., sparse_from_zeros=True)`` reads those zeros back as absent synapses)."""
    host = {name: _host(net.dense(name)) for name in net.params}
    nodes = {"input": nir.Input(input_type=np.array([net.n_in]))}
    edges, previous, steps = [], "input", set()
    for layer in net.layers:
        kind = kind_of(layer.model)
        if kind is None:
            raise NirError(f"layer {layer.index} (model {layer.model.name!r}) is none of NIR's neuron "
                           f"primitives ({', '.join(KINDS)}), so NIR cannot carry it; {_hint(layer.model)}")
        values = _values(net, layer)
        steps.add(values.pop("dt"))
        neuron, weights = f"{kind.lower()}{layer.index}", f"fc{layer.index}"
        bias = layer.projection(Source.BIAS)
        nodes[weights] = _dense(host[layer.projection(Source.INPUT).key], None if bias is None else host[bias.key])
        nodes[neuron] = getattr(nir, kind)(**values)
        edges += [(previous, weights), (weights, neuron)]
        if layer.recurrent:
            nodes[f"rec{layer.index}"] = nir.Linear(weight=host[layer.projection(Source.RECURRENT).key])
            edges += [(neuron, f"rec{layer.index}"), (f"rec{layer.index}", neuron)]
        previous = neuron
    if len(steps) != 1:
        raise NirError(f"the layers use different time steps dt ({', '.join(map(str, sorted(steps)))}); "
                       "a NIR graph is read with one")
    dt = steps.pop()
    if net.readout:
        bias = host["b_out"] if np.any(host["b_out"]) else None
        nodes["fc_out"] = _dense(host["W_out"], bias)
        nodes["li_out"] = nir.LI(**_leaky_integrator(net, dt))
        edges += [(previous, "fc_out"), ("fc_out", "li_out")]
        previous = "li_out"
    nodes["output"] = nir.Output(output_type=np.array([net.n_out]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": "symgrad"})


def save(net: Network, path) -> Path:
    """Write ``net`` as a NIR file (atomically: a failed write leaves any old file whole)."""
    buffer = io.BytesIO()
    nir.write(buffer, to_graph(net))
    return store.write_atomic(Path(path), buffer.getvalue())


def _values(net: Network, layer) -> dict:
    """The layer's parameters, one value per neuron, and dt."""
    given = net.layer_values[layer.index]
    values = {}
    for p, default in layer.model.params.items():
        if p in layer.model.learnable:
            value = _host(net.params[layer.key(p.name)])
        else:
            value = given.get(p.name, default)
        values[p.name] = float(value) if p.name == "dt" else np.array(np.broadcast_to(value, (layer.n,)), float)
    return values


def _leaky_integrator(net: Network, dt: float) -> dict:
    """tau, r and v_leak of the LI node whose load gives back the readout's kappa, gain and
    offset bit for bit (load: kappa = 1 - dt/tau, gain = dt r/tau, offset = dt v_leak/tau).
    Several taus near dt/(1 - kappa) give kappa; the first for which every r and v_leak exist
    is taken."""
    k = net.n_out
    if not 0 <= net.kappa < 1:
        raise NirError(f"the readout's kappa {net.kappa} has no leaky integrator (it needs 0 <= kappa < 1)")
    gain = np.ones(k) if net.gain is None else _host(net.gain)
    offset = np.zeros(k) if net.offset is None else _host(net.offset)
    for tau in _solutions(lambda t: 1 - dt / t, net.kappa, dt / (1 - net.kappa)):
        r = [_first(_solutions(lambda x: dt * x / tau, g, g * tau / dt)) for g in gain]
        v_leak = [_first(_solutions(lambda x: dt * x / tau, o, o * tau / dt)) for o in offset]
        if None not in r and None not in v_leak:
            return {"tau": np.full(k, tau), "r": np.array(r), "v_leak": np.array(v_leak)}
    raise NirError(f"no LI node reproduces the readout (kappa {net.kappa}) exactly at dt = {dt:g}")


def _solutions(f, target: float, guess: float, ulps: int = 64) -> list:
    """Every x within ``ulps`` floating-point steps of ``guess`` with f(x) == target exactly,
    nearest first."""
    target, found = float(target), []
    up = down = float(guess)
    for step in range(ulps):
        for x in ((up,) if step == 0 else (up, down)):
            if f(x) == target:
                found.append(x)
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
    return found


def _first(values: list):
    return values[0] if values else None


def _dense(weight, bias):
    return nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)


def _host(array) -> np.ndarray:
    return np.array(array.get() if hasattr(array, "get") else array)


def _hint(model) -> str:
    if model.name in ("lif", "cuba_lif"):
        return ("symgrad's built-in lif and cuba_lif subtract v_th after a spike, where NIR's neurons reset "
                "to v_reset; train symgrad.nir.neuron('LIF') or ('CubaLIF'), or a network loaded from NIR")
    return "build the network from symgrad.nir.neuron(...) models, or load it from a NIR file"
