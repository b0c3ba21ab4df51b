"""Networks in and out of NIR, the Neuromorphic Intermediate Representation.

    net = symgrad.nir.load("graph.nir")          # a symgrad Network, ready to run and train
    symgrad.nir.save(net, "trained.nir")         # back to NIR, for another framework or a chip

Each NIR neuron node becomes a model built from its own equations (``models``: forward Euler
with step dt, reset to v_reset); Affine and Linear nodes become the input, recurrent and
readout weights (``graph`` reads the shape). An Affine node's bias is a constant input current,
trained like the weights. The last node before the Output:

- a leaky integrator (LI) with one time constant is the leaky readout
  y_t = kappa y_{t-1} + gain (W_out z_t + b_out) + offset, with kappa = 1 - dt/tau,
  gain = dt r / tau and offset = dt v_leak / tau;
- any other neuron node is the network's last layer, whose output (spikes, or the membrane of
  a non-spiking node) is the network's: a loss applies to it directly, and a class is the
  neuron with the most spikes (or the largest mean membrane).

dt is not part of NIR. It is taken from the ``dt`` argument, else from the graph's metadata
(which ``save`` writes), else 1e-4, the step of snnTorch's NIR files.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import h5py
import nir as _nir
import numpy as np

from ..runtime import memory
from ..runtime.network import Network
from ..runtime.projection import Source
from . import models
from .graph import NirError, Stage, chain
from .models import DT, KINDS, kind_of, neuron

__all__ = ["load", "save", "to_graph", "read", "NirError", "neuron", "kind_of", "DT", "models"]


def read(source) -> _nir.NIRGraph:
    """A NIR graph from a path, or the graph itself."""
    if isinstance(source, _nir.NIRGraph):
        return source
    path = Path(source)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    _check_declared_size(path)
    try:
        return _nir.read(path)
    except Exception as err:  # h5py and nir raise many kinds; the user needs the file and the reason
        strict = err
    try:  # NIR's type check refuses some files other frameworks wrote (rockpool's LIF, say)
        graph = _nir.read(path, type_check=False)
    except Exception:  # noqa: BLE001 - unreadable either way: the strict reason is the one to tell
        raise NirError(f"{path}: not a readable NIR file ({_reason(strict)})") from None
    warnings.warn(f"{path}: NIR's type check fails ({_reason(strict)}); read without it")
    return graph


def _reason(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())  # one line, whatever the message holds


def _check_declared_size(path: Path) -> None:
    """Refuse a file whose arrays cannot fit in memory, from the shapes its datasets declare,
    before any is read: a small compressed file may declare gigabytes."""
    sizes = {}

    def measure(name, item):
        if isinstance(item, h5py.Dataset):
            sizes[name] = (item.size * item.dtype.itemsize, item.shape)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(measure)
    except OSError:  # not HDF5: nir.read says so
        return
    if sizes:
        largest = max(sizes, key=lambda name: sizes[name][0])
        memory.require(sum(size for size, _ in sizes.values()),
                       f"{path}: reading its arrays (the largest, {largest}, of shape {sizes[largest][1]})")


def load(source, dt: float | None = None, add_readout: float | None = None, learn=(), detach_reset=False,
         sparse_from_zeros: bool = False, **options) -> Network:
    """The Network of a NIR graph (a path or a ``nir.NIRGraph``); ``options`` go to Network
    (backend, dtype, seed, feedback, ...).

    learn: neuron fields to train per neuron besides the weights, such as ("tau_mem",), in
    every layer whose node has them (``save`` writes the trained values).
    detach_reset: differentiate none of the reset (see ``models.neuron``): the same network,
    a cheaper gradient.

    sparse_from_zeros: a weight's zeros are absent synapses (NIR has no sparse node, so a sparse
    network is exported with zeros where it has none): every input and recurrent weight becomes
    sparse, with the synapses where it is not zero.

    add_readout=kappa: a graph whose output is its last layer gets a leaky readout with this
    leak, trained with the network, one output per neuron of that layer (export writes it as
    an Affine and an LI node). A graph with a readout of its own refuses it."""
    graph = read(source)
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = _time_step(dt, "dt") if dt is not None else _time_step(metadata.get("dt", DT), "the graph's metadata.dt")
    n_in, stages = chain(graph)
    fields = {name for stage in stages for name in KINDS[stage.kind].fields}
    unknown = sorted(set(learn) - fields)
    if unknown:
        raise NirError(f"learn: no neuron node of the graph has a field {unknown[0]!r} "
                       f"(they have {', '.join(sorted(fields))})")
    readout = stages[-1] if _is_readout(stages) else None
    layers = stages[:-1] if readout else stages
    sizes, sources, values, weights = [], [], [], []
    for stage in layers:
        n = stage.size
        _check_weights(stage.weights, stage.forward, (n, sizes[-1] if sizes else n_in))
        fields = _fields(stage, n, dt)
        per_neuron = [name for name, value in fields.items() if np.ndim(value)]
        # The model's defaults are the graph's values (the mean of a per-neuron one), so that
        # inspect shows them; the network reads every value from neuron_params.
        defaults = {name: float(np.mean(value)) for name, value in fields.items()}
        trained = [name for name in learn if name in fields]
        sources.append(neuron(stage.kind, per_neuron, trained, detach_reset).with_params(dt=dt, **defaults))
        values.append(dict(fields, dt=dt))
        sizes.append(n)
        layer = {Source.INPUT: stage.forward.weight}
        bias = _bias(stage.forward, n)
        if stage.recurrent is not None:
            _check_weights(stage.recurrent_name, stage.recurrent, (n, n))
            layer[Source.RECURRENT] = stage.recurrent.weight
            bias = _sum_bias(bias, _bias(stage.recurrent, n))
        if bias is not None:
            layer[Source.BIAS] = bias
        weights.append(layer)
    net_options = dict(recurrent=[Source.RECURRENT in layer for layer in weights],
                       bias=[Source.BIAS in layer for layer in weights], neuron_params=values)
    top = {}
    if readout:
        n_out = readout.size
        _check_weights(readout.weights, readout.forward, (n_out, sizes[-1]))
        tau, r, v_leak = (np.broadcast_to(value, (n_out,)) for value in _fields(readout, n_out, dt).values())
        net_options.update(kappa=1 - dt / float(tau[0]), readout_gain=_unless(dt * r / tau, 1.0),
                           readout_offset=_unless(dt * v_leak / tau, 0.0))
        top["W_out"] = readout.forward.weight
        bias = _bias(readout.forward, n_out)
        top["b_out"] = np.zeros(n_out) if bias is None else bias
    elif add_readout is not None:
        n_out = sizes[-1]
        net_options.update(kappa=float(add_readout))
    else:
        n_out = sizes[-1]
        net_options.update(readout=False)
    if readout and add_readout is not None:
        raise NirError(f"node {readout.name!r} (LI) is the graph's readout already; train it without "
                       "adding one")
    net = Network(sources, n_in, sizes, n_out, **{**net_options, **options})
    if sparse_from_zeros:  # the network names its weights: built again with their synapses
        masks = {layer.projection(source).key: np.asarray(value) != 0 for layer, given in zip(net.layers, weights)
                 for source, value in given.items() if source is not Source.BIAS}
        net = Network(sources, n_in, sizes, n_out, **{**net_options, **options, "connectivity": masks})
    for layer, given in zip(net.layers, weights):
        net.set_params({layer.projection(source).key: value for source, value in given.items()})
    net.set_params(top)
    return net


def _time_step(value, what: str) -> float:
    """A time step: one positive, finite number (a file may hold anything)."""
    number = np.asarray(value) if not isinstance(value, (bytes, str)) else None
    if number is None or number.ndim or number.dtype.kind not in "iuf" or not (
            math.isfinite(float(number)) and float(number) > 0):
        shown = value.decode(errors="replace") if isinstance(value, bytes) else value
        shown = repr(shown) if isinstance(shown, str) else " ".join(str(shown).split())
        raise NirError(f"{what} is {shown if len(shown) < 60 else shown[:50] + '...'}: a time step must be "
                       f"a positive number" + (" (--dt overrides it)" if "metadata" in what else ""))
    return float(number)


def _is_readout(stages) -> bool:
    """A last LI node with one time constant and no recurrent weights is the leaky readout
    (after some other layer)."""
    last = stages[-1]
    if last.kind != "LI" or len(stages) < 2 or last.recurrent is not None:
        return False
    tau = np.asarray(last.node.tau, float)
    return bool(np.all(tau == tau.flat[0]))


def _fields(stage: Stage, n: int, dt: float) -> dict:
    """The node's parameters: a number where uniform, else one value per neuron."""
    fields = {}
    for name in KINDS[stage.kind].fields:
        value = np.asarray(getattr(stage.node, name))
        try:
            value = np.broadcast_to(value, (n,))
        except ValueError:
            raise NirError(f"node {stage.name!r} ({stage.kind}): {name} has shape {value.shape}, "
                           f"not one value per neuron ({n})") from None
        if not np.all(np.isfinite(value)):
            raise NirError(f"node {stage.name!r} ({stage.kind}): {name} is not finite")
        fields[name] = float(value[0]) if np.all(value == value[0]) else np.array(value)
    for name in ("tau", "tau_mem", "tau_syn"):
        if name in fields and np.any(np.asarray(fields[name]) < dt):
            raise NirError(f"node {stage.name!r} ({stage.kind}): {name} is below dt = {dt:g}, where "
                           "forward Euler overshoots; pass a smaller dt")
    if "v_threshold" in fields and np.any(np.asarray(fields["v_threshold"]) <= fields["v_reset"]):
        raise NirError(f"node {stage.name!r} ({stage.kind}): v_threshold must be above v_reset")
    return fields


# Weights and biases must fit float32: the precision NIR files are written in and symgrad's
# default, where a larger value is inf (a value near this bound overflows the states instead).
LARGEST = float(np.finfo(np.float32).max)


def _check_weights(name: str, node, shape: tuple) -> None:
    """The weight node's weight has ``shape``, its bias (an Affine's) one value per row, and
    both hold finite numbers within float32's range."""
    kind = type(node).__name__
    weight = np.asarray(node.weight)
    if weight.shape != shape:
        raise NirError(f"node {name!r} ({kind}): weight has shape {weight.shape}, "
                       f"expected {shape} from the nodes around it")
    arrays = {"weight": weight}
    if isinstance(node, _nir.Affine):
        arrays["bias"] = np.asarray(node.bias)
        if arrays["bias"].size != shape[0]:
            raise NirError(f"node {name!r} ({kind}): bias has shape {arrays['bias'].shape}, expected "
                           f"({shape[0]},): one value per row of the weight")
    for field, values in arrays.items():
        if values.dtype.kind not in "iuf" or not np.all(np.isfinite(values)):
            raise NirError(f"node {name!r} ({kind}): {field} holds values that are not finite numbers")
        if values.size and np.abs(values).max() > LARGEST:
            raise NirError(f"node {name!r} ({kind}): {field} holds {np.abs(values).max():.3g}, beyond "
                           f"float32's range ({LARGEST:.3g})")


def _bias(node, n: int):
    return np.asarray(node.bias).reshape(n) if isinstance(node, _nir.Affine) else None


def _sum_bias(a, b):
    return b if a is None else a if b is None else a + b


def _unless(values, neutral: float):
    """None where every value is ``neutral`` (the readout then skips the operation)."""
    return None if np.all(values == neutral) else np.array(values)


from .export import save, to_graph  # noqa: E402  (export uses load's helpers above)
