"""The Numba backend's printer: the CUDA kernels' lines, as fused loops compiled for the CPU.

Each kernel has the CUDA kernel's arguments. What one CUDA thread does becomes one iteration of
a loop: ``prange`` over blocks of post neurons in the synapse step, then the batch, then the
block's neurons, then the synapses the layout walks (``Layout.nest``: every presynaptic input,
or a row's stored synapses), so that each thread owns the gradient rows it writes. Entries,
fixed or dynamic, are loaded into locals named after them before the loop that uses them, so
every line reads like its equation.
"""
from __future__ import annotations

from .. import printing
from ..analysis import CONSTANT
from ..kernels import DECAY, TRACE, Blueprint, Kernel, Line, epilogue
from ..layouts import Layout
from ..names import CATCH, DYNAMIC_ARG, FIXED_ARG, Names
from ..surrogates import Spike
from . import kernel_frame

BLOCK = 32  # post neurons a thread of the synapse kernels takes at a time (see the template)

# Where one iteration reads and writes: the synapse step indexes its arrays by their axes, as the
# layout walks them (dense: the inner loop over pre is a plain stride-1 loop the compiler
# vectorises); the small kernels index flat arrays, one item per iteration, as a CUDA thread does.
_FLAT = {"sample, pre": "bj", "sample, neuron": "bi"}


def _index(space: str, layout: Layout) -> dict:
    """{per synapse?: the index of an array} in a kernel of this index space."""
    if space == "synapse":
        return {True: layout.nest.synapse, False: "sample, pre"}
    return {False: _FLAT[space]} if space in _FLAT else {}
_ENTRY = {"synapse": "sample, post"}  # where a dynamic entry is read (else the flat index bi)


def code(line: Line) -> str:
    """``D_a_v * eps_v + D_a_a * eps_a``: every entry is a local by now, and one equal to 1 is
    left out of a product or written as the number."""
    def term(entry, operand):
        if entry.unit:
            return operand or "1.0"
        return entry.entry if operand is None else f"{entry.entry} * {operand}"

    parts = [term(entry, operand) for entry, operand in line.terms]
    return " + ".join(parts) if parts else "0.0"


def _kernel(kernel: Kernel | None, names: Names, layout: Layout) -> dict | None:
    if kernel is None:
        return None
    index = _index(kernel.space, layout)
    store = index.get(True, index.get(False))
    reads_pre = kernel.input or any(not own for _, _, own in kernel.loads)  # u or a presynaptic trace
    return {
        "kernel": kernel,
        "parameters": ", ".join(a.name for a in kernel.args),
        # the top of the loop over a row's synapses: its presynaptic column, where read
        "where": layout.nest.where if kernel.nested and reads_pre else (),
        "fixed": [f"{name} = {names.of(FIXED_ARG, name)}[{0 if kind == CONSTANT else 'post'}]  # {kind}"
                  for name, kind in kernel.fixed],
        "per_post": kernel.per_post,  # a fixed entry read at [post]
        "dynamic": [f"{name} = {names.of(DYNAMIC_ARG, name)}[{_ENTRY.get(kernel.space, 'bi')}]"
                    for name in kernel.dynamic],
        "loads": [f"{local} = {array}[{index[own]}]" for local, array, own in kernel.loads],
        "lines": [f"{line.target} = {code(line)}  # {line.equation}" for line in kernel.lines],
        "stores": [f"{array}[{store}] = {local}" for array, local in kernel.stores],
        # a line stored as soon as it is computed (the presynaptic step)
        "direct": [f"{array}[{store}] = {code(line)}  # {line.equation}"
                   for line, (array, _) in zip(kernel.lines, kernel.stores)],
        "results": [dict(target=line.target, code=code(line), equation=line.equation) for line in kernel.results],
    }


def _events(kernel: Kernel | None, settle: Kernel | None, names: Names, layout: Layout) -> dict | None:
    """The row-skipping synapse step: the dense step's lines, behind a test for rows at rest, with
    the per-synapse traces of a row that wakes scaled by the decay of the steps it skipped."""
    if kernel is None:
        return None
    printed = _kernel(kernel, names, layout)
    decays = {a.of: a.name for a in kernel.args if a.role == DECAY}
    traces = {a.name: a.of for a in kernel.args if a.role == TRACE and a.of in decays}  # per-synapse ones
    index = _index(kernel.space, layout)
    printed.update(
        rest=" and ".join(f"{name} == {value}" for name, value in kernel.rests),
        catch=[f"{names.of(CATCH, s)} = {decay} ** skipped" for s, decay in decays.items()],
        loads=[f"{local} = {array}[{index[own]}]" + (f" * {names.of(CATCH, traces[array])}" if own else "")
               for local, array, own in kernel.loads],
        settle=_kernel(settle, names, layout),
        epilogue=epilogue_lines(layout, waking=True),
        scale=[f"{array}[{index[True]}] *= {names.of(CATCH, s)}" for array, s in traces.items()],
    )
    return printed


def epilogue_lines(layout: Layout, waking: bool = False) -> list[str]:
    """e-prop's epilogue (``kernels.epilogue``) inside the loop over a row's synapses: this
    synapse's elements by their axes, the gradient's row owned by the thread of its post neuron."""
    elements = {"ebar": f"ebar[{layout.nest.synapse}]", "seq_sum": f"seq_sum[{layout.nest.synapse}]",
                "grad": f"grad[{layout.nest.weight}]", "reg_sum": f"reg_sum[{layout.nest.weight}]", "L": "L_i"}
    lines = []
    for given, steps in epilogue(waking):
        indent = "    " if given else ""
        if given:
            lines.append(f"if {given} is not None:")
        for step in steps:
            inner = indent
            if step.given and step.given != given:
                lines.append(f"{indent}if {step.given} is not None:")
                inner += "    "
            line = f"{step.target} {step.op} {step.value}".format(**elements)
            lines.append(inner + line + (f"  # {step.note}" if step.note else ""))
    return lines


def helper(cls: type) -> tuple[str, str, str]:
    """(name, arguments, body) of a scalar spike or surrogate helper."""
    if issubclass(cls, Spike):
        return "spike", "x", "1.0 if x > 0 else 0.0"
    return printing.numpy_helper(cls)


# BPTT's kernels, which its whole-pass driver calls step by step backward: {kind: docstring}
_BACKWARD = {
    "backward_step": "BPTT through one step, over (sample, neuron): dL/ds_t from dL/ds_t+1 (in place) and\n"
                     "    dL/dz_t, and dL/dI_t of each input:\n"
                     "    g_j,t = h_j,t gz_t + sum_k D_kj,t+1 g_k,t+1,   dL/dI_t = sum_k c_k,t g_k,t",
    "param_gradients": "BPTT's gradient of each learnable parameter at one step, over (sample, neuron):\n"
                       "    dL/dp_t = sum_k q_pk,t g_k,t + dz_p,t gz_t",
}


def context(blueprint: Blueprint) -> dict:
    """What templates/numba/layer.py.j2 places."""
    names = blueprint.analysis.naming
    frame = kernel_frame.context(blueprint, printing.numba_code, _kernel, helper)
    events, decays = [], {}  # a trace's decay at rest is D's, the same whichever input it is of
    for plan in blueprint.plans:
        port = plan.input.name
        printed = _events(blueprint.kernel("synapse_events", port), blueprint.kernel("settle", port), names,
                          blueprint.layout)
        if printed:
            active = _kernel(blueprint.kernel("active_rows", port), names, blueprint.layout)
            events.append(dict(printed, input=port, several=len(blueprint.plans) > 1, active=active))
            decays.update(plan.quiescence.decays)
    # the kernels call Python's math functions as they are; rest_decays(p), plain Python on arrays,
    # through the NumPy module's helpers
    calls_math = bool(printing.math_calls([s.expr for s in blueprint.step + blueprint.fixed]))
    decay_helpers = [printing.array_helper(name) for name in printing.math_calls(decays.values())]
    gains = [dict(_kernel(blueprint.kernel("input_gain", plan.input.name), names, blueprint.layout),
                  input=plan.input.name, several=len(blueprint.plans) > 1) for plan in blueprint.plans]
    backward = [(_kernel(blueprint.kernel(kind), names, blueprint.layout), doc) for kind, doc in _BACKWARD.items()
                if blueprint.kernel(kind)]
    return {**frame,
            "block": BLOCK,
            "backward": backward,
            "gains": gains,
            "math": calls_math or bool(decay_helpers),
            "synapse_events": events,
            "epilogue": epilogue_lines(blueprint.layout),
            "decay_helpers": decay_helpers,
            "decays": [(s, printing.numpy_code(d), f"eps_{s},t = " + printing.linear_text([(d, f"eps_{s},t-1")]))
                       for s, d in decays.items()],
            "decay_params": sorted({q.name for d in decays.values() for q in d.free_symbols})}
