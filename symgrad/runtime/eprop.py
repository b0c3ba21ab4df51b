"""e-prop: gradients forward in time, with memory independent of the sequence length.

    dL/dW_ij ~= sum_t L_t,i ebar_t,ij,   ebar_t = kappa ebar_{t-1} + h_t . eps_t

The learning signal L_t is the readout error sent back through W_out (symmetric) or a fixed
random matrix, or the error itself where the network's output is its last layer; for several
layers it is passed down through each layer's instantaneous Jacobian dz_t/dI_t. With kappa = 0 and a per-step loss, ebar is never formed: each trace
term is contracted with L_t directly (a matrix product for presynaptic traces). With a loss
on the whole sequence the per-sample sum (mean) or last value of ebar is kept and
contracted once the loss is known. For the mean the filter is folded into a weight per step,

    sum_t ebar_t = sum_t w_t e_t,   w_t = 1 + kappa + ... + kappa^(T-1-t),

so ebar itself is never stored.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .losses import PER_STEP, SEQUENCE, loss_kind
from .layer_code import SynapseBuffers
from .network import Layer, Network, Port

_PER_STEP_NAMES = " or ".join(PER_STEP)  # for messages: "ce or mse"
# Above this fraction of active rows the dense fused step beats skipping rows at rest
# (benchmarks/events.py, ALIF on two cores: the two meet between 60% and 70%).
EVENTS_CROSSOVER = 0.6


@dataclass
class Result:
    """What a gradient pass returns: loss, gradients by parameter name, and activity."""

    loss: float
    grads: dict
    spikes: list  # total output count per layer, for checking the network is active
    readout: object  # (B, K): the mean readout over time, or the last one for a loss on it
    overflowed: str | None = None  # the first state not finite at the end ("state v of layer 0")


def overflowed(net: Network, states: list) -> str | None:
    """The first state of the layers' last ``states`` that is not finite, named, or None.

    Checked once per pass: a state that overflows stays inf or NaN (inf times anything but 0,
    inf - inf and 0 * inf are all non-finite), whereas what depends on it may look sound (a
    spike of inf is 1, and some kernels' surrogates give 0 for it, as NumPy's give NaN)."""
    for layer, state in zip(net.layers, states):
        for name, value in state.items():
            if not bool(net.xp.isfinite(value).all()):
                return f"state {name} of layer {layer.index} ({layer.model.name}) overflowed {net.dtype}"
    return None


class _PortState:
    """The traces and buffers of one synaptic input of a layer (a one-input layer has one)."""

    def __init__(self, net: Network, layer: Layer, port: Port, batch: int, ebar: bool, seq_sum: bool,
                 reg: bool):
        xp, dtype, code = net.xp, net.dtype, layer.code
        self.port, self.code = port, code
        self.traces = getattr(code, "Traces" + port.suffix)(batch, layer.n, port.n_pre, dtype)
        # A fused kernel needs no scratch; the plan says what else to allocate (and predicts it).
        fused = hasattr(code, "synapse_step")
        self.synapse_step = code.synapse_step if fused else functools.partial(
            synapse_step, per_synapse=bool(port.plan.per_synapse))
        # Rows at rest are skipped where the kernels can, the step sweeps per-synapse arrays, and
        # the last pass was quiet enough for skipping to pay (benchmarks/events.py: the crossover).
        self.measure = net.events and port.suffix in getattr(code, "EVENTS", ()) and not (ebar and seq_sum) and bool(
            port.plan.per_synapse or ebar or seq_sum)
        events = self.measure and (port.active is None or port.active < EVENTS_CROSSOVER)
        self.active = 0.0
        shapes = port.plan.buffers(batch, layer.n, port.n_pre, filtered=ebar, sequence_sum=seq_sum,
                                   regulariser=reg, fused=fused, events=events)
        arrays = {name: xp.zeros(shape, dtype) for name, shape in shapes.items()}
        if reg:
            arrays["ones"][...] = 1
        if events:
            arrays["last"][...] = -1  # every row is up to date before the first step
        self.buffers = SynapseBuffers(u=xp.zeros((batch, port.n_pre), dtype), **arrays)

    def step(self, layer: Layer, inp, z_prev, J, K, steps: int):
        layer.fill_presynaptic(self.port, self.buffers.u, inp, z_prev)
        self.buffers.step = steps
        if self.measure:
            self.active += self.code.active_fraction(J, K, self.port.suffix)

    def settle(self, K, kappa, steps: int):
        if self.buffers.last is not None:
            self.code.settle(self.traces, K, self.buffers, kappa)
        if self.measure and steps:
            self.port.active = self.active / steps


class _LayerState:
    """The buffers of one layer for one batch: allocated once, reused every step."""

    def __init__(self, net: Network, layer: Layer, batch: int, ebar: bool, seq_sum: bool, reg: bool):
        xp, dtype, code = net.xp, net.dtype, layer.code
        self.layer, self.xp = layer, xp
        self.p = net.neuron_params(layer)
        self.K = net.fixed_entries(layer, self.p)
        self.s = net.initial_state(layer, batch)
        self.z = xp.zeros((batch, layer.n), dtype)
        self.ports = [_PortState(net, layer, port, batch, ebar, seq_sum, reg) for port in layer.ports]
        self.rate_sum = xp.zeros(layer.n, dtype)
        self.learnable = [p.name for p in layer.model.learnable]
        if self.learnable:
            self.ptraces = code.ParamTraces(batch, layer.n, dtype)
            self.pbar = {p: xp.zeros((batch, layer.n), dtype) for p in self.learnable}
            self.pgrad = {p: xp.zeros(layer.n, dtype) for p in self.learnable}
            self.psum = {p: xp.zeros((batch, layer.n), dtype) for p in self.learnable}
            self.preg = {p: xp.zeros(layer.n, dtype) for p in self.learnable}
        self.J = None
        self.steps = 0

    def step(self, net: Network, inp):
        layer = self.layer
        currents = net.synaptic_input(layer, inp, self.z)
        z_prev = self.z
        self.s, self.z, self.J = layer.code.neuron_step(self.s, *currents, self.p)
        for port in self.ports:
            port.step(layer, inp, z_prev, self.J, self.K, self.steps)
        self.steps += 1
        self.rate_sum += self.z.sum(axis=0)
        if self.learnable:
            self.ptraces.update(self.J, self.K)
        return self.z

    def synapses(self, kappa, L, weight=1.0):
        """This step's per-synapse work, once the learning signal L (or None) is known;
        ``weight`` is the step's weight w_t in the sequence sum."""
        for port in self.ports:
            port.synapse_step(port.traces, self.J, self.K, port.buffers, L, kappa, weight)
        if not self.learnable:
            return
        buffers = self.ports[0].buffers  # which sums are kept is the same for every port
        e = self.ptraces.eligibility(self.J, self.K)
        for name in self.learnable:
            if buffers.ebar is not None:
                self.pbar[name] *= kappa
                self.pbar[name] += e[name]
            elig = e[name] if buffers.ebar is None else self.pbar[name]
            if L is not None:
                self.pgrad[name] += (L * elig).sum(axis=0)
            if buffers.seq_sum is not None:
                self.psum[name] += weight * elig
            if buffers.reg_sum is not None:
                self.preg[name] += e[name].sum(axis=0)

    def pass_down(self, net: Network, L):
        """The learning signal of the layer below: L through dz/dI_p and W_in_p of each input."""
        below = None
        for port in self.layer.ports:
            if not port.n_in:
                continue
            gain = getattr(self.layer.code, "input_gain" + port.suffix)(self.J, self.K)
            part = (L * gain) @ net.params[self.layer.key("W_in" + port.suffix)]
            below = part if below is None else below + part
        return below if below is not None else self.xp.zeros((L.shape[0], self.layer.n_in), L.dtype)

    def settle(self, kappa):
        """Bring rows the kernels skipped at rest up to date (before any sum is read), and keep
        this pass's activity for choosing the next pass's path."""
        for port in self.ports:
            port.settle(self.K, kappa, self.steps)

    def gradients(self) -> dict:
        layer = self.layer
        grads = {}
        for port in self.ports:
            grads.update(layer.split_gradient(port.port, port.buffers.grad))
        for name in self.learnable:
            grads[layer.key(name)] = self.pgrad[name]
        return grads

    def zero(self):
        for port in self.ports:
            port.buffers.grad[...] = 0
        for name in self.learnable:
            self.pgrad[name][...] = 0


def synapse_step(traces, J: dict, K: dict, b: SynapseBuffers, L, kappa, weight=1.0, per_synapse=True):
    """One step of a layer's per-synapse work, through the generated Traces' methods; a
    backend may provide a fused version with the same arguments.

    eps_t = D_t eps_{t-1} + c_t u_t;  e_t = h_t . eps_t;  ebar = kappa ebar + e_t (if kept);
    grad += sum_b L e (or L ebar) when L is given; seq_sum += w e when kept (never with ebar);
    reg_sum += sum_b e_t for the firing-rate regulariser when kept. per_synapse: some trace is
    stored per synapse, and its update takes the scratch buffer.
    """
    if per_synapse:
        traces.update(J, K, b.u, b.scratch)
    else:
        traces.update(J, K, b.u)
    if b.reg_sum is not None:
        traces.accumulate(b.ones, J, K, b.reg_sum, b.product)
    if b.ebar is None:
        if L is not None:
            traces.accumulate(L, J, K, b.grad, b.product)
        if b.seq_sum is not None:
            traces.add_eligibility(J, K, b.seq_sum, b.scratch, weight)
        return
    b.ebar *= kappa
    traces.add_eligibility(J, K, b.ebar, b.scratch)
    if L is not None:
        np.einsum("bi,bij->ij", L, b.ebar, out=b.product)
        b.grad += b.product


def unsupported(loss: str, layers: int, update_every: int | None = None) -> str | None:
    """Why e-prop cannot train with these settings, or None if it can: a sequence loss
    (known only at the end) cannot send learning signals down several layers or online."""
    if loss_kind(loss).per_step:
        return None
    if layers > 1:
        return f"e-prop with several layers needs a per-step loss ({_PER_STEP_NAMES}), not {loss}"
    if update_every:
        return f"online updates (update_every) need a per-step loss ({_PER_STEP_NAMES}), not {loss}"
    return None


def eprop(net: Network, x, target, loss: str = "ce", reg: float = 0.0, rate_target: float = 0.01,
          update_every: int | None = None, apply=None, rate_scope=None) -> Result:
    """e-prop gradients of ``loss`` for the batch x (T, B, M) and its target.

    loss: a name in :data:`~symgrad.runtime.losses.LOSSES`.
    target: labels (B,) for the cross-entropies, values (T, B, K) for "mse".
    reg: weight of the firing-rate regulariser reg/2 * sum_i (rate_i - rate_target)^2.
    update_every, apply: truly online learning; every ``update_every`` steps the gradients
    so far are passed to ``apply(grads)`` (which changes the weights) and reset.
    rate_scope: where this batch is a slice of a larger one (MPI), ``rate_scope(sums, batch)``
    returns the whole batch's per-layer spike sums and size, whose rate the regulariser
    penalises; this slice's gradient is still its own mean, to be weighted by its size.
    """
    xp = net.xp
    x = xp.asarray(x, dtype=net.dtype)
    target = xp.asarray(target)
    steps, batch = x.shape[:2]
    kind = loss_kind(loss)
    sequence = not kind.per_step
    refused = unsupported(loss, len(net.layers), update_every)
    if refused:
        raise ValueError(refused)
    ebar = kind.keeps_filtered(net.kappa)
    weights = kind.sum_weights(net.kappa, steps)
    layers = [_LayerState(net, layer, batch, ebar, kind.keeps_sum, reg > 0) for layer in net.layers]
    top = layers[-1]
    readout = _Readout(net, batch, top.layer.n)
    y = xp.zeros((batch, net.n_out), net.dtype)
    y_sum = xp.zeros_like(y)
    total = 0.0
    for t in range(steps):
        inp = x[t]
        for state in layers:
            inp = state.step(net, inp)
        y = net.read(y, inp)
        readout.step(inp, sequence)
        y_sum += y
        if sequence:
            for state in layers:
                state.synapses(net.kappa, None, float(weights[t]))
            continue
        value, err = kind.value(y, kind.step_target(target, t), xp)
        total += value
        readout.add_gradient(err)
        L = net.learning_signal(err)
        for state in reversed(layers):
            state.synapses(net.kappa, L)
            if state.layer.index > 0:  # pass the signal down through dz/dI and W_in
                L = state.pass_down(net, L)
        if update_every and ((t + 1) % update_every == 0) and t + 1 < steps:
            for state in layers:
                state.settle(net.kappa)
            apply(_collect(layers, readout))
            for state in layers:
                state.zero()
            readout.zero()
    for state in layers:
        state.settle(net.kappa)
    reported = y_sum / steps  # what Result.readout holds
    if sequence:
        final = kind.reduce(y_sum, y, steps)
        total, err = kind.value(final, target, xp)
        readout.add_sequence_gradient(err, kind, steps)
        L = net.learning_signal(err)
        scale = kind.scale(steps)
        for port in top.ports:
            held = port.buffers.seq_sum if kind.keeps_sum else port.buffers.ebar
            port.buffers.grad += scale * xp.einsum("bi,bij->ij", L, held)
        for name in top.learnable:
            source = top.psum[name] if kind.keeps_sum else top.pbar[name]
            top.pgrad[name] += scale * (L * source).sum(axis=0)
        reported = final
    if reg > 0:
        total += _rate_regulariser(layers, reg, rate_target, steps, batch, rate_scope)
    grads = _collect(layers, readout)
    spikes = [float(state.rate_sum.sum()) for state in layers]
    return Result(float(total), grads, spikes, reported, overflowed(net, [state.s for state in layers]))


def sweeps_synapses(net: Network, loss: str) -> bool:
    """Whether e-prop keeps (batch, post, pre) arrays for this network and loss. Sweeping them
    dominates its step; without them the step is a few matrix products per layer."""
    kind = loss_kind(loss)
    return (kind.keeps_filtered(net.kappa) or kind.keeps_sum
            or any(port.plan.per_synapse for layer in net.layers for port in layer.ports))


def memory(net: Network, batch: int, loss: str, reg: float = 0.0) -> int:
    """Bytes a pass allocates for its traces and buffers (what ``_PortState`` allocates, as
    ``TracePlan.memory`` predicts it), beside the network's own arrays."""
    kind, itemsize = loss_kind(loss), net.dtype.itemsize
    flags = dict(filtered=kind.keeps_filtered(net.kappa), sequence_sum=kind.keeps_sum, regulariser=reg > 0)
    return sum(port.plan.memory(batch, layer.n, port.n_pre, itemsize, fused=hasattr(layer.code, "synapse_step"),
                                **flags)["total"]
               for layer in net.layers for port in layer.ports)


def _rate_regulariser(layers, reg, rate_target, steps, batch, scope=None) -> float:
    """Add reg (rate - target) d rate/dW to each layer's gradient; return the regulariser's value.
    The rate is the whole batch's (see ``rate_scope``); the gradient, this slice's mean."""
    sums, whole = [state.rate_sum for state in layers], batch
    if scope is not None:
        sums, whole = scope(sums, batch)
    value = 0.0
    for state, rate_sum in zip(layers, sums):
        excess = rate_sum / (steps * whole) - rate_target
        value += 0.5 * reg * float((excess * excess).sum())
        coef = reg * excess / (steps * batch)
        for port in state.ports:
            port.buffers.grad += coef[:, None] * port.buffers.reg_sum
        for name in state.learnable:
            state.pgrad[name] += coef * state.preg[name]
    return value


class _Readout:
    """The readout's gradients: y_t depends on W_out through the filtered output
    zbar_t = kappa zbar_{t-1} + z_t, and on b_out through bbar_t = kappa bbar_{t-1} + 1
    (each times the gain). Without readout weights there is nothing to keep."""

    def __init__(self, net: Network, batch: int, n: int):
        self.net = net
        self.grads = {}
        if net.readout:
            xp = net.xp
            self.zbar = xp.zeros((batch, n), net.dtype)
            self.zbar_sum = xp.zeros_like(self.zbar)
            self.bbar = self.bbar_sum = 0.0
            self.grads = {"W_out": xp.zeros_like(net.params["W_out"]),
                          "b_out": xp.zeros_like(net.params["b_out"])}

    def step(self, z, sequence: bool):
        if not self.grads:
            return
        kappa = self.net.kappa
        self.zbar = kappa * self.zbar + z
        self.bbar = kappa * self.bbar + 1.0
        if sequence:
            self.zbar_sum += self.zbar
            self.bbar_sum += self.bbar

    def add_gradient(self, err):
        """A per-step loss's share, from err = dL/dy_t."""
        if self.grads:
            drive = self.net.drive_error(err)
            self.grads["W_out"] += drive.T @ self.zbar
            self.grads["b_out"] += drive.sum(axis=0) * self.bbar

    def add_sequence_gradient(self, err, kind, steps: int):
        """A sequence loss's gradient, from err = dL/d(its reduced readout)."""
        if self.grads:
            drive = self.net.drive_error(err)
            self.grads["W_out"] += drive.T @ kind.reduce(self.zbar_sum, self.zbar, steps)
            self.grads["b_out"] += drive.sum(axis=0) * kind.reduce(self.bbar_sum, self.bbar, steps)

    def zero(self):
        for grad in self.grads.values():
            grad[...] = 0


def _collect(layers, readout: _Readout) -> dict:
    grads = {}
    for state in layers:
        grads.update(state.gradients())
    grads.update(readout.grads)
    return grads


__all__ = ["eprop", "sweeps_synapses", "Result", "PER_STEP", "SEQUENCE"]
