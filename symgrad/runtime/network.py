"""A network of generated layers and a readout.

Per step t, for each layer l (layer 0 hears the input x_t, layer l the output of l-1 at t):

    u_t = [input_t, z_{t-1}, 1]        (z_{t-1} with a recurrent projection, 1 with a bias)
    I_t = W_in input_t + W_rec z_{t-1} + b_in
    s_t, z_t = the generated neuron step
    y_t = kappa y_{t-1} + gain (W_out z_t + b_out) + offset     (the readout of the last layer)

``gain`` and ``offset`` are fixed per output (1 and 0 unless given: a NIR leaky integrator
sets them). A network without a readout outputs its last layer's spikes, y_t = z_t, and
classifies by spike count.

Each layer may have its own model, recurrence, bias and neuron parameter values, where a
per-neuron parameter may take one value per neuron. The bias b_in is a constant input current,
trained like a weight from an input that is always 1 (the last column of u).

A model with several synaptic inputs has these per input p (a ``Port``), with the projections
its wiring gives it: u^p_t, I_p,t = W_in_p input_t + W_rec_p z_{t-1} + b_in_p, and its own traces.

A projection may be sparse (``connectivity``): only the synapses its ``Connectivity`` lists
exist, its weights are one value per synapse (nnz,), and every per-synapse trace of its layer
is stored in sparse rows (runtime/connectivity.py, ``layouts.CSR``).

Parameters live in one flat dict (``Network.params``) so optimisers and checkpoints treat
them alike: ``W_in``, ``W_rec``, ``b_in`` (``W_in_<input>``, ... for a model with several inputs)
and learnable neuron parameters by name for layer 0, the same names suffixed ``_<l>`` for layer
l > 0, then ``W_out`` and ``b_out``; where two of these spellings would meet, a qualified one
(``layer1.W_in.I``). ``projection.parameter_keys`` keys them all; everything else asks a
projection (``Projection.key``) or a layer (``Layer.key``) for a key.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..layouts import CSR
from ..model import NeuronModel, sources_of, wiring_problem
from . import backends, compiled, memory
from .connectivity import Connectivity, ConnectivityError, DenseSynapses, Synapses
from .kernel_layer import KernelLayer
from .projection import Projection, Source, parameter_keys, weight_name


@dataclass
class Port:
    """One synaptic input of a layer's neurons and the projections that drive it.

    Its presynaptic vector is u_t = [input_t, z_{t-1}, 1] with the parts it hears, and its
    current I_t = W_in input_t + W_rec z_{t-1} + b_in, one ``Projection`` per part. A one-input
    model's only port is the layer's; a model with several inputs has one port, and traces, for
    each input that hears something.
    """

    input: str  # the model's input symbol's name
    plan: object = field(repr=False)  # its plan.PlanSummary: the traces' storage and buffers
    n_in: int = 0  # 0 where it hears no input from below
    n_rec: int = 0  # 0 where it hears no recurrent spikes
    bias: bool = False
    projections: tuple = field(default=(), repr=False)  # its Projections, in u's order (Layer.take_keys)
    synapses: object = field(default=None, repr=False)  # its DenseSynapses or (sparse rows) Synapses

    @property
    def n_pre(self) -> int:
        return self.n_in + self.n_rec + (1 if self.bias else 0)

    def widths(self) -> list[tuple]:
        """(Source, its number of columns in u) of each part of u the port hears, in u's order."""
        parts = ((Source.INPUT, self.n_in), (Source.RECURRENT, self.n_rec), (Source.BIAS, int(self.bias)))
        return [(source, width) for source, width in parts if width]

    def sources(self) -> list:
        return [source for source, _ in self.widths()]

    @property
    def input_projection(self) -> Projection | None:
        """The projection from the layer's input; None where the port hears none."""
        return next((p for p in self.projections if p.source is Source.INPUT), None)


@dataclass
class Layer:
    """One population of a model: its synaptic inputs (``ports``), each with the projections
    that drive it, from below, recurrent or a bias."""

    model: NeuronModel
    n: int
    n_in: int
    recurrent: bool
    index: int
    code: object = field(repr=False)  # the generated code (see layer_code.LayerCode)
    ports: list = field(repr=False)  # Port of each of the model's inputs that hears something
    bias: bool = False
    learnable_keys: dict = field(default_factory=dict, repr=False)  # {learnable parameter: its key}

    def take_keys(self, keys: dict) -> None:
        """Key the layer's projections and learnable parameters as ``keys`` (from
        projection.parameter_keys, for the whole network) says."""
        for port in self.ports:
            found, start = [], 0
            for source, width in port.widths():
                found.append(Projection(self.index, port.input, source, slice(start, start + width),
                                        weight_name(self.model, source, port.input),
                                        keys[(self.index, source, port.input)]))
                start += width
            port.projections = tuple(found)
        self.learnable_keys = {p.name: keys[(self.index, p.name)] for p in self.model.learnable}

    def key(self, name: str) -> str:
        """The key in Network.params of the learnable neuron parameter ``name``."""
        return self.learnable_keys[name]

    @property
    def projections(self) -> list:
        """Every projection of the layer, port by port."""
        return [p for port in self.ports for p in port.projections]

    def projection(self, source: Source, input_name: str | None = None) -> Projection | None:
        """The projection from ``source`` to the input ``input_name`` (None: the only input of a
        one-input model); None where there is none."""
        if input_name is None:
            (input_name,) = self.model.input_names
        return next((p for p in self.projections if (p.source, p.input) == (source, input_name)), None)

    @property
    def plan(self):
        """The first port's plan (the only one of a one-input model)."""
        return self.ports[0].plan

    @property
    def n_pre(self) -> int:
        """The first port's presynaptic count (a one-input model's only one)."""
        return self.ports[0].n_pre

    def fill_presynaptic(self, port: Port, u, inp, z_prev) -> None:
        """Write u_t = [input_t, z_{t-1}, 1] of ``port`` into u (batch, n_pre)."""
        for p in port.projections:
            u[:, p.columns] = {Source.INPUT: inp, Source.RECURRENT: z_prev, Source.BIAS: 1}[p.source]

    def split_gradient(self, port: Port, grad) -> dict:
        """The gradient over ``port``'s synapses (post, pre), or (nnz,) in sparse rows, by
        parameter key."""
        return port.synapses.split(grad, port.projections)

    @property
    def layout(self):
        """How its ports' synapses are laid out: sparse rows where any projection is sparse."""
        return self.ports[0].synapses.layout


def per_layer(value, count: int, what: str) -> list:
    """``value`` for each of ``count`` layers: a list or tuple gives one per layer, anything
    else is shared by all."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{what}: {len(value)} values for {count} layers")
        return list(value)
    return [value] * count


class Network:
    """Layers of generated neurons and a leaky readout y_t = kappa y_{t-1} + W_out z_t + b_out.

    model, recurrent, bias and neuron_params are either shared by every layer or a list with
    one entry per layer. neuron_params overrides the models' defaults by name; a per-neuron or
    learnable parameter may be given an array of one value per neuron.
    readout=False: no readout weights; the output is the last layer's spikes (n_out must be its
    size). readout_gain, readout_offset: fixed (n_out,) factors of the readout's drive.
    projections: for a model with several synaptic inputs, {input name: sources} with sources
    among "input" and "recurrent" (shared, or one dict per layer); by default the model's own
    wiring, without its recurrent projections where ``recurrent`` is False. bias=True adds the
    bias to the first input that hears anything.
    signs: {input name, or weight name such as "W_rec_I_i": +1 or -1}: those weights start
    with that sign and keep it through training (``constrain``); by default the model's signs.
    dense=True ignores the trace plan and keeps every trace per synapse (for benchmarks);
    events=False sweeps every row every step even where the kernels could skip rows at rest.
    connectivity: which synapses exist. A probability P in (0, 1] gives every weight of every
    layer round(P x its inputs) partners per neuron, drawn from ``seed`` (a recurrent weight
    never connects a neuron to itself); a dict takes, per weight key (``W_in``, ``W_rec_1``, ...),
    a probability, a boolean (post, pre) mask, a pair of index arrays (post, pre) or a
    ``Connectivity``. Weights not named are dense; a bias always is.
    """

    def __init__(self, model, n_in: int, hidden, n_out: int, *, recurrent=True, bias=False,
                 kappa=0.0, readout=True, readout_gain=None, readout_offset=None,
                 feedback="symmetric", seed=0, dtype="float64", backend="numpy",
                 params: dict | None = None, neuron_params=None, dense: bool = False, events: bool = True,
                 projections=None, signs: dict | None = None, connectivity=None):
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        count = len(hidden)
        models = per_layer(model, count, "model")
        recurrent = per_layer(recurrent, count, "recurrent")
        bias = per_layer(bias, count, "bias")
        values = per_layer(neuron_params or {}, count, "neuron_params")
        wirings = per_layer(projections, count, "projections")
        backend = backends.resolve(backend)
        self.events = events  # skip rows at rest where the backend's kernels can (exact either way)
        self.dtype = np.dtype(dtype)
        self.kappa = float(kappa)
        self.backend = backend
        self.xp = backends.array_module(backend)
        self.layers = []
        sizes = [n_in] + hidden
        for index, (n, layer_model) in enumerate(zip(hidden, models)):
            plans = compiled.generated(layer_model, dense).plans
            ports = _ports(layer_model, plans, n, sizes[index], bool(recurrent[index]), bool(bias[index]),
                           wirings[index])
            self.layers.append(Layer(layer_model, n, sizes[index], any(p.n_rec for p in ports), index, None,
                                     ports, bias=bool(bias[index])))
        self.n_in, self.n_out = n_in, n_out
        self.readout = bool(readout)
        if not self.readout and (n_out != hidden[-1] or self.kappa):
            raise ValueError(f"a network without a readout outputs its last layer's {hidden[-1]} "
                             f"spikes unfiltered: n_out must be {hidden[-1]} (not {n_out}) and kappa 0")
        keys = parameter_keys(self.layers, self.readout)
        for layer in self.layers:
            layer.take_keys(keys)
        self.connectivity = _connectivity(self.layers, connectivity, seed)
        for layer in self.layers:
            _lay_out(layer, self.connectivity)
            if layer.layout.sparse and not backends.get(backend).sparse:
                raise ConnectivityError(f"sparse connectivity does not run on the {backends.get(backend).title} "
                                        f"backend yet; choose one of "
                                        f"{', '.join(b.name for b in backends.BACKENDS.values() if b.sparse)}")
            layer.code = compiled.load(layer.model, backend, dense=dense, layout=layer.layout)
        self.layer_values = [_checked_values(layer, given) for layer, given in zip(self.layers, values)]
        self.gain = None if readout_gain is None else self._array(np.broadcast_to(readout_gain, (n_out,)))
        self.offset = None if readout_offset is None else self._array(np.broadcast_to(readout_offset, (n_out,)))
        self.signs = _signs(self.layers, signs)
        memory.require(memory.weights(self), f"a network of {', '.join(map(str, hidden))} neurons", self.xp,
                       "choose fewer neurons")
        rng = np.random.default_rng(seed)
        self.params = self._initial_params(rng)
        if params:
            self.set_params(params)
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"feedback must be 'symmetric' or 'random', not {feedback!r}")
        self.feedback = feedback
        # Random feedback (Lillicrap et al. 2016): a fixed matrix shaped like W_out.
        self.B_random = None
        if self.readout:
            self.B_random = self._array(rng.standard_normal((n_out, hidden[-1])) / np.sqrt(hidden[-1]))

    # -- parameters ----------------------------------------------------------------------
    def _array(self, values):
        """A writable array of the network's dtype on its device (always a copy)."""
        return self.xp.asarray(np.array(values, dtype=self.dtype))

    def _initial_params(self, rng) -> dict:
        """Weights drawn N(0, 1 / fan-in), a recurrent neuron's own weight 0, biases 0. A sparse
        weight takes the dense draw's values at its synapses, scaled to its rows' own fan-in."""
        params = {}
        for layer, values in zip(self.layers, self.layer_values):
            for projection in layer.projections:
                key = projection.key
                if projection.source is Source.INPUT:
                    w = rng.standard_normal((layer.n, layer.n_in)) / np.sqrt(layer.n_in)
                elif projection.source is Source.RECURRENT:
                    w = rng.standard_normal((layer.n, layer.n)) / np.sqrt(layer.n)
                    np.fill_diagonal(w, 0.0)
                else:
                    w = np.zeros(layer.n)
                if key in self.connectivity:
                    synapses = self.connectivity[key]
                    fan_in = np.diff(synapses.row_start)[synapses.post]
                    w = synapses.gather(w) * np.sqrt(synapses.n_pre / fan_in)
                params[key] = self._array(np.abs(w) * self.signs[key] if key in self.signs else w)
            for p in layer.model.learnable:
                value = values.get(p.name, layer.model.params[p])
                params[layer.key(p.name)] = self._array(np.broadcast_to(value, (layer.n,)))
        if self.readout:
            last = self.layers[-1].n
            params["W_out"] = self._array(rng.standard_normal((self.n_out, last)) / np.sqrt(last))
            params["b_out"] = self._array(np.zeros(self.n_out))
        return params

    def constrain(self) -> None:
        """Give every signed weight its sign back (after an optimiser's step): Dale's law."""
        for name, sign in self.signs.items():
            weight = self.params[name]
            if sign > 0:
                self.xp.maximum(weight, 0, out=weight)
            else:
                self.xp.minimum(weight, 0, out=weight)

    def set_params(self, values: dict):
        """Overwrite parameters by name, checking shapes; unknown names are an error. A sparse
        weight takes (nnz,) values, or a dense (post, pre) matrix read at its synapses."""
        for name, value in values.items():
            if name not in self.params:
                raise KeyError(f"network has no parameter {name!r}")
            value = np.asarray(value, dtype=self.dtype)
            if name in self.connectivity and value.shape == self.connectivity[name].shape:
                value = self.connectivity[name].gather(value)
            if value.shape != self.params[name].shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {self.params[name].shape}")
            self.params[name][...] = self.xp.asarray(value)

    def dense(self, key: str, values=None):
        """The parameter ``key`` (or ``values`` shaped like it, such as its gradient) as a dense
        array: a sparse weight's (post, pre) matrix, zero where no synapse is; any other as it is."""
        values = self.params[key] if values is None else values
        if key in self.connectivity:
            return self.connectivity[key].scatter(values, self.xp)
        return values

    def reconnect(self, changed: dict) -> None:
        """Move sparse weights' synapses: ``changed`` gives, by weight key, a Connectivity of the
        same shape and nnz, whose slot k takes the weight's value k as it is. The layers' ports are
        laid out again (the rows the kernels walk); a pass started after this sees the new synapses."""
        for key, connectivity in changed.items():
            if key not in self.connectivity:
                raise ConnectivityError(f"{key} is not a sparse weight of this network: it has no synapses to move")
            held = self.connectivity[key]
            if (connectivity.shape, connectivity.nnz) != (held.shape, held.nnz):
                raise ConnectivityError(f"the synapses given for {key} are {connectivity.nnz} of "
                                        f"{connectivity.shape}; {key} has {held.nnz} of {held.shape}")
        self.connectivity.update(changed)
        for layer in self.layers:
            if any(p.key in changed for p in layer.projections):
                _lay_out(layer, self.connectivity)

    def neuron_params(self, layer: Layer) -> dict:
        """The parameter values the generated code reads: per-neuron arrays or 0-d arrays."""
        given = self.layer_values[layer.index]
        values = {}
        for p, default in layer.model.params.items():
            if p in layer.model.learnable:
                values[p.name] = self.params[layer.key(p.name)]
            elif p in layer.model.per_neuron:
                values[p.name] = self._array(np.broadcast_to(given.get(p.name, default), (layer.n,)))
            else:
                values[p.name] = self._array(given.get(p.name, default))
        return values

    def fixed_entries(self, layer: Layer, p: dict) -> dict:
        """The layer's Jacobian entries fixed for the run (K), from its parameter values ``p``.
        Generated kernels are typed, so their layer is told the network's dtype (a model without
        parameters has no array to tell it by); the NumPy module's arithmetic follows p's."""
        if isinstance(layer.code, KernelLayer):
            return layer.code.fixed_entries(p, self.dtype)
        return layer.code.fixed_entries(p)

    def initial_state(self, layer: Layer, batch: int) -> dict:
        return {name: self.xp.full((batch, layer.n), value, dtype=self.dtype)
                for name, value in layer.code.INITIAL.items()}

    # -- the readout ---------------------------------------------------------------------
    def feedback_matrix(self):
        return self.params["W_out"] if self.feedback == "symmetric" else self.B_random

    def read(self, y, z):
        """y_t from y_{t-1} and the last layer's z_t."""
        if not self.readout:
            return z
        drive = z @ self.params["W_out"].T + self.params["b_out"]
        if self.gain is not None:
            drive *= self.gain
        if self.offset is not None:
            drive += self.offset
        return self.kappa * y + drive if self.kappa else drive

    def drive_error(self, err):
        """dL/d(W_out z_t + b_out) from dL/dy_t (the same array without a gain)."""
        return err if self.gain is None else err * self.gain

    def learning_signal(self, err):
        """dL/dy_t sent back to the last layer's neurons: through the feedback matrix, or as it
        is where the output is the spikes themselves."""
        if not self.readout:
            return err
        return self.drive_error(err) @ self.feedback_matrix()

    # -- inference -----------------------------------------------------------------------
    def forward(self, x):
        """Run the network on x (T, B, M); returns the readout (T, B, K), or None without one,
        and each layer's spikes (T, B, N_l)."""
        steps, batch = x.shape[:2]
        ys = self.xp.zeros((steps, batch, self.n_out), self.dtype) if self.readout else None
        spikes = [self.xp.zeros((steps, batch, layer.n), self.dtype) for layer in self.layers]
        for t, (_, outputs, y) in enumerate(self._steps(x)):
            for l, z in enumerate(outputs):
                spikes[l][t] = z
            if self.readout:
                ys[t] = y
        return ys, spikes

    def record(self, x) -> list[dict]:
        """Every layer's states and output over time on x (T, B, M): one dict per layer,
        {state name: (T, B, N_l), ..., "z": (T, B, N_l)}."""
        steps, batch = x.shape[:2]
        names = [list(layer.code.INITIAL) + ["z"] for layer in self.layers]
        kept = [{name: self.xp.zeros((steps, batch, layer.n), self.dtype) for name in layer_names}
                for layer, layer_names in zip(self.layers, names)]
        for t, (states, outputs, _) in enumerate(self._steps(x)):
            for record, state, z in zip(kept, states, outputs):
                for name, value in state.items():
                    record[name][t] = value
                record["z"][t] = z
        return kept

    def _steps(self, x):
        """Each step's layer states, layer outputs and readout (None without one)."""
        xp = self.xp
        x = xp.asarray(x, dtype=self.dtype)
        batch = x.shape[1]
        states = [self.initial_state(layer, batch) for layer in self.layers]
        outputs = [xp.zeros((batch, layer.n), self.dtype) for layer in self.layers]
        p = [self.neuron_params(layer) for layer in self.layers]
        y = xp.zeros((batch, self.n_out), self.dtype) if self.readout else None
        for inp in x:
            for l, layer in enumerate(self.layers):
                currents = self.synaptic_input(layer, inp, outputs[l])
                states[l], outputs[l], _ = layer.code.neuron_step(states[l], *currents, p[l])
                inp = outputs[l]
            if self.readout:
                y = self.read(y, inp)
            yield states, outputs, y

    def synaptic_input(self, layer: Layer, inp, z_prev) -> list:
        """The current of each of the model's inputs, in declaration order (zero for an input
        no projection drives)."""
        currents = {}
        for port in layer.ports:
            I = None  # the bias, if any, comes last: I is a product by then
            for projection in port.projections:
                weight = self.params[projection.key]
                if projection.source is Source.BIAS:
                    I += weight
                    continue
                source = inp if projection.source is Source.INPUT else z_prev
                if projection.key in self.connectivity:
                    part = self.connectivity[projection.key].matvec(source, weight, self.xp)
                else:
                    part = source @ weight.T
                I = part if I is None else I + part
            currents[port.input] = I
        zeros = None
        for name in layer.model.input_names:
            if name not in currents:
                zeros = self.xp.zeros((len(inp), layer.n), self.dtype) if zeros is None else zeros
                currents[name] = zeros
        return [currents[name] for name in layer.model.input_names]

    def pass_back(self, layer: Layer, signals: list, source: Source, batch: int):
        """``synaptic_input`` transposed for one source: sum_p signals[p] @ W_p over the projections
        from ``source`` (the layer's input, or its own z_{t-1}) into each port p, given a (batch, n)
        signal per port (None for a port ``source`` does not drive); zeros where none carries it.
        e-prop passes L dz/dI_p down with it, BPTT dL/dI_p down and back in time."""
        total = None
        for port, signal in zip(layer.ports, signals):
            for projection in port.projections:
                if projection.source is source:
                    weight = self.params[projection.key]
                    if projection.key in self.connectivity:
                        part = self.connectivity[projection.key].rmatvec(signal, weight, self.xp)
                    else:
                        part = signal @ weight
                    total = part if total is None else total + part
        if total is None:
            width = layer.n_in if source is Source.INPUT else layer.n
            return self.xp.zeros((batch, width), self.dtype)
        return total


def _ports(model: NeuronModel, plans, n: int, n_in: int, recurrent: bool, bias: bool, given) -> list[Port]:
    """The layer's ports: the model's inputs with the projections that drive them."""
    wiring = given if given is not None else model.wiring
    problem = wiring_problem(model, wiring)
    if problem:
        raise ValueError(problem)
    ports = []
    for plan in plans:
        sources = {Source(name) for name in sources_of(wiring.get(plan.input, ()))}
        hears_input = Source.INPUT in sources
        hears_recurrent = Source.RECURRENT in sources and (recurrent or given is not None)
        if hears_input or hears_recurrent:
            ports.append(Port(plan.input, plan, n_in if hears_input else 0,
                              n if hears_recurrent else 0, bias and not ports))
    if not ports:
        raise ValueError(f"no projection drives model {model.name!r}: give its inputs "
                         f"({', '.join(model.input_names)}) a source")
    return ports


def _connectivity(layers: list, given, seed: int) -> dict:
    """{weight key: Connectivity} of every sparse projection, from the Network's ``connectivity``
    (see there); random draws come from their own stream of ``seed``, so that a sparse network's
    weights are drawn as the dense one's."""
    if given is None:
        return {}
    weights = {p.key: (layer, p) for layer in layers for p in layer.projections if p.source is not Source.BIAS}
    if not isinstance(given, dict):
        given = dict.fromkeys(weights, given)
    unknown = sorted(set(given) - set(weights))
    if unknown:
        raise ConnectivityError(f"connectivity of {unknown[0]}: the network has no such weight "
                                f"(weights: {', '.join(weights)})")
    # a child stream of the seed: neither the weights' draw nor any epoch's ([seed, epoch]) meets it
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(27,)))
    found = {}
    for key, spec in given.items():
        layer, projection = weights[key]
        shape = (layer.n, layer.n_in if projection.source is Source.INPUT else layer.n)
        if isinstance(spec, Connectivity):
            if spec.shape != shape:
                raise ConnectivityError(f"the connectivity given for {key} is {spec.shape}; {key} is {shape}")
            found[key] = spec
        elif isinstance(spec, tuple) and len(spec) == 2:
            found[key] = Connectivity.from_indices(*spec, shape, key)
        elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
            if not 0 < spec <= 1:
                raise ConnectivityError(f"connectivity of {key} is {spec:g}: a probability in (0, 1]")
            if spec < 1:
                found[key] = Connectivity.random(shape, spec, rng, key,
                                                 no_self=projection.source is Source.RECURRENT)
        else:
            found[key] = Connectivity.from_mask(spec, shape, key)
    return found


def _lay_out(layer: Layer, connectivity: dict) -> None:
    """Give each port of ``layer`` its synapses: sparse rows, with its plan's per-synapse arrays
    in that layout, where any projection of the layer is sparse; else dense."""
    if not any(p.key in connectivity for p in layer.projections):
        for port in layer.ports:
            port.synapses = DenseSynapses(layer.n, port.n_pre)
        return
    for port in layer.ports:
        parts = [(p, connectivity.get(p.key), p.columns.stop - p.columns.start) for p in port.projections]
        port.synapses = Synapses(layer.n, parts)
        if len(port.synapses.empty_rows):
            raise ConnectivityError(f"neuron {port.synapses.empty_rows[0]} of layer {layer.index} has no synapse "
                                    f"on its input {port.input}: every mask leaves its row empty")
        port.plan = replace(port.plan, layout=CSR)


def _signs(layers: list, given: dict | None) -> dict:
    """{parameter key: +1 or -1} of every signed weight, from the signs of inputs or of weights
    by their name within the layer (``W_rec_I_i``: in every layer)."""
    found = {}
    for layer in layers:
        table = layer.model.signs if given is None else given
        for projection in layer.projections:
            if projection.source is Source.BIAS:
                continue
            sign = table.get(projection.name, table.get(projection.input)) if table else None
            if sign is not None:
                found[projection.key] = sign
        named = {projection.name for projection in layer.projections}
        for key, sign in (table or {}).items():
            if key not in named and key not in layer.model.input_names:
                raise ValueError(f"sign of {key!r}: layer {layer.index} has no input or weight of that "
                                 f"name (weights: {', '.join(sorted(named))})")
            if sign not in (1, -1):
                raise ValueError(f"sign of {key!r} is {sign!r}: +1 or -1")
    return found


def _checked_values(layer: Layer, given: dict) -> dict:
    """The layer's parameter overrides, each a number, or one per neuron where it may be."""
    model = layer.model
    for name, value in given.items():
        if name not in model.param_names:
            raise ValueError(f"model {model.name!r} has no parameter {name!r}")
        shape = np.shape(value)
        per_neuron = next(p for p in model.params if p.name == name) in model.neuron_params
        if shape not in ((), (layer.n,)) or (shape and not per_neuron):
            wanted = f"a number or {layer.n} values (one per neuron)" if per_neuron else "a number"
            raise ValueError(f"parameter {name} of layer {layer.index} has shape {shape}; "
                             f"it takes {wanted}")
    return dict(given)
