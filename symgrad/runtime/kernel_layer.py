"""A layer run by generated kernels: the runtime's ``LayerCode`` over a kernel launcher.

The CUDA backends (``cuda-host``, ``cupy``) and the fused CPU backend (``numba``) generate
kernels from the same descriptions (``symgrad.kernels``), with the same arguments. A ``Kernels``
launcher binds each argument by what it holds (its ``role`` and ``of``), never by its name, and
runs one kernel; the ``KernelLayer`` here drives them for e-prop and BPTT. The per-neuron BPTT
functions (input gain, backward step, parameter gradients) are element-wise array code and are
taken from the generated NumPy module, which runs unchanged on CuPy arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import kernels as roles
from ..render import Generated
from .layer_code import SynapseBuffers
from .module_layer import ModuleLayer

PRECISIONS = {np.dtype("float32"): "float", np.dtype("float64"): "double"}
INDEX_DTYPE = np.dtype(np.int32)  # a layout's index arrays, as the kernels' "const int*" read them


class Kernels:
    """Launches the kernels of one generated source; subclasses say how to pass arguments."""

    xp = np
    rest_decays = None  # p -> {state: its trace's decay at rest}, where the source computes it

    def __init__(self, path: Path, kernels: dict):
        self.path, self.kernels = path, kernels

    def launch(self, kernel, dtype, count: int, sources: dict) -> None:
        """Run ``kernel`` with one thread per item of ``count``. ``sources`` maps each role to
        {what it is of: value}: ``sources[arg.role][arg.of]`` is bound to each argument."""
        if count <= 0:
            return
        dtype = np.dtype(dtype)
        if dtype not in PRECISIONS:
            raise TypeError(f"the generated kernels run float32 or float64, not {dtype}")
        args = [self._arg(kernel, a, value, dtype) for a, value in bind(kernel, sources)]
        self._run(kernel.name, PRECISIONS[dtype], count, args)

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
        if arg.role == roles.INDEX:
            dtype = INDEX_DTYPE
        if value.dtype != dtype:
            raise TypeError(f"{kernel.name}: {arg.name} is {value.dtype}, expected {dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: {arg.name} must be C-contiguous")
        return self._pointer(value, kernel)


def bind(kernel, sources: dict) -> list[tuple]:
    """(argument, value) of each of ``kernel``'s arguments, by what it holds."""
    return [(arg, sources[arg.role][arg.of]) for arg in kernel.args]


class KernelLayer:
    """One model's generated kernels, behind the ``LayerCode`` contract."""

    def __init__(self, code: Generated, numpy_module, kernels: Kernels):
        self.kernels, self.xp = kernels, kernels.xp
        self.generated = code
        self.model, self.name = code.model, code.model.name
        reference = ModuleLayer(code, numpy_module)  # the element-wise functions, on any array module
        self.STATES, self.PARAMS, self.LEARNABLE = reference.STATES, reference.PARAMS, reference.LEARNABLE
        self.INITIAL, self.DYNAMIC = reference.INITIAL, reference.DYNAMIC
        self._kind = code.plan.entry_kinds
        self._per_neuron = {p.name for p in self.model.neuron_params}
        self._fixed = code.kernel("fixed_entries")
        self._step = code.kernel("neuron_step")
        self._params = code.kernel("param_traces")
        def launched(kind, port):  # the kernel, where this launcher's source defines it
            kernel = code.kernel(kind, port)
            return kernel if kernel is not None and kernel.name in kernels.kernels else None

        self.ports = {plan.input: KernelPort(self, plan, reference.ports[plan.input].input_gain,
                                             *(launched(kind, plan.input) for kind in
                                               ("synapse_step", "presynaptic_step", "synapse_events", "settle")))
                      for plan in code.plans}
        self.backward_step = reference.backward_step
        if self.LEARNABLE:
            self.param_gradients = reference.param_gradients

    def __repr__(self):
        return f"<KernelLayer {self.name} ({type(self.kernels).__name__}) from {self.kernels.path}>"

    def launch(self, kernel, dtype, threads: int, **sources) -> None:
        self.kernels.launch(kernel, dtype, threads, sources)

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

    def kernel_params(self, p: dict, dtype, n: int) -> dict:
        """Every parameter as the kernels read it (see ``_param``), by name."""
        return {name: self._param(p, name, dtype, n) for name in self.PARAMS}

    def _params_of(self, kernel, p: dict, dtype, n: int | None = None) -> dict:
        return {a.of: self._param(p, a.of, dtype, n) for a in kernel.args if a.role == roles.PARAM}

    def fixed_entries(self, p: dict, dtype=None) -> dict:
        """Jacobian entries that depend on parameters only, as (n) arrays (constant ones: (1)),
        in ``dtype``: the precision of the run, which the runtime gives (Network.fixed_entries).
        Without it, the one dtype of p's arrays; a model without parameters has none to ask.
        With rows at rest, also the factor each per-synapse trace decays by then, by state."""
        decays = {roles.DECAY: self.kernels.rest_decays(p)} if self.kernels.rest_decays and self._events() else {}
        if self._fixed is None:
            return decays
        dtype = np.dtype(dtype) if dtype is not None else self._dtype(p)
        params = self._params_of(self._fixed, p, dtype)
        n = max((v.size for q, v in params.items() if q in self._per_neuron), default=1)
        K = {a.of: self.xp.empty(n, dtype) for a in self._fixed.args if a.role == roles.FIXED}
        self.launch(self._fixed, dtype, n, count={"n": n}, param=params, **{roles.FIXED: K})
        return K | decays

    def _events(self) -> bool:
        return any(port.events for port in self.ports.values())

    def _dtype(self, p: dict):
        dtypes = {v.dtype for v in p.values() if hasattr(v, "dtype")}
        if len(dtypes) != 1:
            raise TypeError(f"{self.name}: fixed_entries needs the dtype: its parameter values "
                            f"hold {len(dtypes)} dtypes, not one")
        return dtypes.pop()

    def entries(self, J: dict, K: dict, n: int) -> dict:
        """The sources of the entry arguments: J by name, K by name (per-neuron ones checked to
        hold one value per neuron), and the decays at rest."""
        for name, value in K.items():
            if name in self._kind and self._kind[name] == "per-neuron" and value.size != n:
                raise ValueError(f"{self.name}: {name} holds {value.size} values for {n} neurons")
        return {roles.DYNAMIC_ENTRY: J, roles.FIXED: K, roles.DECAY: K.get(roles.DECAY, {})}

    # -- the neuron step -----------------------------------------------------------------
    def neuron_step(self, s: dict, *currents_and_p):
        """s_t, z_t and the dynamic Jacobian entries (fresh arrays, as the NumPy module returns),
        from neuron_step(s, I, p), or neuron_step(s, I_1, ..., I_k, p) for k inputs."""
        xp = self.xp
        *currents, p = currents_and_p
        if len(currents) != len(self.ports):
            raise TypeError(f"{self.name}: neuron_step takes {len(self.ports)} input currents, "
                            f"not {len(currents)}")
        currents = dict(zip(self.ports, (xp.ascontiguousarray(I) for I in currents)))
        I = next(iter(currents.values()))
        dtype, (batch, n) = I.dtype, I.shape
        states = {name: self._state(s[name], dtype, I.shape) for name in self.STATES}
        new = {name: xp.empty((batch, n), dtype) for name in self.STATES}
        z = xp.empty((batch, n), dtype)
        J = {name: xp.empty((batch, n), dtype) for name in self.DYNAMIC}
        self.launch(self._step, dtype, batch * n, count={"size": batch * n, "n": n}, current=currents,
                    state=states, param=self._params_of(self._step, p, dtype, n), output={"z": z},
                    **{roles.NEW_STATE: new, roles.DYNAMIC_ENTRY: J})
        return new, z, J

    def _state(self, value, dtype, shape):
        value = self.xp.ascontiguousarray(value, dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{self.name}: a state has shape {value.shape}, expected {shape}")
        return value

    def param_traces(self, batch: int, n: int, dtype) -> "ParamTraces":
        return ParamTraces(self, batch, n, dtype)


class KernelPort:
    """One input's kernels: its fused synapse step, presynaptic step and, for a model with rows
    at rest, the step that skips them and the kernel that settles them."""

    fused = True

    def __init__(self, layer: KernelLayer, plan, input_gain, synapse, presynaptic, events, settle):
        self.layer, self.plan, self.input, self.input_gain = layer, plan, plan.input, input_gain
        self._synapse, self._presynaptic, self._skipping, self._settle = synapse, presynaptic, events, settle
        self.events = events is not None

    def traces(self, batch: int, n: int, n_pre: int, dtype, synapses=None) -> "Traces":
        return Traces(self, batch, n, n_pre, dtype, synapses)

    def trace(self, traces: "Traces", state: str):
        return traces.arrays[state]

    def advance(self, traces: "Traces", J: dict, K: dict, u, L=None, kappa=0.0, ebar=None,
                seq_sum=None, grad=None, reg_sum=None, seq_weight=1.0) -> None:
        """One step of the traces and of whatever sums are given: the synapse step (when there
        is per-synapse work), then the presynaptic step (when there are presynaptic traces)."""
        batch, n, n_pre = traces.shape
        u = self.layer.xp.ascontiguousarray(u, dtype=traces.dtype)
        if u.shape != (batch, n_pre):
            raise ValueError(f"{self.layer.name}: u has shape {u.shape}, expected {(batch, n_pre)}")
        if L is not None and grad is None:
            raise ValueError(f"{self.layer.name}: a learning signal needs a gradient to add to")
        buffers = SynapseBuffers(u=u, grad=grad, product=None, ebar=ebar, seq_sum=seq_sum, reg_sum=reg_sum)
        if traces.plan.per_synapse or any(a is not None for a in (L, ebar, seq_sum, reg_sum)):
            self._launch(self._synapse, traces, J, K, buffers, L, kappa, seq_weight)
        self._advance_presynaptic(traces, J, K, buffers)

    @property
    def synapse_kernel(self):
        """The fused synapse step's description."""
        return self._synapse

    def sources(self, traces: "Traces", J: dict, K: dict, buffers: SynapseBuffers, L=None, kappa=0.0,
                weight=1.0) -> dict:
        """What the synapse kernels bind their arguments from (see ``Kernels.launch``)."""
        batch, n, n_pre = traces.shape
        return {roles.COUNT: {"batch": batch, "n": n, "n_pre": n_pre, "nnz": traces.nnz, "size": batch * n_pre,
                              "step": buffers.step},
                roles.INDEX: traces.indices,
                roles.SCALAR: {"kappa": kappa, "seq_weight": weight},
                roles.BUFFER: {"u": buffers.u, "L": L, "ebar": buffers.ebar, "seq_sum": buffers.seq_sum,
                               "grad": buffers.grad, "reg_sum": buffers.reg_sum, "last": buffers.last,
                               "pend": buffers.pend},
                roles.TRACE: traces.arrays, **self.layer.entries(J, K, n)}

    def _launch(self, kernel, traces, J, K, buffers, L=None, kappa=0.0, weight=1.0, count=None) -> None:
        batch, n, n_pre = traces.shape
        synapses = traces.plan.layout.count(n, n_pre, traces.nnz)
        self.layer.kernels.launch(kernel, traces.dtype, synapses if count is None else count,
                                  self.sources(traces, J, K, buffers, L, kappa, weight))

    def _advance_presynaptic(self, traces, J: dict, K: dict, buffers: SynapseBuffers) -> None:
        """The presynaptic step, after the synapse step has read the traces' previous values."""
        if self._presynaptic is not None:
            batch, _, n_pre = traces.shape
            self._launch(self._presynaptic, traces, J, K, buffers, count=batch * n_pre)

    def synapse_step(self, traces: "Traces", J: dict, K: dict, buffers: SynapseBuffers, L, kappa,
                     weight=1.0, skip_rest: bool = False) -> None:
        """e-prop's per-synapse work for one step, fused (see ModulePort.synapse_step)."""
        xp = self.layer.xp
        if not traces.plan.per_synapse and buffers.ebar is None and buffers.seq_sum is None:
            # Nothing per synapse is stored: the gradient is a matrix product of (L * h) and
            # the presynaptic traces (in sparse rows, at the synapses), as in the NumPy
            # module's Traces.accumulate.
            self.advance(traces, J, K, buffers.u)
            for target, signal in ((buffers.reg_sum, buffers.ones), (buffers.grad, L)):
                if target is None or signal is None:
                    continue
                for s, entry in traces.plan.readout:
                    h = 1 if entry in traces.plan.units else J[entry] if entry in J else K[entry]
                    buffers.synapses.outer(xp, signal * h, traces.arrays[s], out=buffers.product)
                    target += buffers.product
            return
        if skip_rest:
            self._launch(self._skipping, traces, J, K, buffers, L, kappa, weight)
            buffers.behind = True
        else:
            if buffers.behind:  # rows were left at rest: bring them up to date at the last step
                buffers.step -= 1
                self.settle(traces, K, buffers, kappa)
                buffers.step += 1
            self._launch(self._synapse, traces, J, K, buffers, L, kappa, weight)
            if buffers.last is not None:  # every row is up to date now
                buffers.last[...] = buffers.step
        self._advance_presynaptic(traces, J, K, buffers)

    def active_fraction(self, J: dict, K: dict) -> float:
        """The fraction of (sample, post) rows not at rest this step."""
        rest = None
        decays = K.get(roles.DECAY, {})
        for entry, value in self._skipping.rests:
            resting = 0.0 if value == "0" else decays[next(a.of for a in self._skipping.args if a.name == value)]
            here = J[entry] == resting
            rest = here if rest is None else rest & here
        return 1.0 - float(rest.mean())

    def settle(self, traces: "Traces", K: dict, buffers: SynapseBuffers, kappa) -> None:
        """Bring the rows the skipping step left at rest up to date at the step taken last."""
        if buffers.behind:
            self._launch(self._settle, traces, {}, K, buffers, None, kappa)
            buffers.behind = False


class Traces:
    """e-prop traces of one input stored as planned, by state: (batch, pre) presynaptic,
    (batch, n, pre) per synapse, or (batch, nnz) in sparse rows, whose index arrays (int32, on
    the kernels' device) it holds by name. The kernels keep every intermediate in registers, so
    no saved copies or scratch are needed."""

    def __init__(self, port: KernelPort, batch: int, n: int, n_pre: int, dtype, synapses=None):
        xp = port.layer.xp
        self.port, self.plan, self.shape, self.dtype = port, port.plan, (batch, n, n_pre), np.dtype(dtype)
        self.nnz = synapses.count if self.plan.layout.sparse else None
        self.indices = {name: xp.asarray(getattr(synapses, name), dtype=INDEX_DTYPE)
                        for name, _ in self.plan.layout.indices}
        self.arrays = {s: xp.zeros(shape, dtype)
                       for s, shape in self.plan.trace_shapes(batch, n, n_pre, self.nnz).items()}

    def update(self, J: dict, K: dict, u, scratch=None) -> None:
        """eps_t = D_t eps_t-1 + c_t u_t (the kernels need no scratch)."""
        self.port.advance(self, J, K, u)


class ParamTraces:
    """Per-neuron traces eps^p_t = D_t eps^p_t-1 + q_t of the learnable parameters."""

    def __init__(self, code: KernelLayer, batch: int, n: int, dtype):
        self.code, self.shape, self.dtype = code, (batch, n), np.dtype(dtype)
        kernel = code._params
        self.arrays = {a.of: code.xp.zeros((batch, n), dtype) for a in kernel.args if a.role == roles.PARAM_TRACE}
        self.eligibilities = {a.of: code.xp.zeros((batch, n), dtype) for a in kernel.args if a.role == roles.PARAM_ELIGIBILITY}

    def update(self, J: dict, K: dict) -> None:
        code, (batch, n) = self.code, self.shape
        code.launch(code._params, self.dtype, batch * n, count={"size": batch * n, "n": n},
                    **code.entries(J, K, n), **{roles.PARAM_TRACE: self.arrays, roles.PARAM_ELIGIBILITY: self.eligibilities})

    def eligibility(self, J: dict, K: dict) -> dict:
        """e^p_t = h_t . eps^p_t + dz_p of each learnable parameter, (batch, n), from the last update."""
        return dict(self.eligibilities)
