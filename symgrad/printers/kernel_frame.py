"""What every kernel backend's template places, printed with that backend's printers.

The CUDA and Numba templates lay out the same kernels; they differ only in how an expression
and a kernel's lines are printed (``expression`` and ``kernel``), so their contexts are built here.
"""
from __future__ import annotations

from .. import printing
from ..kernels import Blueprint

KERNELS = ("fixed_entries", "neuron_step", "param_traces")
PORT_KERNELS = ("synapse_step", "presynaptic_step")  # one of each per synaptic input


def context(blueprint: Blueprint, expression, kernel, helper) -> dict:
    """expression: SymPy -> text; kernel: Kernel or None -> its printed parts; helper: the
    spike or surrogate class -> (name, arguments, body[, ...])."""
    model = blueprint.model
    functions = printing.used_functions([s.expr for s in blueprint.step + blueprint.fixed])
    kernels = {k.name: k for k in blueprint.kernels}

    def where(param):  # a parameter's element: its neuron's, or the one shared value
        return "neuron" if param.per_neuron else "0"

    return {
        "inputs_t": ", ".join(f"{name}_t" for name in model.input_names),
        "helpers": [helper(cls) for cls in functions],
        "fixed_params": [(p.name, where(p)) for p in blueprint.fixed_params],
        "fixed": [dict(name=s.name, code=expression(s.expr), source=s.source) for s in blueprint.fixed],
        "step_states": blueprint.step_states,
        "step_params": [(p.name, where(p)) for p in blueprint.step_params],
        "step_per_neuron": any(p.per_neuron for p in blueprint.step_params),
        "step_inputs": blueprint.step_inputs,
        "step": [dict(name=s.name, code=expression(s.expr), source=s.source) for s in blueprint.step],
        "states": blueprint.analysis.names,
        "dynamic": blueprint.plan.summary().dynamic,
        **{name: kernel(kernels.get(name)) for name in KERNELS},
        "ports": [dict(input=plan.input.name, suffix=plan.suffix,
                       **{name: kernel(kernels.get(name + plan.suffix)) for name in PORT_KERNELS})
                  for plan in blueprint.plans],
    }


def argument_names(blueprint: Blueprint) -> set[str]:
    """The arguments of the kernels whose bodies declare the model's names."""
    kernels = (blueprint.kernel(name) for name in ("fixed_entries", "neuron_step"))
    return {a.name for kernel in kernels if kernel for a in kernel.args}
