"""Backpropagation through time: the reference gradient, and the baseline e-prop is measured against.

The forward pass stores, per step and layer, the presynaptic input u_t, the Jacobian entries
that change per step, and the top layer's output; the reverse pass applies the generated
``backward_step`` (transposed per-neuron Jacobians, same surrogate and stop_gradient
conventions as e-prop). Memory grows linearly with the sequence length.
"""
from __future__ import annotations

from . import fused, fused_bptt
from .eprop import Result, overflowed
from .losses import loss_kind
from .network import Network
from .projection import Source
from .readout import BackwardReadout
from .regulariser import rate_regulariser


def bptt(net: Network, x, target, loss: str = "ce", reg: float = 0.0, rate_target: float = 0.01,
         rate_scope=None, whole_pass: bool | None = None) -> Result:
    """Exact gradients (given the surrogate) of ``loss``; same arguments as ``eprop``. On a
    backend that can, the two sweeps run as one compiled call each (runtime/fused_bptt.py);
    ``whole_pass`` False: the loop below, step by step."""
    kind = loss_kind(loss)
    xp = net.xp
    x = xp.asarray(x, dtype=net.dtype)
    target = xp.asarray(target)
    if fused.chosen(whole_pass) and fused.available(net):
        return fused_bptt.bptt(net, x, target, kind, reg, rate_target, rate_scope)
    steps, batch = x.shape[:2]
    layers = net.layers
    p = [net.neuron_params(layer) for layer in layers]
    K = [net.fixed_entries(layer, p[l]) for l, layer in enumerate(layers)]
    s = [net.initial_state(layer, batch) for layer in layers]
    z = [xp.zeros((batch, layer.n), net.dtype) for layer in layers]
    u = [[xp.zeros((steps, batch, port.n_pre), net.dtype) for port in layer.ports] for layer in layers]
    J = [[None] * steps for _ in layers]
    top_z = xp.zeros((steps, batch, layers[-1].n), net.dtype)
    ys = xp.zeros((steps, batch, net.n_out), net.dtype)
    y = xp.zeros((batch, net.n_out), net.dtype)
    rate_sum = [xp.zeros(layer.n, net.dtype) for layer in layers]

    for t in range(steps):  # forward, storing what the reverse pass needs
        inp = x[t]
        for l, layer in enumerate(layers):
            for port, kept in zip(layer.ports, u[l]):
                layer.fill_presynaptic(port, kept[t], inp, z[l])
            currents = net.synaptic_input(layer, inp, z[l])
            s[l], z[l], J[l][t] = layer.code.neuron_step(s[l], *currents, p[l])
            rate_sum[l] += z[l].sum(axis=0)
            inp = z[l]
        top_z[t] = inp
        ys[t] = y = net.read(y, inp)

    # dL/dy_t from the loss alone (before the readout's leak carries it back in time)
    dy = xp.zeros_like(ys)
    if kind.per_step:
        total = 0.0
        for t in range(steps):
            value, dy[t] = kind.value(ys[t], kind.step_target(target, t), xp)
            total += value
        readout = ys.mean(axis=0)
    else:
        readout = kind.reduce_stack(ys)
        total, err = kind.value(readout, target, xp)
        kind.spread(err, dy)

    # firing-rate regulariser: reg/2 sum_i (rate_i - target)^2 adds a constant dL/dz per neuron
    regulariser, rate_grad = rate_regulariser(rate_sum, steps, batch, reg, rate_target, rate_scope)
    total += regulariser

    through_readout = BackwardReadout(net, batch)
    # dL/dI_t of each port; the generated backward_step gives one per model input
    g_I = [[xp.zeros((steps, batch, layer.n), net.dtype) for _ in layer.ports] for layer in layers]
    g_params = [{q.name: xp.zeros(layer.n, net.dtype) for q in layer.model.learnable} for layer in layers]
    g_s = [{name: xp.zeros((batch, layer.n), net.dtype) for name in layer.code.STATES} for layer in layers]
    g_rec = [xp.zeros((batch, layer.n), net.dtype) for layer in layers]  # dL/dz_t via W_rec at t+1
    for t in reversed(range(steps)):
        gz = through_readout.step(dy[t], top_z[t])
        for l in reversed(range(len(layers))):
            layer = layers[l]
            gz = gz + g_rec[l] + rate_grad[l]
            J_next = J[l][t + 1] if t + 1 < steps else J[l][t]  # g_s is zero at the last step
            g_s[l], g_in = layer.code.backward_step(g_s[l], gz, J[l][t], J_next, K[l])
            for kept, port in zip(g_I[l], layer.ports):
                kept[t] = g_in[port.input]
            if layer.model.learnable:
                for name, value in layer.code.param_gradients(g_s[l], gz, J[l][t], K[l]).items():
                    g_params[l][name] += value.sum(axis=0)
            g_I_t = [g[t] for g in g_I[l]]
            g_rec[l] = net.pass_back(layer, g_I_t, Source.RECURRENT, batch)
            if l > 0:
                gz = net.pass_back(layer, g_I_t, Source.INPUT, batch)

    grads = {}
    for l, layer in enumerate(layers):
        for port, g, kept in zip(layer.ports, g_I[l], u[l]):
            flat = g.reshape(steps * batch, layer.n).T @ kept.reshape(steps * batch, port.n_pre)
            grads.update(layer.split_gradient(port, port.synapses.on(xp).from_dense(flat)))
        for name, value in g_params[l].items():
            grads[layer.key(name)] = value
    grads.update(through_readout.grads)
    spikes = [float(r.sum()) for r in rate_sum]
    return Result(float(total), grads, spikes, readout, overflowed(net, s))


def history(net: Network, batch: int, steps: int) -> int:
    """Bytes of what the forward pass stores for the reverse one, which grows with the sequence:
    per step and layer, u of each port, the dynamic Jacobian entries and dL/dI of each port,
    and the top layer's output, readout and its gradient."""
    per_step = sum(batch * (sum(port.n_pre for port in layer.ports) + layer.n * (len(layer.plan.dynamic)
                                                                                 + len(layer.ports)))
                   for layer in net.layers)
    per_step += batch * (net.layers[-1].n + 2 * net.n_out)
    return per_step * steps * net.dtype.itemsize

