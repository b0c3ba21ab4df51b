"""BPTT's whole pass as two compiled calls on the Numba backend (``symgrad.bptt_pass``), and
inference as one.

``bptt`` allocates what the pass keeps (u_t of each input, the dynamic Jacobian entries, the last
layer's output and the readout, every step), binds it to the driver's argument keys, and runs
the forward sweep, the loss, the regulariser and the backward sweep, which sums each weight's
gradient step by step; runtime/bptt.py is the reference it is tested against. ``forward`` runs
the forward sweep alone and keeps nothing for a backward one: ``Network.forward``'s readout.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import bptt_pass, kernels as roles
from ..passes import DATA, LAYER, PORT, READOUT
from . import fused
from .eprop import Result, overflowed
from .losses import LABELS
from .projection import READOUT as READOUT_PARAMS
from .regulariser import rate_regulariser


def bptt(net, x, target, kind, reg: float, rate_target: float, rate_scope) -> Result:
    """``runtime.bptt.bptt``'s gradients, its sweeps compiled (x and target as NumPy arrays)."""
    driver = fused.driver(net, kind, fused.BPTT)
    steps, batch = x.shape[:2]
    found = _sources(net, x, target, kind, steps, batch)
    driver.call("bptt_forward", found)
    ys, dy = found[(READOUT, "ys")], found[(READOUT, "dy")]
    if kind.per_step:
        total, readout = float(found[(READOUT, "total")][0]), ys.mean(axis=0)
    else:
        readout = np.array(kind.reduce_stack(ys))  # a copy: ys is the next pass's too
        total, err = kind.value(readout, target, np)
        kind.spread(err, dy)
    rates = [found[(LAYER, l, "pass", "rate")] for l in range(len(net.layers))]
    value, coefficients = rate_regulariser(rates, steps, batch, reg, rate_target, rate_scope)
    for l, coefficient in enumerate(coefficients):
        found[(LAYER, l, "pass", "rate_grad")] = np.asarray(coefficient, net.dtype) if reg else None
    driver.call("bptt_backward", found)

    grads = {}
    for l, layer in enumerate(net.layers):
        for j, port in enumerate(layer.ports):
            dense = np.ascontiguousarray(found[(PORT, l, j, "pass", "grad_T")].T)
            grads.update(layer.split_gradient(port, port.synapses.on(np).from_dense(dense)))
        for p in layer.model.learnable:
            grads[layer.key(p.name)] = found[(LAYER, l, "pass", ("pgrad", p.name))]
    if net.readout:
        grads |= {name: found[(READOUT, f"g_{name}")] for name in READOUT_PARAMS}
    states = [{s: found[(LAYER, l, roles.NEW_STATE, s)] for s in layer.code.STATES}
              for l, layer in enumerate(net.layers)]
    return Result(total + value, grads, [float(r.sum()) for r in rates], readout, overflowed(net, states))


def forward(net, x):
    """The readout y_t (T, batch, K), or None without one, and the last layer's output z_t
    (T, batch, n) of every step: ``Network.forward``'s, the steps compiled (x a NumPy array)."""
    driver = fused.driver(net, None, fused.BPTT)
    steps, batch = x.shape[:2]
    found = {(DATA, "x"): np.ascontiguousarray(x, dtype=net.dtype), (DATA, "kappa"): float(net.kappa)}
    found |= _readout_sources(net, batch) | {
        (READOUT, "ys"): np.empty((steps, batch, net.n_out), net.dtype),
        (READOUT, "top_z"): np.empty((steps, batch, net.layers[-1].n), net.dtype)}
    for l, layer in enumerate(net.layers):
        found |= _layer_sources(net, l, layer, batch, lambda name, width: np.empty((batch, width), net.dtype))
    driver.call(bptt_pass.INFERENCE, found)
    return (found[(READOUT, "ys")] if net.readout else None), found[(READOUT, "top_z")]


class _EveryStep:
    """The arrays that hold every step, kept from one pass to the next of the same sizes: each is
    written whole before it is read (but dL/dy, zeroed here), and a fresh array of megabytes
    costs more in page faults than the forward sweep itself (6 ms against 3 ms on the FSDD
    network). One set is kept, the last pass's, by the thread that ran it: two threads never
    share one."""

    kept: dict = {}

    @classmethod
    def arrays(cls, key: tuple) -> dict:
        if cls.kept.get("key") != key:
            cls.kept = {"key": key}
        return cls.kept

    @classmethod
    def get(cls, kept: dict, name, shape: tuple, dtype):
        if name not in kept:
            kept[name] = np.empty(shape, dtype)
        return kept[name]


def release() -> None:
    """Drop the every-step arrays kept from the last pass (the next allocates them anew)."""
    _EveryStep.kept = {}


def _sources(net, x, target, kind, steps: int, batch: int) -> dict:
    """What each of the driver's argument keys binds for one pass."""
    dtype, n_out = net.dtype, net.n_out
    top = net.layers[-1].n
    sizes = tuple((layer.n, tuple(port.n_pre for port in layer.ports), tuple(layer.code.DYNAMIC))
                  for layer in net.layers)
    every = _EveryStep.arrays((threading.get_ident(), steps, batch, n_out, np.dtype(dtype).str, sizes))
    dy = _EveryStep.get(every, "dy", (steps, batch, n_out), dtype)
    dy[...] = 0
    found = {(DATA, "x"): np.ascontiguousarray(x), (DATA, "kappa"): float(net.kappa)}
    if kind.per_step:
        found[(DATA, "labels") if kind.target == LABELS else (DATA, "values")] = np.ascontiguousarray(
            target, dtype=np.int64 if kind.target == LABELS else dtype)
    found |= {(READOUT, "ys"): _EveryStep.get(every, "ys", (steps, batch, n_out), dtype),
              (READOUT, "top_z"): _EveryStep.get(every, "top_z", (steps, batch, top), dtype),
              (READOUT, "dy"): dy, (READOUT, "total"): np.zeros(1),
              (READOUT, "filtered"): np.zeros((batch, n_out), dtype)}
    found |= _readout_sources(net, batch)
    if net.readout:
        found |= {(READOUT, "drive_error"): np.zeros((batch, n_out), dtype)}
        found |= {(READOUT, f"g_{name}"): np.zeros_like(net.params[name]) for name in READOUT_PARAMS}
    for l, layer in enumerate(net.layers):
        found |= _layer_sources(net, l, layer, batch,
                                lambda name, width, l=l: _EveryStep.get(every, (l, name), (steps, batch, width), dtype))
    return found


def _readout_sources(net, batch: int) -> dict:
    """The readout's weights, y_t and its scratch (the forward sweep's)."""
    found = {(READOUT, "y"): np.zeros((batch, net.n_out), net.dtype)}
    if net.readout:
        found |= {(READOUT, "W_out"): net.params["W_out"], (READOUT, "b_out"): net.params["b_out"],
                  (READOUT, "gain"): net.gain, (READOUT, "offset"): net.offset,
                  (READOUT, "drive"): np.zeros(net.n_out, net.dtype)}
    return found


def _layer_sources(net, l: int, layer, batch: int, every_step) -> dict:
    """The arrays of layer l; ``every_step(name, width)`` gives those the backward sweep reads,
    u_t of each input and the dynamic entries: (T, batch, width) where kept."""
    dtype, n, code = net.dtype, layer.n, layer.code
    p = net.neuron_params(layer)
    model = layer.model
    s = net.initial_state(layer, batch)
    by_role = {
        roles.STATE: s, roles.NEW_STATE: {name: np.empty((batch, n), dtype) for name in code.STATES},
        roles.OUTPUT: {"z": np.zeros((batch, n), dtype)}, roles.PARAM: code.kernel_params(p, dtype, n),
        roles.CURRENT: {name: np.zeros((batch, n), dtype) for name in model.input_names},
        roles.FIXED: net.fixed_entries(layer, p),
        roles.DYNAMIC_ENTRY: {name: every_step(name, n) for name in code.DYNAMIC},
        roles.BUFFER: {"grad_z": np.zeros((batch, n), dtype)},
        roles.ADJOINT: {name: np.zeros((batch, n), dtype) for name in [*code.STATES, *model.input_names]},
        roles.PARAM_GRADIENT: {q.name: np.zeros((batch, n), dtype) for q in model.learnable},
    }
    found = {(LAYER, l, role, of): value for role, values in by_role.items() for of, value in values.items()}
    own = {"rate": np.zeros(n, dtype), "back": np.zeros((batch, n), dtype)}
    own |= {("state", name): s[name] for name in code.STATES}
    own |= {("pgrad", q.name): np.zeros(n, dtype) for q in model.learnable}
    found |= {(LAYER, l, "pass", what): value for what, value in own.items()}
    for j, port in enumerate(layer.ports):
        found[(PORT, l, j, roles.BUFFER, "u")] = every_step(("u", port.input), port.n_pre)
        found[(PORT, l, j, "pass", "grad_T")] = np.zeros((port.n_pre, n), dtype)
        found |= fused.weight_sources(net, l, j, port, [])
    return found


__all__ = ["bptt", "forward", "release"]
