"""Reading the input .npz file of ``symgrad grads``, checking every array it needs.

IN.npz: x (T, B, M) input spikes, labels (B,), W_in (N, M), optional W_rec (N, N), W_out (K, N),
b_out (K,), kappa (scalar), optional param_<name> overriding a model parameter.
For a model with several synaptic inputs, W_in_<input> (N, M) and W_rec_<input> (N, N) for
each input instead of W_in and W_rec: any may be missing (no projection to that input), not all.
Optional mask_<weight> (boolean, the weight's shape) makes that weight sparse: only the synapses
it marks exist, the weight's values elsewhere are ignored, and its gradient is zero there.
OUT.npz (written by the command with store.write_npz): loss and one gradient per weight given,
same names and shapes. The files name each weight by its name within the layer
(``projection.weight_name``), which ``GradInputs.keys`` maps to the network's keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store
from .errors import UserError
from .model import NeuronModel
from .runtime.config import SETTINGS
from .runtime.projection import READOUT, STEMS, Source, weight_name


@dataclass
class GradInputs:
    x: np.ndarray
    labels: np.ndarray
    weights: dict
    kappa: float
    neuron_params: dict
    n_in: int
    n: int
    n_out: int
    projections: dict | None  # {input: sources} of a model with several inputs, else None
    sources: dict  # {weight's name in the file: (the input it drives, its Source)}
    masks: dict  # {weight's name in the file: its boolean mask_<weight>} of the sparse ones

    @property
    def recurrent(self) -> bool:
        return any(source is Source.RECURRENT for _, source in self.sources.values())

    def keys(self, net) -> dict:
        """{array's name in the file: its key in ``net``}, the one-layer network built from them."""
        layer = net.layers[0]
        found = {name: layer.projection(source, input_name).key
                 for name, (input_name, source) in self.sources.items()}
        return found | {name: name for name in READOUT}


def read_inputs(path, model: NeuronModel) -> GradInputs:
    path = Path(path)
    data = _load_npz(path)
    where = str(path)

    def need(key, ndim):
        if key not in data:
            raise UserError(f"{where}: missing array {key!r}")
        value = _finite(data[key], key, where)
        if value.ndim != ndim:
            raise UserError(f"{where}: {key} must have {ndim} dimensions, has shape {value.shape}")
        return value

    x = need("x", 3)
    steps, batch, n_in = x.shape
    labels = need("labels", 1)
    W_out, b_out = need("W_out", 2), need("b_out", 1)
    kappa = float(need("kappa", 0))
    problem = SETTINGS["kappa"].problem(kappa)  # as train checks its --kappa
    if problem:
        raise UserError(f"{where}: kappa {problem}")
    projected = _projections(data, model, where)
    weights = {name: need(name, 2) for name in projected}
    n, n_out = next(iter(weights.values())).shape[0], W_out.shape[0]
    shapes = {Source.INPUT: (n, n_in), Source.RECURRENT: (n, n)}
    expected = {"labels": (batch,), **{name: shapes[source] for name, (_, source) in projected.items()},
                "W_out": (n_out, n), "b_out": (n_out,)}
    weights.update({"W_out": W_out, "b_out": b_out})
    first = next(iter(projected))
    arrays = {"labels": labels, **weights}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise UserError(f"{where}: {key} has shape {arrays[key].shape}, expected {shape} "
                            f"(from x {x.shape} and {first} {weights[first].shape})")
    if steps == 0 or batch == 0 or n_in == 0:
        raise UserError(f"{where}: x has no steps, samples or input channels (shape {x.shape})")
    if n == 0:
        raise UserError(f"{where}: {first} has no rows: the layer needs at least one neuron")
    if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= n_out:
        raise UserError(f"{where}: labels must be integers in [0, {n_out})")
    neuron_params = _param_overrides(data, model, n, where)
    masks = _masks(data, projected, weights, where)
    unknown = (set(data) - set(expected) - {"x", "kappa"} - {f"param_{k}" for k in neuron_params}
               - {MASK + name for name in masks})
    if unknown:
        raise UserError(f"{where}: unexpected array {sorted(unknown)[0]!r}")
    wiring = None
    if len(model.inputs) > 1:
        wiring = {}
        for name, (input_name, source) in projected.items():
            wiring.setdefault(input_name, []).append(source.value)
    return GradInputs(x, labels.astype(np.int64), weights, kappa, neuron_params, n_in, n, n_out, wiring,
                      projected, masks)


MASK = "mask_"  # mask_<weight>: which synapses of that weight exist


def _masks(data, projected: dict, weights: dict, where: str) -> dict:
    """{weight name: its boolean mask} of every mask_<weight> in the file."""
    masks = {}
    for key in sorted(k for k in data if k.startswith(MASK)):
        name = key[len(MASK):]
        if name not in projected:
            raise UserError(f"{where}: {key} masks no weight of the file (its weights: {', '.join(projected)})")
        mask = np.asarray(data[key])
        if mask.dtype != np.bool_:
            raise UserError(f"{where}: {key} holds {mask.dtype} values: a mask is boolean")
        if mask.shape != weights[name].shape:
            raise UserError(f"{where}: {key} has shape {mask.shape}; {name} is {weights[name].shape}")
        masks[name] = mask
    return masks


def _projections(data, model: NeuronModel, where: str) -> dict:
    """{weight name: (input, Source)} of the input and recurrent weights the file holds."""
    found = {}
    for input_name in model.input_names:
        for source in (Source.INPUT, Source.RECURRENT):
            name = weight_name(model, source, input_name)
            if name in data:
                found[name] = (input_name, source)
    if len(model.inputs) == 1:
        first = weight_name(model, Source.INPUT, model.input_names[0])
        if first not in found:
            raise UserError(f"{where}: missing array {first!r}")
        return found
    inputs = ", ".join(model.input_names)
    stems = (STEMS[Source.INPUT], STEMS[Source.RECURRENT])
    for key in sorted(data):
        if key in stems:
            raise UserError(f"{where}: model {model.name} has several inputs ({inputs}): name its "
                            f"weights {key}_<input>, not {key}")
        if key.startswith(tuple(f"{stem}_" for stem in stems)) and key not in found:
            raise UserError(f"{where}: {key} names no input of model {model.name} (its inputs: {inputs})")
    if not found:
        raise UserError(f"{where}: no input weights: give W_in_<input> or W_rec_<input> for at least "
                        f"one input of model {model.name} ({inputs})")
    return found


def _param_overrides(data, model: NeuronModel, n: int, where: str) -> dict:
    values = {}
    names = {p.name: p for p in model.params}
    for key in data:
        if not key.startswith("param_"):
            continue
        name = key[len("param_"):]
        if name not in names:
            raise UserError(f"{where}: {key} names no parameter of model {model.name} "
                            f"(it has {', '.join(names)})")
        value = _finite(data[key], key, where).astype(float)
        if value.ndim == 0:
            values[name] = float(value)
        elif value.shape == (n,) and names[name] in model.neuron_params:
            values[name] = value
        else:
            raise UserError(f"{where}: {key} has shape {value.shape}; {name} is "
                            + ("per-neuron: give a scalar or ({n},)".format(n=n)
                               if names[name] in model.neuron_params else "shared: give a scalar"))
    return values


def _finite(value, key: str, where: str) -> np.ndarray:
    """``value`` as an array of finite real numbers (integers or floats), else a UserError."""
    value = np.asarray(value)
    if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
        raise UserError(f"{where}: {key} must hold finite numbers"
                        + ("; it holds complex ones" if value.dtype.kind == "c" else ""))
    return value


def _load_npz(path: Path) -> dict:
    if path.is_dir():
        raise UserError(f"{path}: a directory, not an .npz file")
    try:
        return store.read_npz(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except store.NotNpz as err:
        raise UserError(f"{path}: {err}") from None
