"""e-prop's whole pass as one compiled call on the Numba backend (``symgrad.passes``).

``driver(net)`` renders the driver for the network's shape (once per shape and process), binds
each layer's kernel module to it and points Numba's cache for it at symgrad's; ``Run`` binds
the arrays of one pass (runtime/eprop.py's layer, port and readout states) to the driver's
arguments by their keys, and runs a segment of steps at a time. The driver's cache folder is
named by a hash of its text and of the code it calls, so a change to a layer's kernels or to
``fused_ops`` compiles it again.
"""
from __future__ import annotations

import inspect
import os
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import bptt_pass, kernels as roles, passes, render, store
from ..model import ModelError
from ..printers import WHOLE_PASS
from . import backends, compiled
from .kernel_layer import KernelLayer
from .losses import LABELS
from .projection import Source

_CALLEE = re.compile(r"CPUDispatcher\(<function (?:[\w<>]+\.)*(\w+) at")  # a kernel the driver calls, in Numba's message
TOTAL, Y, Y_SUM = ((passes.READOUT, name) for name in ("total", "y", "y_sum"))  # what a pass reads back
_DRIVERS: dict = {}
_TRANSPOSED = "transposed"  # (copy, weight, order): the weights the driver reads reordered (_reordered)
_OPS_CACHED: list = []


def shape_of(net, kind) -> passes.NetworkShape:
    """The network's shape, and what the loss ``kind`` asks of each step (None: no loss, as a
    sequence loss asks nothing of a step)."""
    loss = passes.SEQUENCE if kind is None or not kind.per_step else (
        passes.CROSS_ENTROPY if kind.target == LABELS else passes.SQUARED_ERROR)
    layers = []
    for layer in net.layers:
        code = layer.code.generated
        ports = tuple(passes.PortShape(port.input, tuple(s.value for s in port.sources()),
                                       tuple(p.source.value for p in port.projections if p.key in net.connectivity))
                      for port in layer.ports)
        layers.append(passes.LayerShape(code, ports))
    return passes.NetworkShape(tuple(layers), net.readout, loss)


SWITCH = "SYMGRAD_WHOLE_PASS"  # the environment variable; 0: e-prop runs its Python loop on the Numba kernels too


def chosen(whole_pass: bool | None) -> bool:
    """``whole_pass``, or where None, what the environment says (on by default)."""
    return os.environ.get(SWITCH, "1") != "0" if whole_pass is None else whole_pass


def available(net) -> bool:
    """Whether the network's layers run generated Numba kernels, which the driver calls."""
    return backends.get(net.backend).whole_pass and all(isinstance(l.code, KernelLayer) for l in net.layers)


@dataclass(frozen=True)
class Printed:
    """One kind of driver: how its text and its functions' arguments are printed for a shape."""

    label: str  # names its cache folders, and it in messages
    filename: str  # under generated/<model>/ where committed
    text: Callable  # NetworkShape -> the module's text
    args: Callable  # NetworkShape -> {function: [PassArg]}


EPROP = Printed("eprop_pass", passes.FILENAME, render.driver,
                lambda shape: {"eprop_steps": passes.driver_args(shape)})
BPTT = Printed("bptt_pass", bptt_pass.FILENAME, render.bptt_driver, bptt_pass.driver_args)


class Driver:
    """The compiled driver of one network shape and its arguments' descriptions."""

    def __init__(self, shape: passes.NetworkShape, net, printed: Printed = EPROP):
        from . import fused_ops, numba_layer  # Numba, imported by what runs it only

        self.models = list(dict.fromkeys(repr(layer.code.model.name) for layer in shape.layers))
        self.text = printed.text(shape)
        self.args = printed.args(shape)
        layer_texts = "".join(layer.code.texts[WHOLE_PASS] for layer in shape.layers)
        name = store.code_name(printed.label, self.text + layer_texts + _ops_source())
        owner = shape.layers[0].code.model.name if len(shape.layers) == 1 else "network"
        path = store.committed_or_cached(owner, printed.filename, self.text)
        self.module = compiled.execute(path, self.text, f"{printed.label}-{name}")
        self.module.bind([layer.code.kernels.module for layer in net.layers])
        if not _OPS_CACHED:
            numba_layer.cache_kernels(fused_ops, store.code_name("fused_ops", _ops_source()))
            _OPS_CACHED.append(True)
        numba_layer.cache_kernels(self.module, name)

    def run(self, sources: dict, start: int, stop: int) -> None:
        """e-prop's steps start .. stop - 1."""
        sources[(passes.DATA, "start")], sources[(passes.DATA, "stop")] = start, stop
        self.call("eprop_steps", sources)

    def call(self, function: str, sources: dict) -> None:
        """The driver's ``function``, each argument bound to what ``sources`` holds for its key."""
        from numba.core.errors import NumbaError, NumbaPerformanceWarning

        from .numba_layer import reason

        try:
            with warnings.catch_warnings():  # parallel=True only for the cache (see the template)
                warnings.simplefilter("ignore", NumbaPerformanceWarning)
                getattr(self.module, function)(*[sources[arg.key] for arg in self.args[function]])
        except NumbaError as err:
            callee = _CALLEE.findall(str(err))
            what = f"its {callee[-1]} kernel" if callee else f"the whole-pass driver's {function}"
            raise ModelError(f"model {' and '.join(self.models)}: Numba cannot compile {what} "
                             f"({reason(err)}); run it with --backend numpy") from None


def _ops_source() -> str:
    from . import fused_ops

    return inspect.getsource(fused_ops)


def driver(net, kind, printed: Printed = EPROP) -> Driver:
    """The compiled driver (e-prop's, or BPTT's) for ``net`` and the loss ``kind`` (or None)."""
    shape = shape_of(net, kind)
    key = (printed.label, tuple((id(layer.code), layer.ports) for layer in shape.layers), shape.readout, shape.loss)
    if key not in _DRIVERS:
        _DRIVERS[key] = Driver(shape, net, printed)
    return _DRIVERS[key]


def sources(net, layers, readout, x, target, kind, weights, kappa: float, crossover: float) -> dict:
    """What each of the driver's argument keys binds, for one pass: the arrays e-prop's layer,
    port and readout states hold (``_LayerState``, ``_PortState``, ``ForwardReadout``), and
    the few the driver needs beside them, allocated here once per pass."""
    xp, dtype = net.xp, net.dtype
    steps, batch = x.shape[:2]
    per_step = kind.per_step
    found = {(passes.DATA, "x"): np.ascontiguousarray(x), (passes.DATA, "kappa"): float(kappa),
             (passes.DATA, "crossover"): float(crossover)}
    if not per_step:
        found[(passes.DATA, "seq_weights")] = np.asarray(weights, dtype=dtype)
    elif kind.target == LABELS:
        found[(passes.DATA, "labels")] = np.ascontiguousarray(target, dtype=np.int64)
    else:
        found[(passes.DATA, "values")] = np.ascontiguousarray(target, dtype=dtype)
    n_out = net.n_out
    R = passes.READOUT
    found |= {(R, "y"): xp.zeros((batch, n_out), dtype), (R, "y_sum"): xp.zeros((batch, n_out), dtype),
              (R, "err"): xp.zeros((batch, n_out), dtype), (R, "total"): np.zeros(1),
              (R, "drive"): xp.zeros(n_out, dtype)}
    if net.readout:
        found |= {(R, "W_out"): net.params["W_out"], (R, "b_out"): net.params["b_out"], (R, "gain"): net.gain,
                  (R, "offset"): net.offset, (R, "feedback"): np.ascontiguousarray(net.feedback_matrix()),
                  (R, "zbar"): readout.zbar, (R, "zbar_sum"): None if per_step else readout.zbar_sum,
                  (R, "bbar"): readout.bbar, (R, "bbar_sum"): readout.bbar_sum,
                  (R, "g_W_out"): readout.grads["W_out"], (R, "g_b_out"): readout.grads["b_out"]}
    found[_TRANSPOSED] = []
    for state in layers:
        found |= _layer_sources(net, state, batch, dtype, found[_TRANSPOSED])
    return found


def weights_changed(bound: dict) -> None:
    """Copy the weights into their transposes (a sparse one's: column by column) again, after an
    online update changed them."""
    for copy, weight, order in bound[_TRANSPOSED]:
        copy[...] = _reordered(weight, order)


def _reordered(weight, order):
    """What the synaptic input reads a weight as: a dense one (n, pre) transposed, a row per
    input; a sparse one (nnz,) in ``order``, its synapses column by column."""
    return weight.T if order is None else weight[order]


def weight_sources(net, l: int, j: int, port, transposed: list) -> dict:
    """The weights of input j of layer l, as the drivers read them: each projection's own (the
    pass down or back), and the transposed copy (a sparse one's: column by column, with its
    indices) the synaptic input reads, listed in ``transposed``."""
    from .numba_layer import unsigned

    found = {}
    for projection in port.projections:
        word, weight = passes.SOURCES[projection.source.value], net.params[projection.key]
        found[(passes.PORT, l, j, "pass", word)] = weight
        if projection.source is Source.BIAS:
            continue
        synapses = net.connectivity.get(projection.key)
        order = None if synapses is None else synapses.by_col
        copy = np.ascontiguousarray(_reordered(weight, order))  # what the synaptic input reads
        transposed.append((copy, weight, order))
        if synapses is None:
            found[(passes.PORT, l, j, "pass", f"{word}_T")] = copy
            continue
        indices = {"pre_start": synapses.col_start, "post": synapses.post[order],  # passes.BY_PRE
                   "row_start": synapses.row_start, "col": synapses.col}  # passes.BY_POST
        found[(passes.PORT, l, j, "pass", f"{word}_by_pre")] = copy
        found |= {(passes.PORT, l, j, "pass", f"{word}_{what}"): unsigned(value) for what, value in indices.items()}
    return found


def _layer_sources(net, state, batch: int, dtype, transposed: list) -> dict:
    layer, code, l = state.layer, state.layer.code, state.layer.index
    xp, n = net.xp, layer.n
    J = {name: xp.zeros((batch, n), dtype) for name in code.DYNAMIC}
    K = state.K
    decays = K.get(roles.DECAY, {})
    currents = {name: xp.zeros((batch, n), dtype) for name in layer.model.input_names}
    ports0 = state.ports[0].buffers
    found = {}
    by_role = {roles.STATE: state.s, roles.NEW_STATE: {s: xp.empty((batch, n), dtype) for s in code.STATES},
               roles.OUTPUT: {"z": state.z}, roles.PARAM: code.kernel_params(state.p, dtype, n),
               roles.CURRENT: currents, roles.FIXED: K, roles.DYNAMIC_ENTRY: J,
               roles.DECAY: {s: dtype.type(v) for s, v in decays.items()}}
    if state.learnable:
        by_role[roles.PARAM_TRACE] = state.ptraces.arrays
        by_role[roles.PARAM_ELIGIBILITY] = state.ptraces.eligibilities
    for role, values in by_role.items():
        for of, value in values.items():
            found[(passes.LAYER, l, role, of)] = value
    own = {"L": xp.zeros((batch, n), dtype), "rate": state.rate_sum}
    own |= {("state", s): state.s[s] for s in code.STATES}
    for p in state.learnable:
        own |= {("pbar", p): state.pbar[p] if ports0.ebar is not None else None, ("pgrad", p): state.pgrad[p],
                ("psum", p): state.psum[p] if ports0.seq_sum is not None else None,
                ("preg", p): state.preg[p] if ports0.reg_sum is not None else None}
    for what, value in own.items():
        found[(passes.LAYER, l, "pass", what)] = value
    for j, port in enumerate(state.ports):
        found |= _port_sources(net, state, j, port, J, K, batch, dtype, transposed)
    return found


def _port_sources(net, state, j: int, port, J: dict, K: dict, batch: int, dtype, transposed: list) -> dict:
    from .numba_layer import unsigned

    xp, n, l = net.xp, state.layer.n, state.layer.index
    buffers = port.buffers
    rows = buffers.last if buffers.last is not None else xp.zeros((batch, n), dtype)
    owed = buffers.pend if buffers.pend is not None else xp.zeros((batch, n), dtype)
    found = {(passes.PORT, l, j, roles.TRACE, s): array for s, array in port.traces.arrays.items()}
    for name in ("u", "grad", "ebar", "seq_sum", "reg_sum"):
        found[(passes.PORT, l, j, roles.BUFFER, name)] = getattr(buffers, name)
    found |= {(passes.PORT, l, j, roles.INDEX, name): unsigned(array) for name, array in port.traces.indices.items()}
    found |= {(passes.PORT, l, j, roles.BUFFER, "last"): rows, (passes.PORT, l, j, roles.BUFFER, "pend"): owed,
              (passes.PORT, l, j, roles.BUFFER, "gain"): xp.zeros((batch, n), dtype),
              (passes.PORT, l, j, "pass", "events"): bool(port.events)}
    found |= weight_sources(net, l, j, port.port, transposed)
    for _, entry in port.port.plan.readout:
        if entry in J:
            h = J[entry]
        elif entry in K:
            h = xp.ascontiguousarray(xp.broadcast_to(K[entry], (batch, n)))
        else:
            continue  # an entry equal to 1 is never read
        found[(passes.PORT, l, j, "pass", ("h", entry))] = h
    return found


__all__ = ["available", "driver", "sources"]
