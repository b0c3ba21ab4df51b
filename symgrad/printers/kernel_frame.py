"""What every kernel backend's template places, printed with that backend's printers.

The CUDA and Numba templates lay out the same kernels; they differ only in how an expression
and a kernel's lines are printed (``expression`` and ``kernel``), so their contexts are built here.
Every identifier they place comes from the model's naming table (``symgrad.names``).
"""
from __future__ import annotations

from .. import printing
from ..kernels import Blueprint
from ..names import DYNAMIC_ARG, FIXED_ARG, NEW, NEW_STATE_ARG, PARAM_ARG, STATE_ARG

KERNELS = ("fixed_entries", "neuron_step", "param_traces")
PORT_KERNELS = ("synapse_step", "presynaptic_step")  # one of each per synaptic input


def context(blueprint: Blueprint, expression, kernel, helper) -> dict:
    """expression: SymPy -> text; kernel: (Kernel or None, naming table, layout) -> its printed
    parts; helper: the spike or surrogate class -> (name, arguments, body[, ...])."""
    model, names = blueprint.model, blueprint.analysis.naming
    functions = printing.used_functions([s.expr for s in blueprint.step + blueprint.fixed])
    neuron = names.word("neuron")

    def where(param):  # a parameter's element: its neuron's, or the one shared value
        return neuron if param.per_neuron else "0"

    def read(params):
        return [(p.name, f"{names.of(PARAM_ARG, p.name)}[{where(p)}]") for p in params]

    return {
        "w": names.words,
        "layout": blueprint.layout,
        "inputs_t": ", ".join(f"{name}_t" for name in model.input_names),
        "helpers": [helper(cls) for cls in functions],
        "fixed_params": read(blueprint.fixed_params),
        "fixed": [dict(name=s.name, array=names.of(FIXED_ARG, s.name), code=expression(s.expr), source=s.source)
                  for s in blueprint.fixed],
        "step_states": [(s, names.of(STATE_ARG, s)) for s in blueprint.step_states],
        "step_params": read(blueprint.step_params),
        "step_per_neuron": any(p.per_neuron for p in blueprint.step_params),
        "step_inputs": blueprint.step_inputs,
        "step": [dict(name=s.name, code=expression(s.expr), source=s.source) for s in blueprint.step],
        "new_states": [(names.of(NEW_STATE_ARG, s), names.of(NEW, s)) for s in blueprint.analysis.names],
        "dynamic": [(names.of(DYNAMIC_ARG, n), n) for n in blueprint.plan.summary().dynamic],
        **{name: kernel(blueprint.kernel(name), names, blueprint.layout) for name in KERNELS},
        "ports": [dict(input=plan.input.name, several=len(blueprint.plans) > 1,
                       **{name: kernel(blueprint.kernel(name, plan.input.name), names, blueprint.layout)
                          for name in PORT_KERNELS})
                  for plan in blueprint.plans],
    }

