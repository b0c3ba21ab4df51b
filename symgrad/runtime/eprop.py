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

from dataclasses import dataclass


from . import fused
from .losses import PER_STEP, SEQUENCE, loss_kind
from .layer_code import SynapseBuffers
from .network import Layer, Network, Port
from .projection import Source
from .readout import ForwardReadout
from .regulariser import rate_regulariser

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
    """The traces and buffers of one synaptic input of a layer (a one-input layer has one).

    The event policy: where the port's kernels can skip rows at rest and the step sweeps
    per-synapse arrays, each step skips them when fewer than EVENTS_CROSSOVER of its rows are
    active (measured on that step's entries), and runs the dense step otherwise. Both are exact;
    the choice depends on the step alone, never on an earlier pass, so a run resumed from a
    checkpoint takes the same path as one that never stopped.
    """

    def __init__(self, net: Network, layer: Layer, port: Port, batch: int, ebar: bool, seq_sum: bool,
                 reg: bool):
        xp, dtype = net.xp, net.dtype
        self.port, self.code = port, layer.code.ports[port.input]
        synapses = port.synapses.on(xp)
        self.traces = self.code.traces(batch, layer.n, port.n_pre, dtype, synapses)
        self.events = (net.events and self.code.events and not (ebar and seq_sum)
                       and bool(port.plan.per_synapse or ebar or seq_sum))
        self.skip = False  # this step leaves its rows at rest for later
        # A fused kernel needs no scratch; the plan says what else to allocate (and predicts it).
        shapes = port.plan.buffers(batch, layer.n, port.n_pre, filtered=ebar, sequence_sum=seq_sum,
                                   regulariser=reg, fused=self.code.fused, events=self.events,
                                   nnz=synapses.count)
        arrays = {name: xp.zeros(shape, dtype) for name, shape in shapes.items()}
        if reg:
            arrays["ones"][...] = 1
        if self.events:
            arrays["last"][...] = -1  # every row is up to date before the first step
        self.buffers = SynapseBuffers(u=xp.zeros((batch, port.n_pre), dtype), synapses=synapses, **arrays)

    def step(self, layer: Layer, inp, z_prev, J, K, steps: int):
        layer.fill_presynaptic(self.port, self.buffers.u, inp, z_prev)
        self.buffers.step = steps
        if self.events:
            self.skip = self.code.active_fraction(J, K) < EVENTS_CROSSOVER

    def synapses(self, J, K, L, kappa, weight):
        self.code.synapse_step(self.traces, J, K, self.buffers, L, kappa, weight, skip_rest=self.skip)

    def settle(self, K, kappa):
        self.code.settle(self.traces, K, self.buffers, kappa)


class _LayerState:
    """The buffers of one layer for one batch: allocated once, reused every step."""

    def __init__(self, net: Network, layer: Layer, batch: int, ebar: bool, seq_sum: bool, reg: bool):
        xp, dtype, code = net.xp, net.dtype, layer.code
        self.layer = layer
        self.p = net.neuron_params(layer)
        self.K = net.fixed_entries(layer, self.p)
        self.s = net.initial_state(layer, batch)
        self.z = xp.zeros((batch, layer.n), dtype)
        self.ports = [_PortState(net, layer, port, batch, ebar, seq_sum, reg) for port in layer.ports]
        self.rate_sum = xp.zeros(layer.n, dtype)
        self.learnable = [p.name for p in layer.model.learnable]
        if self.learnable:
            self.ptraces = code.param_traces(batch, layer.n, dtype)
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
            port.synapses(self.J, self.K, L, kappa, weight)
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
        ports = self.layer.code.ports
        signals = [L * ports[port.input].input_gain(self.J, self.K) if port.n_in else None
                   for port in self.layer.ports]
        return net.pass_back(self.layer, signals, Source.INPUT, L.shape[0])

    def add_regulariser(self, coefficient):
        """Add the rate regulariser's gradient, its coefficient dL/dz times the sum of dz/dW."""
        for port in self.ports:
            port.buffers.grad += port.buffers.synapses.per_post(coefficient) * port.buffers.reg_sum
        for name in self.learnable:
            self.pgrad[name] += coefficient * self.preg[name]

    def settle(self, kappa):
        """Bring rows the kernels skipped at rest up to date (before any sum is read)."""
        for port in self.ports:
            port.settle(self.K, kappa)

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
          update_every: int | None = None, apply=None, rate_scope=None, whole_pass: bool | None = None) -> Result:
    """e-prop gradients of ``loss`` for the batch x (T, B, M) and its target.

    loss: a name in :data:`~symgrad.runtime.losses.LOSSES`.
    target: labels (B,) for the cross-entropies, values (T, B, K) for "mse".
    reg: weight of the firing-rate regulariser reg/2 * sum_i (rate_i - rate_target)^2.
    update_every, apply: truly online learning; every ``update_every`` steps the gradients
    so far are passed to ``apply(grads)`` (which changes the weights) and reset.
    rate_scope: where this batch is a slice of a larger one (MPI), ``rate_scope(sums, batch)``
    returns the whole batch's per-layer spike sums and size, whose rate the regulariser
    penalises; this slice's gradient is still its own mean, to be weighted by its size.
    whole_pass: on a backend that can (``Backend.whole_pass``), run the steps as one compiled
    call per segment between updates (runtime/fused.py); False: in Python, step by step; None:
    as the environment says (``fused.SWITCH``, on unless set to 0).
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
    weights = kind.sum_weights(net.kappa, steps) if sequence else None  # (T,): only a sequence loss reads them
    layers = [_LayerState(net, layer, batch, ebar, kind.keeps_sum, reg > 0) for layer in net.layers]
    top = layers[-1]
    readout = ForwardReadout(net, batch, top.layer.n)
    run = _whole_pass if fused.chosen(whole_pass) and fused.available(net) else _step_by_step
    total, y, y_sum = run(net, layers, readout, x, target, kind, weights, update_every, apply)
    for state in layers:
        state.settle(net.kappa)
    reported = y_sum / steps  # what Result.readout holds
    if sequence:
        final = kind.reduce(y_sum, y, steps)
        total, err = kind.value(final, target, xp)
        readout.add_sequence(err, kind, steps)
        L = net.learning_signal(err)
        scale = kind.scale(steps)
        for port in top.ports:
            held = port.buffers.seq_sum if kind.keeps_sum else port.buffers.ebar
            port.buffers.grad += scale * port.buffers.synapses.contract(xp, L, held)
        for name in top.learnable:
            source = top.psum[name] if kind.keeps_sum else top.pbar[name]
            top.pgrad[name] += scale * (L * source).sum(axis=0)
        reported = final
    if reg > 0:
        value, coefficients = rate_regulariser([state.rate_sum for state in layers], steps, batch, reg,
                                               rate_target, rate_scope)
        total += value
        for state, coefficient in zip(layers, coefficients):
            state.add_regulariser(coefficient)
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
    return sum(port.plan.memory(batch, layer.n, port.n_pre, itemsize, fused=layer.code.ports[port.input].fused,
                                nnz=port.synapses.count, **flags)["total"]
               for layer in net.layers for port in layer.ports)


def _step_by_step(net, layers, readout, x, target, kind, weights, update_every, apply):
    """e-prop's loop over the steps, in Python between the kernels: the reference. Returns the
    loss summed over steps (0 for a sequence loss), the last readout and the readouts' sum."""
    xp = net.xp
    steps, batch = x.shape[:2]
    sequence = not kind.per_step
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
        readout.add_step(err)
        L = net.learning_signal(err)
        for state in reversed(layers):
            state.synapses(net.kappa, L)
            if state.layer.index > 0:  # pass the signal down through dz/dI and W_in
                L = state.pass_down(net, L)
        if update_every and ((t + 1) % update_every == 0) and t + 1 < steps:
            for state in layers:
                state.settle(net.kappa)
            _update(layers, readout, apply)
    return total, y, y_sum


def _whole_pass(net, layers, readout, x, target, kind, weights, update_every, apply):
    """``_step_by_step`` compiled (runtime/fused.py): one call per segment between online
    updates, which settles the rows left at rest at its end."""
    driver = fused.driver(net, kind)
    bound = fused.sources(net, layers, readout, x, target, kind, weights, net.kappa, EVENTS_CROSSOVER)
    steps = x.shape[0]
    every = update_every or steps
    for start in range(0, steps, every):
        stop = min(start + every, steps)
        driver.run(bound, start, stop)
        if stop < steps:
            _update(layers, readout, apply)
            fused.weights_changed(bound)
    total = bound[fused.TOTAL][0] if kind.per_step else 0.0
    return float(total), bound[fused.Y], bound[fused.Y_SUM]


def _update(layers, readout: ForwardReadout, apply) -> None:
    """An online update: the gradients so far to ``apply``, then summed from zero again."""
    apply(_collect(layers, readout))
    for state in layers:
        state.zero()
    readout.zero()


def _collect(layers, readout: ForwardReadout) -> dict:
    grads = {}
    for state in layers:
        grads.update(state.gradients())
    grads.update(readout.grads)
    return grads


__all__ = ["eprop", "sweeps_synapses", "Result", "PER_STEP", "SEQUENCE"]
