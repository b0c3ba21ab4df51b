"""Backpropagation through time: the reference gradient, and the baseline e-prop is measured against.

The forward pass stores, per step and layer, the presynaptic input u_t, the Jacobian entries
that change per step, and the top layer's output; the reverse pass applies the generated
``backward_step`` (transposed per-neuron Jacobians, same surrogate and stop_gradient
conventions as e-prop). Memory grows linearly with the sequence length.
"""
from __future__ import annotations

from .eprop import Result, overflowed
from .losses import loss_kind
from .network import Network


def bptt(net: Network, x, target, loss: str = "ce", reg: float = 0.0, rate_target: float = 0.01,
         rate_scope=None) -> Result:
    """Exact gradients (given the surrogate) of ``loss``; same arguments as ``eprop``."""
    kind = loss_kind(loss)
    xp = net.xp
    x = xp.asarray(x, dtype=net.dtype)
    target = xp.asarray(target)
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
    rate_grad = []
    sums, whole = rate_sum, batch
    if reg and rate_scope is not None:  # the rate of the whole batch this one is a slice of
        sums, whole = rate_scope(rate_sum, batch)
    for l, layer in enumerate(layers):
        excess = sums[l] / (steps * whole) - rate_target
        total += 0.5 * reg * float((excess * excess).sum())
        rate_grad.append(reg * excess / (steps * batch))

    readout_grads = {name: xp.zeros_like(net.params[name]) for name in ("W_out", "b_out") if net.readout}
    # dL/dI_t of each port; the generated backward_step gives one per model input
    g_I = [[xp.zeros((steps, batch, layer.n), net.dtype) for _ in layer.ports] for layer in layers]
    inputs = [[layer.model.input_names.index(port.input) for port in layer.ports] for layer in layers]
    g_params = [{q.name: xp.zeros(layer.n, net.dtype) for q in layer.model.learnable} for layer in layers]
    g_s = [{name: xp.zeros((batch, layer.n), net.dtype) for name in layer.code.STATES} for layer in layers]
    g_rec = [xp.zeros((batch, layer.n), net.dtype) for layer in layers]  # dL/dz_t via W_rec at t+1
    gy = xp.zeros((batch, net.n_out), net.dtype)
    for t in reversed(range(steps)):
        gy = dy[t] + net.kappa * gy
        if net.readout:
            drive = net.drive_error(gy)
            readout_grads["W_out"] += drive.T @ top_z[t]
            readout_grads["b_out"] += drive.sum(axis=0)
            gz = drive @ net.params["W_out"]
        else:
            gz = gy
        for l in reversed(range(len(layers))):
            layer = layers[l]
            gz = gz + g_rec[l] + rate_grad[l]
            J_next = J[l][t + 1] if t + 1 < steps else J[l][t]  # g_s is zero at the last step
            g_s[l], g_in = layer.code.backward_step(g_s[l], gz, J[l][t], J_next, K[l])
            g_in = (g_in,) if len(layer.model.inputs) == 1 else g_in
            for kept, index in zip(g_I[l], inputs[l]):
                kept[t] = g_in[index]
            if layer.model.learnable:
                for name, value in layer.code.param_gradients(g_s[l], gz, J[l][t], K[l]).items():
                    g_params[l][name] += value.sum(axis=0)
            g_rec[l] = _back(net, layer, g_I[l], t, "recurrent", g_rec[l])
            if l > 0:
                gz = _back(net, layer, g_I[l], t, "input", xp.zeros((batch, layer.n_in), net.dtype))

    grads = {}
    for l, layer in enumerate(layers):
        for port, g, kept in zip(layer.ports, g_I[l], u[l]):
            flat = g.reshape(steps * batch, layer.n).T @ kept.reshape(steps * batch, port.n_pre)
            grads.update(layer.split_gradient(port, flat))
        for name, value in g_params[l].items():
            grads[layer.key(name)] = value
    grads.update(readout_grads)
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


def _back(net: Network, layer, g_I: list, t: int, source: str, zero):
    """dL/d(the layer's input or its z_{t-1}) through every projection from ``source``:
    sum_p dL/dI_p,t W_p; ``zero`` where no projection carries it."""
    total = None
    for port, g in zip(layer.ports, g_I):
        for kind, name, _ in port.projections():
            if kind == source:
                part = g[t] @ net.params[layer.key(name)]
                total = part if total is None else total + part
    return zero if total is None else total
