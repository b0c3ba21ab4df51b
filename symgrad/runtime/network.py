"""A network of generated layers and a leaky readout.

Per step t, for each layer l (layer 0 hears the input x_t, layer l the output of l-1 at t):

    u_t = [input_t, z_{t-1}]           (the second part only with a recurrent projection)
    I_t = W_in input_t + W_rec z_{t-1}
    s_t, z_t = the generated neuron step
    y_t = kappa y_{t-1} + W_out z_t + b_out   (readout of the last layer)

Parameters live in one flat dict (``Network.params``) so optimisers and checkpoints treat
them alike: ``W_in``, ``W_rec``, learnable neuron parameters by name for layer 0, the same
names suffixed ``_<l>`` for layer l > 0, then ``W_out`` and ``b_out``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import NeuronModel
from . import backends, compiled


@dataclass
class Layer:
    """One population of a model, with its input and optional recurrent projection."""

    model: NeuronModel
    n: int
    n_in: int
    recurrent: bool
    index: int
    code: object = field(repr=False)  # the generated code (see layer_code.LayerCode)
    plan: object = field(repr=False)  # its plan.PlanSummary: storage and buffers
    active: float | None = None  # the fraction of rows not at rest in the last e-prop pass

    def key(self, name: str) -> str:
        return name if self.index == 0 else f"{name}_{self.index}"

    @property
    def n_pre(self) -> int:
        return self.n_in + (self.n if self.recurrent else 0)


class Network:
    """Layers of generated neurons and a leaky readout y_t = kappa y_{t-1} + W_out z_t + b_out.

    dense=True ignores the trace plan and keeps every trace per synapse (for benchmarks);
    events=False sweeps every row every step even where the kernels could skip rows at rest.
    """

    def __init__(self, model: NeuronModel, n_in: int, hidden, n_out: int, *, recurrent=True,
                 kappa=0.0, feedback="symmetric", seed=0, dtype="float64", backend="numpy",
                 params: dict | None = None, neuron_params: dict | None = None, dense: bool = False,
                 events: bool = True):
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        backend = backends.resolve(backend)
        self.events = events  # skip rows at rest where the backend's kernels can (exact either way)
        self.dtype = np.dtype(dtype)
        self.kappa = float(kappa)
        self.backend = backend
        self.xp = backends.array_module(backend)
        code = compiled.load(model, backend, dense=dense)
        plan = compiled.generated(model, dense).plan
        self.layers = []
        sizes = [n_in] + hidden
        for index, n in enumerate(hidden):
            self.layers.append(Layer(model, n, sizes[index], bool(recurrent), index, code, plan))
        self.n_in, self.n_out = n_in, n_out
        rng = np.random.default_rng(seed)
        self.fixed_values = dict(neuron_params or {})  # overrides of the model's defaults
        self.params = self._initial_params(rng)
        if params:
            self.set_params(params)
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"feedback must be 'symmetric' or 'random', not {feedback!r}")
        self.feedback = feedback
        # Random feedback (Lillicrap et al. 2016): a fixed matrix shaped like W_out.
        self.B_random = self._array(rng.standard_normal((n_out, hidden[-1])) / np.sqrt(hidden[-1]))

    # -- parameters ----------------------------------------------------------------------
    def _array(self, values):
        """A writable array of the network's dtype on its device (always a copy)."""
        return self.xp.asarray(np.array(values, dtype=self.dtype))

    def _initial_params(self, rng) -> dict:
        params = {}
        for layer in self.layers:
            params[layer.key("W_in")] = self._array(
                rng.standard_normal((layer.n, layer.n_in)) / np.sqrt(layer.n_in))
            if layer.recurrent:
                w = rng.standard_normal((layer.n, layer.n)) / np.sqrt(layer.n)
                np.fill_diagonal(w, 0.0)
                params[layer.key("W_rec")] = self._array(w)
            for p in layer.model.learnable:
                value = self.fixed_values.get(p.name, layer.model.params[p])
                params[layer.key(p.name)] = self._array(np.broadcast_to(value, (layer.n,)))
        last = self.layers[-1].n
        params["W_out"] = self._array(rng.standard_normal((self.n_out, last)) / np.sqrt(last))
        params["b_out"] = self._array(np.zeros(self.n_out))
        return params

    def set_params(self, values: dict):
        """Overwrite parameters by name, checking shapes; unknown names are an error."""
        for name, value in values.items():
            if name not in self.params:
                raise KeyError(f"network has no parameter {name!r}")
            value = np.asarray(value, dtype=self.dtype)
            if value.shape != self.params[name].shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {self.params[name].shape}")
            self.params[name][...] = self.xp.asarray(value)

    def neuron_params(self, layer: Layer) -> dict:
        """The parameter values the generated code reads: per-neuron arrays or 0-d arrays."""
        values = {}
        for p, default in layer.model.params.items():
            if p in layer.model.learnable:
                values[p.name] = self.params[layer.key(p.name)]
            elif p in layer.model.per_neuron:
                value = self.fixed_values.get(p.name, default)
                values[p.name] = self._array(np.broadcast_to(value, (layer.n,)))
            else:
                values[p.name] = self._array(self.fixed_values.get(p.name, default))
        return values

    def initial_state(self, layer: Layer, batch: int) -> dict:
        return {name: self.xp.full((batch, layer.n), value, dtype=self.dtype)
                for name, value in layer.code.INITIAL.items()}

    def feedback_matrix(self):
        return self.params["W_out"] if self.feedback == "symmetric" else self.B_random

    # -- inference -----------------------------------------------------------------------
    def forward(self, x):
        """Run the network on x (T, B, M); returns the readout (T, B, K) and each layer's spikes."""
        xp = self.xp
        x = xp.asarray(x, dtype=self.dtype)
        steps, batch = x.shape[:2]
        states = [self.initial_state(layer, batch) for layer in self.layers]
        z_prev = [xp.zeros((batch, layer.n), self.dtype) for layer in self.layers]
        p = [self.neuron_params(layer) for layer in self.layers]
        y = xp.zeros((batch, self.n_out), self.dtype)
        ys = xp.zeros((steps, batch, self.n_out), self.dtype)
        spikes = [xp.zeros((steps, batch, layer.n), self.dtype) for layer in self.layers]
        for t in range(steps):
            inp = x[t]
            for l, layer in enumerate(self.layers):
                I = self.synaptic_input(layer, inp, z_prev[l])
                states[l], z, _ = layer.code.neuron_step(states[l], I, p[l])
                spikes[l][t] = z
                z_prev[l] = inp = z
            y = self.kappa * y + inp @ self.params["W_out"].T + self.params["b_out"]
            ys[t] = y
        return ys, spikes

    def synaptic_input(self, layer: Layer, inp, z_prev):
        I = inp @ self.params[layer.key("W_in")].T
        if layer.recurrent:
            I += z_prev @ self.params[layer.key("W_rec")].T
        return I
