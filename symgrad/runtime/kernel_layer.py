"""A layer run by generated kernels: the runtime's ``LayerCode`` over a kernel launcher.

The CUDA backends (``cuda-host``, ``cupy``) and the fused CPU backend (``numba``) generate
kernels from the same descriptions (``symgrad.kernels``), with the same arguments. A
``Kernels`` launcher binds values to those arguments by name and runs one kernel; the
``KernelLayer`` here drives them for e-prop and BPTT. The per-neuron BPTT functions
(input_gain, backward_step, param_gradients) are element-wise array code and are taken from
the generated NumPy module, which runs unchanged on CuPy arrays.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..kernels import input_argument
from ..render import Generated
from .layer_code import SynapseBuffers

PRECISIONS = {np.dtype("float32"): "float", np.dtype("float64"): "double"}


class Kernels:
    """Launches the kernels of one generated source; subclasses say how to pass arguments."""

    xp = np

    def __init__(self, path: Path, kernels: dict):
        self.path, self.kernels = path, kernels

    def launch(self, name: str, dtype, count: int, values: dict) -> None:
        """Run kernel ``name`` with one thread per item of ``count``; arguments from ``values``."""
        if count <= 0:
            return
        dtype = np.dtype(dtype)
        if dtype not in PRECISIONS:
            raise TypeError(f"the generated kernels run float32 or float64, not {dtype}")
        kernel = self.kernels[name]
        args = [self._arg(kernel, a, values[a.name], dtype) for a in kernel.args]
        self._run(name, PRECISIONS[dtype], count, args)

    def _arg(self, kernel, arg, value, dtype):
        if arg.ctype == "int":
            if not 0 <= value < 2**31:
                raise ValueError(f"{kernel.name}: {arg.name} = {value} does not fit the kernel's int")
            return self._int(value)
        if arg.ctype == "real":
            return self._real(value, dtype)
        if value is None:
            return self._null()
        if not isinstance(value, self.xp.ndarray):
            raise TypeError(f"{kernel.name}: {arg.name} must be a {self.xp.__name__} array, "
                            f"not {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"{kernel.name}: {arg.name} is {value.dtype}, expected {dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: {arg.name} must be C-contiguous")
        return self._pointer(value, kernel)


def _names(kernel, prefix: str) -> list[str]:
    return [a.name[len(prefix):] for a in kernel.args if a.name.startswith(prefix)] if kernel else []


class KernelLayer:
    """One model's generated kernels, with the interface of its generated NumPy module."""

    def __init__(self, code: Generated, numpy_module, kernels: Kernels):
        self.kernels, self.xp = kernels, kernels.xp
        self.model, plan = code.model, code.plan
        self.name = self.model.name
        self.STATES = list(plan.states)
        self.PARAMS = self.model.param_names
        self.LEARNABLE = [p.name for p in self.model.learnable]
        self.INITIAL = {s.name: v for s, v in self.model.states.items()}
        self.DYNAMIC = plan.dynamic
        self._kind = plan.entry_kinds
        self._param_rows = plan.param_traces
        self._inputs = [input_argument(each.suffix) for each in code.plans]
        # Where the traces live, as the NumPy module says it: per input for a model with several.
        storage = {each.input: (list(each.presynaptic), list(each.per_synapse)) for each in code.plans}
        if len(storage) == 1:
            self.PRESYNAPTIC, self.PER_SYNAPSE = storage[plan.input]
        else:
            self.INPUTS = list(storage)
            self.PRESYNAPTIC = {name: pre for name, (pre, _) in storage.items()}
            self.PER_SYNAPSE = {name: per for name, (_, per) in storage.items()}
        self._per_neuron = {p.name for p in self.model.neuron_params}
        fixed = kernels.kernels.get("fixed_entries")
        self._fixed_names, self._fixed_params = _names(fixed, "K_"), _names(fixed, "p_")
        self._step_params = _names(kernels.kernels["neuron_step"], "p_")
        # Event-driven kernels (Numba, for models with rows at rest) skip rows at rest: the
        # suffixes of the inputs that have them.
        self.EVENTS = {each.suffix for each in code.plans if "synapse_events" + each.suffix in kernels.kernels}
        # As the NumPy module: Traces and input_gain for a one-input model, Traces_<input> and
        # input_gain_<input> for each input of a model with several.
        for each in code.plans:
            setattr(self, "Traces" + each.suffix, functools.partial(Traces, self, each))
            # element-wise array code: runs on NumPy and CuPy arrays alike
            setattr(self, "input_gain" + each.suffix, getattr(numpy_module, "input_gain" + each.suffix))
        self.ParamTraces = functools.partial(ParamTraces, self)
        self.backward_step = numpy_module.backward_step
        if self.LEARNABLE:
            self.param_gradients = numpy_module.param_gradients

    def __repr__(self):
        return f"<KernelLayer {self.name} ({type(self.kernels).__name__}) from {self.kernels.path}>"

    # -- parameters and fixed entries ----------------------------------------------------
    def _param(self, p: dict, name: str, dtype, n: int | None = None):
        """A parameter as the kernels read it: an (n) array per neuron, else one value."""
        value = p[name]
        if not isinstance(value, self.xp.ndarray) or value.dtype != dtype:
            value = self.xp.asarray(value, dtype=dtype)
        value = self.xp.ascontiguousarray(value)
        if name in self._per_neuron:
            if value.ndim != 1 or (n is not None and value.shape[0] != n):
                raise ValueError(f"{self.name}: parameter {name} holds one value per neuron: "
                                 f"expected shape ({n if n is not None else 'n'},), got {value.shape}")
        elif value.size != 1:
            raise ValueError(f"{self.name}: parameter {name} is shared by the layer: expected one "
                             f"value, got shape {value.shape}")
        return value

    def fixed_entries(self, p: dict, dtype=None) -> dict:
        """Jacobian entries that depend on parameters only, as (n) arrays (constant ones: (1)),
        in ``dtype``: the precision of the run, which the runtime gives (Network.fixed_entries).
        Without it, the one dtype of p's arrays; a model without parameters has none to ask."""
        if not self._fixed_names:
            return self._decays(p)
        dtype = np.dtype(dtype) if dtype is not None else self._dtype(p)
        params = {q: self._param(p, q, dtype) for q in self._fixed_params}
        n = max((v.size for q, v in params.items() if q in self._per_neuron), default=1)
        K = {f: self.xp.empty(n, dtype) for f in self._fixed_names}
        values = {"n": n, **{f"p_{q}": v for q, v in params.items()}, **{f"K_{f}": K[f] for f in K}}
        self.kernels.launch("fixed_entries", dtype, n, values)
        return K | self._decays(p)

    def _decays(self, p: dict) -> dict:
        """decay_<s>: the factor each per-synapse trace decays by at rest (event kernels)."""
        return self.kernels.rest_decays(p) if self.EVENTS else {}

    def _dtype(self, p: dict):
        dtypes = {v.dtype for v in p.values() if hasattr(v, "dtype")}
        if len(dtypes) != 1:
            raise TypeError(f"{self.name}: fixed_entries needs the dtype: its parameter values "
                            f"hold {len(dtypes)} dtypes, not one")
        return dtypes.pop()

    def _fixed(self, K: dict, names, n: int) -> dict:
        """K_<name> arguments; per-neuron entries must have one value per neuron."""
        values = {}
        for name in names:
            if self._kind[name] == "per-neuron" and K[name].size != n:
                raise ValueError(f"{self.name}: {name} holds {K[name].size} values for {n} neurons")
            values[f"K_{name}"] = K[name]
        return values

    # -- the neuron step -----------------------------------------------------------------
    def neuron_step(self, s: dict, *currents_and_p):
        """s_t, z_t and the dynamic Jacobian entries (fresh arrays, as the NumPy module returns),
        from neuron_step(s, I, p), or neuron_step(s, I_1, ..., I_k, p) for k inputs."""
        xp = self.xp
        *currents, p = currents_and_p
        if len(currents) != len(self._inputs):
            raise TypeError(f"{self.name}: neuron_step takes {len(self._inputs)} input currents, "
                            f"not {len(currents)}")
        currents = [xp.ascontiguousarray(I) for I in currents]
        I = currents[0]
        dtype, (batch, n) = I.dtype, I.shape
        values = {"size": batch * n, "n": n, **dict(zip(self._inputs, currents))}
        values.update({f"s_{name}": self._state(s[name], dtype, I.shape) for name in self.STATES})
        values.update({f"p_{q}": self._param(p, q, dtype, n) for q in self._step_params})
        new = {name: xp.empty((batch, n), dtype) for name in self.STATES}
        z = xp.empty((batch, n), dtype)
        J = {name: xp.empty((batch, n), dtype) for name in self.DYNAMIC}
        values.update({f"s_{name}_new": new[name] for name in self.STATES})
        values.update({f"J_{name}": J[name] for name in self.DYNAMIC})
        values["out_z"] = z
        self.kernels.launch("neuron_step", dtype, batch * n, values)
        return new, z, J

    def _state(self, value, dtype, shape):
        value = self.xp.ascontiguousarray(value, dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{self.name}: a state has shape {value.shape}, expected {shape}")
        return value

    # -- traces --------------------------------------------------------------------------
    def advance(self, traces: "Traces", J: dict, K: dict, u, L=None, kappa=0.0, ebar=None,
                seq_sum=None, grad=None, reg_sum=None, seq_weight=1.0) -> None:
        """One step of the traces and of whatever sums are given: synapse_step (when there is
        per-synapse work), then presynaptic_step (when there are presynaptic traces)."""
        batch, n, n_pre = traces.shape
        u = self.xp.ascontiguousarray(u, dtype=traces.dtype)
        if u.shape != (batch, n_pre):
            raise ValueError(f"{self.name}: u has shape {u.shape}, expected {(batch, n_pre)}")
        if L is not None and grad is None:
            raise ValueError(f"{self.name}: a learning signal needs a gradient to add to")
        if traces.plan.per_synapse or any(a is not None for a in (L, ebar, seq_sum, reg_sum)):
            values = self.synapse_values(traces, J, K, u, L, kappa, ebar, seq_sum, grad, reg_sum,
                                         seq_weight)
            self.kernels.launch(traces.kernel("synapse_step"), traces.dtype, n * n_pre, values)
        self._presynaptic(traces, J, K, u)

    def _presynaptic(self, traces, J: dict, K: dict, u) -> None:
        """presynaptic_step, after the synapse step has read the traces' previous values."""
        batch, n, n_pre = traces.shape
        if traces.plan.presynaptic:
            name = traces.kernel("presynaptic_step")
            values = {"size": batch * n_pre, "u": u, **self._entries(self.kernels.kernels[name], J, K, n)}
            values.update({f"trace_{s}": getattr(traces, f"eps_{s}") for s in traces.plan.presynaptic})
            self.kernels.launch(name, traces.dtype, batch * n_pre, values)

    def synapse_values(self, traces: "Traces", J: dict, K: dict, u, L=None, kappa=0.0, ebar=None,
                       seq_sum=None, grad=None, reg_sum=None, seq_weight=1.0) -> dict:
        """The arguments of synapse_step by name (``advance`` launches it with them)."""
        batch, n, n_pre = traces.shape
        values = {"batch": batch, "n": n, "n_pre": n_pre, "u": u, "L": L, "kappa": kappa,
                  "ebar": ebar, "seq_sum": seq_sum, "seq_weight": seq_weight, "grad": grad,
                  "reg_sum": reg_sum}
        values.update(self._entries(self.kernels.kernels[traces.kernel("synapse_step")], J, K, n))
        values.update({f"trace_{s}": getattr(traces, f"eps_{s}") for s in traces.stored})
        return values

    def _entries(self, kernel, J: dict, K: dict, n: int) -> dict:
        """The J_<entry> and K_<entry> arguments ``kernel`` declares."""
        dynamic = {f"J_{name}": J[name] for name in kernel.dynamic}
        return {**dynamic, **self._fixed(K, [name for name, _ in kernel.fixed], n)}

    def synapse_step(self, traces: "Traces", J: dict, K: dict, buffers: SynapseBuffers, L, kappa,
                     weight=1.0) -> None:
        """e-prop's per-synapse work for one step, fused (see eprop.synapse_step for the contract)."""
        if not traces.plan.per_synapse and buffers.ebar is None and buffers.seq_sum is None:
            # Nothing per synapse is stored: the gradient is a matrix product of (L * h) and
            # the presynaptic traces, as in the NumPy module's Traces.accumulate.
            self.advance(traces, J, K, buffers.u)
            for target, signal in ((buffers.reg_sum, buffers.ones), (buffers.grad, L)):
                if target is None or signal is None:
                    continue
                for s, entry in traces.plan.readout:
                    h = J[entry] if entry in J else K[entry]
                    self.xp.matmul((signal * h).T, getattr(traces, f"eps_{s}"), out=buffers.product)
                    target += buffers.product
            return
        if buffers.last is not None:
            self._events(traces, J, K, buffers, L, kappa, weight)
            return
        self.advance(traces, J, K, buffers.u, L=L, kappa=kappa, ebar=buffers.ebar,
                     seq_sum=buffers.seq_sum, grad=buffers.grad, reg_sum=buffers.reg_sum, seq_weight=weight)

    def _events(self, traces, J, K, buffers: SynapseBuffers, L, kappa, weight) -> None:
        """synapse_events, then the presynaptic traces: the step with rows at rest skipped."""
        batch, n, n_pre = traces.shape
        u = self.xp.ascontiguousarray(buffers.u, dtype=traces.dtype)
        values = self.synapse_values(traces, J, K, u, L, kappa, buffers.ebar, buffers.seq_sum,
                                     buffers.grad, buffers.reg_sum, weight)
        values.update(self._bookkeeping(K, buffers))
        self.kernels.launch(traces.kernel("synapse_events"), traces.dtype, n * n_pre, values)
        self._presynaptic(traces, J, K, u)

    def active_fraction(self, J: dict, K: dict, suffix: str = "") -> float:
        """The fraction of (sample, post) rows not at rest this step, in the event kernels of the
        input with this suffix."""
        rest = None
        for entry, value in self.kernels.kernels["synapse_events" + suffix].rests:
            here = J[entry] == (0.0 if value == "0" else K[value])
            rest = here if rest is None else rest & here
        return 1.0 - float(rest.mean())

    def _bookkeeping(self, K: dict, buffers: SynapseBuffers) -> dict:
        return {"step": buffers.step, "last": buffers.last, "pend": buffers.pend,
                **{name: value for name, value in K.items() if name.startswith("decay_")}}

    def settle(self, traces, K: dict, buffers: SynapseBuffers, kappa) -> None:
        """Bring the rows synapse_events skipped up to date at the last step taken."""
        if buffers.last is None:
            return
        batch, n, n_pre = traces.shape
        values = {"batch": batch, "n": n, "n_pre": n_pre, "kappa": kappa, "ebar": buffers.ebar,
                  "grad": buffers.grad, **self._bookkeeping(K, buffers)}
        values.update({f"trace_{s}": getattr(traces, f"eps_{s}") for s in traces.plan.per_synapse})
        self.kernels.launch(traces.kernel("settle"), traces.dtype, n * n_pre, values)


class Traces:
    """e-prop traces of one input stored as planned: eps_<s> (batch, pre) presynaptic,
    (batch, n, pre) per synapse.

    The kernels keep every intermediate in registers, so no saved copies or scratch are needed.
    """

    def __init__(self, code: KernelLayer, plan, batch: int, n: int, n_pre: int, dtype):
        self.code, self.plan, self.shape, self.dtype = code, plan, (batch, n, n_pre), np.dtype(dtype)
        for s in plan.presynaptic:
            setattr(self, f"eps_{s}", code.xp.zeros((batch, n_pre), dtype))
        for s in plan.per_synapse:
            setattr(self, f"eps_{s}", code.xp.zeros((batch, n, n_pre), dtype))

    @property
    def stored(self) -> list:
        return list(self.plan.presynaptic + self.plan.per_synapse)

    def kernel(self, name: str) -> str:
        """The name of this input's kernel ``name`` (synapse_step, presynaptic_step, ...)."""
        return name + self.plan.suffix

    def update(self, J: dict, K: dict, u, scratch=None) -> None:
        """One step of every trace: eps_t = D_t eps_t-1 + c_t u_t."""
        self.code.advance(self, J, K, u)


class ParamTraces:
    """Per-neuron traces eps^p_t = D_t eps^p_t-1 + q_t of the learnable parameters."""

    def __init__(self, code: KernelLayer, batch: int, n: int, dtype):
        self.code, self.shape, self.dtype = code, (batch, n), np.dtype(dtype)
        for param, states in code._param_rows:
            for s in states:
                setattr(self, f"{param}_{s}", code.xp.zeros((batch, n), dtype))
        self._e = {param: code.xp.zeros((batch, n), dtype) for param, _ in code._param_rows}

    def update(self, J: dict, K: dict) -> None:
        code, (batch, n) = self.code, self.shape
        kernel = code.kernels.kernels["param_traces"]
        values = {"size": batch * n, "n": n, **code._entries(kernel, J, K, n)}
        for param, states in code._param_rows:
            values.update({f"trace_{param}_{s}": getattr(self, f"{param}_{s}") for s in states})
            values[f"e_{param}"] = self._e[param]
        code.kernels.launch("param_traces", self.dtype, batch * n, values)

    def eligibility(self, J: dict, K: dict) -> dict:
        """e^p_t = h_t . eps^p_t + dz_p of each learnable parameter, (batch, n), from the last update."""
        return dict(self._e)
