"""JAX peers: BPTT by jax.grad through lax.scan, and e-prop with every trace per synapse.

Both are written by hand to symgrad's ALIF (LIF when beta and the adaptation are absent):

    I_t = W_in x_t + W_rec z_{t-1}
    v_t = alpha v_{t-1} + I_t - v_th stop_gradient(z_{t-1})
    a_t = rho a_{t-1} + z_{t-1}
    z_t = H(v_t - v_th - beta a_t),  dH/dx = 0.3 / v_th max(0, 1 - |x| / v_th)
    y_t = kappa y_{t-1} + W_out z_t + b_out,  loss = sum_t CE(y_t, label) / batch

The e-prop peer is the seed paper's formulation (Bellec et al. 2020): eps_v and eps_a are both
(batch, post, pre) arrays, as a hand-written e-prop keeps them; symgrad's trace plan keeps
eps_v as a (batch, pre) filter of the input instead. Both functions are jitted once per peer.
float64 is switched on for the gradient check; arrays given as float32 stay float32.
"""
from __future__ import annotations

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    MISSING = None
except ImportError as err:  # the benchmark skips this peer and says why
    MISSING = f"jax is not installed ({err})"

NAME = "JAX"


def _spike(v_th: float):
    """Heaviside forward, symgrad's triangle surrogate backward."""
    @jax.custom_jvp
    def spike(x):
        return (x > 0).astype(x.dtype)

    @spike.defjvp
    def _jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        psi = 0.3 / v_th * jnp.maximum(0.0, 1.0 - jnp.abs(x) / v_th)
        return spike(x), psi.astype(x.dtype) * dx

    return spike


def _step_loss(y, labels):
    """CE of one step, summed over the batch and divided by it, and dL/dy."""
    batch = y.shape[0]
    logp = jax.nn.log_softmax(y)
    onehot = jax.nn.one_hot(labels, y.shape[1], dtype=y.dtype)
    return -(onehot * logp).sum() / batch, (jnp.exp(logp) - onehot) / batch


class Peer:
    """JAX gradients of one network's loss; built from a symgrad Network's values."""

    def __init__(self, net):
        from .common import host_params, neuron_constants

        self.c = neuron_constants(net)
        self.params = {k: jnp.asarray(v) for k, v in host_params(net).items()}
        self._bptt = jax.jit(jax.value_and_grad(self._loss))
        self._eprop = jax.jit(self._eprop_pass)

    # -- BPTT ----------------------------------------------------------------------------
    def _loss(self, params, x, labels):
        c = self.c
        spike = _spike(c["v_th"])
        batch, n = x.shape[1], params["W_in"].shape[0]
        zeros = jnp.zeros((batch, n), x.dtype)

        def step(carry, x_t):
            v, a, z, y = carry
            I = x_t @ params["W_in"].T
            if c["recurrent"]:
                I = I + z @ params["W_rec"].T
            v = c["alpha"] * v + I - c["v_th"] * lax.stop_gradient(z)
            if c["adaptive"]:
                a = c["rho"] * a + z
            z = spike(v - c["v_th"] - c["beta"] * a)
            y = c["kappa"] * y + z @ params["W_out"].T + params["b_out"]
            return (v, a, z, y), _step_loss(y, labels)[0]

        y0 = jnp.zeros((batch, params["W_out"].shape[0]), x.dtype)
        _, losses = lax.scan(step, (zeros, zeros, zeros, y0), x)
        return losses.sum()

    def bptt(self, x, labels):
        loss, grads = self._bptt(self.params, jnp.asarray(x), jnp.asarray(labels))
        return float(loss), {k: np.asarray(g) for k, g in grads.items()}

    # -- e-prop, every trace per synapse -------------------------------------------------
    def _eprop_pass(self, params, x, labels):
        c = self.c
        steps, batch = x.shape[:2]
        n, n_out = params["W_in"].shape[0], params["W_out"].shape[0]
        dtype = x.dtype
        W = jnp.concatenate([params["W_in"], params["W_rec"]], 1) if c["recurrent"] else params["W_in"]
        synapses = jnp.zeros((batch, n, W.shape[1]), dtype)
        filtered = c["kappa"] != 0

        def psi(value):
            return 0.3 / c["v_th"] * jnp.maximum(0.0, 1.0 - jnp.abs(value) / c["v_th"])

        def step(carry, x_t):
            v, a, z, y, eps_v, eps_a, ebar, zbar, bbar, g, g_out, g_b, total = carry
            u = jnp.concatenate([x_t, z], 1) if c["recurrent"] else x_t
            old = psi(v - c["v_th"] - c["beta"] * a)  # dz_{t-1}/d(argument), for D_av and D_aa
            v = c["alpha"] * v + u @ W.T - c["v_th"] * z
            if c["adaptive"]:
                eps_a = old[:, :, None] * eps_v + (c["rho"] - c["beta"] * old)[:, :, None] * eps_a
                a = c["rho"] * a + z
            eps_v = c["alpha"] * eps_v + u[:, None, :]
            arg = v - c["v_th"] - c["beta"] * a
            z = (arg > 0).astype(dtype)
            h = psi(arg)[:, :, None]
            e = h * (eps_v - c["beta"] * eps_a) if c["adaptive"] else h * eps_v
            if filtered:
                ebar = c["kappa"] * ebar + e
            y = c["kappa"] * y + z @ params["W_out"].T + params["b_out"]
            value, err = _step_loss(y, labels)
            zbar = c["kappa"] * zbar + z
            bbar = c["kappa"] * bbar + 1.0
            L = err @ params["W_out"]
            g = g + jnp.einsum("bi,bij->ij", L, ebar if filtered else e)
            return (v, a, z, y, eps_v, eps_a, ebar, zbar, bbar, g, g_out + err.T @ zbar,
                    g_b + err.sum(0) * bbar, total + value), None

        state = jnp.zeros((batch, n), dtype)
        carry = (state, state, state, jnp.zeros((batch, n_out), dtype), synapses,
                 synapses if c["adaptive"] else jnp.zeros((), dtype),
                 synapses if filtered else jnp.zeros((), dtype), state, jnp.zeros((), dtype),
                 jnp.zeros(W.shape, dtype), jnp.zeros_like(params["W_out"]),
                 jnp.zeros_like(params["b_out"]), jnp.zeros((), dtype))
        carry, _ = lax.scan(step, carry, x)
        g, g_out, g_b, total = carry[9:]
        grads = {"W_in": g[:, :params["W_in"].shape[1]], "W_out": g_out, "b_out": g_b}
        if c["recurrent"]:
            grads["W_rec"] = g[:, params["W_in"].shape[1]:]
        return total, grads

    def eprop(self, x, labels):
        loss, grads = self._eprop(self.params, jnp.asarray(x), jnp.asarray(labels))
        return float(loss), {k: np.asarray(g) for k, g in grads.items()}
