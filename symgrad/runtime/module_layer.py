"""The runtime's ``LayerCode`` over the generated NumPy module: the readable reference backend.

The module's classes and functions are found by the names the naming table gave them
(``Generated.names``), never by composing one. Its arithmetic follows the arrays it is given,
so the same functions serve the kernel backends' BPTT on NumPy and CuPy arrays alike.
"""
from __future__ import annotations

import numpy as np

from ..names import TRACE
from ..render import Generated
from .layer_code import SynapseBuffers


class ModuleLayer:
    """One model's generated NumPy module behind the ``LayerCode`` contract."""

    def __init__(self, code: Generated, module):
        self.module, self.name = module, code.model.name
        self.STATES, self.PARAMS = list(module.STATES), list(module.PARAMS)
        self.LEARNABLE, self.INITIAL = list(module.LEARNABLE), dict(module.INITIAL)
        self.DYNAMIC = code.plan.dynamic
        names = code.names
        self.ports = {plan.input: ModulePort(plan, getattr(module, names.per_input("Traces", plan.input)),
                                             getattr(module, names.per_input("input_gain", plan.input)),
                                             {s: names.of(TRACE, s) for s in plan.states})
                      for plan in code.plans}
        self.neuron_step = module.neuron_step
        self.backward_step = module.backward_step
        if self.LEARNABLE:
            self.param_gradients = module.param_gradients

    def __repr__(self):
        return f"<ModuleLayer {self.name} from {self.module.__file__}>"

    def fixed_entries(self, p: dict, dtype=None) -> dict:
        """Its arithmetic follows p's arrays, whatever ``dtype`` says."""
        return self.module.fixed_entries(p)

    def param_traces(self, batch: int, n: int, dtype):
        return self.module.ParamTraces(batch, n, dtype)


class ModulePort:
    """One input's generated Traces class and input gain; the per-synapse step through the
    Traces' methods, with e-prop's buffers."""

    fused = events = False

    def __init__(self, plan, traces_class, input_gain, attributes: dict):
        self.input, self.plan = plan.input, plan
        self._traces, self.input_gain, self._attributes = traces_class, input_gain, attributes

    def traces(self, batch: int, n: int, n_pre: int, dtype, synapses=None):
        if self.plan.layout.sparse:
            return self._traces(batch, synapses, dtype)
        return self._traces(batch, n, n_pre, dtype)

    def trace(self, traces, state: str):
        return getattr(traces, self._attributes[state])

    def synapse_step(self, traces, J: dict, K: dict, b: SynapseBuffers, L, kappa, weight=1.0,
                     skip_rest: bool = False) -> None:
        """One step of a layer's per-synapse work:

        eps_t = D_t eps_{t-1} + c_t u_t;  e_t = h_t . eps_t;  ebar = kappa ebar + e_t (if kept);
        grad += sum_b L e (or L ebar) when L is given; seq_sum += w e when kept (never with ebar);
        reg_sum += sum_b e_t for the firing-rate regulariser when kept.
        """
        if self.plan.per_synapse:
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
            b.synapses.contract(np, L, b.ebar, out=b.product)
            b.grad += b.product

    def active_fraction(self, J: dict, K: dict) -> float:
        raise NotImplementedError("the NumPy module has no rows-at-rest kernels")

    def settle(self, traces, K: dict, buffers: SynapseBuffers, kappa) -> None:
        """Nothing is ever left behind."""


def layer(code: Generated, reference, backend) -> ModuleLayer:
    """The loader of the NumPy backend (``runtime/backends.py``): its module is the reference."""
    return ModuleLayer(code, reference)
