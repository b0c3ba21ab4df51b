"""The CUDA backend's printer: the kernels' lines, one thread per index, templated on ``real``.

Inside a kernel a dynamic entry is read per sample from its array (``J_<name>[bi]``) and a
fixed one is loaded once per thread into a local named after it; traces live in registers
between their load and their store, so an update never needs a saved copy.
"""
from __future__ import annotations

import inspect

from .. import printing
from ..analysis import CONSTANT, DYNAMIC
from ..kernels import Blueprint, Kernel, KernelArg, Line, epilogue
from ..layouts import Layout
from ..names import DYNAMIC_ARG, FIXED_ARG, Names
from . import kernel_frame

# What one thread's index is called in each index space, and where a trace load reads.
_INDEX = {"synapse": {True: "bij", False: "bj"}, "sample, pre": {False: "bj"}, "sample, neuron": {False: "bi"}}


def parameter_lines(kernel: Kernel, real: str = "real") -> list[str]:
    """The parameter list, one argument a line with its comment, aligned."""
    texts = [declaration(a, real) + ("," if i + 1 < len(kernel.args) else ")") for i, a in enumerate(kernel.args)]
    width = max(len(t) for t in texts)
    return [f"{t:<{width}}  // {a.note}" for t, a in zip(texts, kernel.args)]


def declaration(arg: KernelArg, real: str = "real") -> str:
    ctype = arg.ctype.replace("real", real)
    return f"{ctype} __restrict__ {arg.name}" if arg.array else f"const {ctype} {arg.name}"


def code(line: Line, names: Names) -> str:
    """``D_a_v * eps_v + J_D_a_a[bi] * eps_a``: the sum of the line's terms; an entry equal to 1
    is left out of a product or written as the number."""
    parts = []
    for term, operand in line.terms:
        ref = "1" if term.unit else f"{names.of(DYNAMIC_ARG, term.entry)}[bi]" if term.kind == DYNAMIC else term.entry
        parts.append(ref if operand is None else operand if term.unit else f"{ref} * {operand}")
    return " + ".join(parts) if parts else "0"


def _kernel(kernel: Kernel | None, names: Names, layout: Layout) -> dict | None:
    if kernel is None:
        return None
    index = _INDEX.get(kernel.space, {})  # the offsets the kernel names; the layout gives bij's
    store = index.get(True, index.get(False))
    real = names.word("real")
    return {
        "kernel": kernel,
        "parameters": parameter_lines(kernel, real),
        "fixed": [f"const {real} {name} = {names.of(FIXED_ARG, name)}[{0 if kind == CONSTANT else 'post'}];  // {kind}"
                  for name, kind in kernel.fixed],
        "loads": [f"const {real} {local} = {array}[{index[own]}];" for local, array, own in kernel.loads],
        "lines": [dict(target=line.target, code=code(line, names), equation=line.equation) for line in kernel.lines],
        "stores": [f"{array}[{store}] = {local};" for array, local in kernel.stores],
        # a line stored as soon as it is computed (the presynaptic step)
        "direct": [f"{array}[{store}] = {code(line, names)};  // {line.equation}"
                   for line, (array, _) in zip(kernel.lines, kernel.stores)],
        "results": [dict(target=line.target, code=code(line, names), equation=line.equation)
                    for line in kernel.results],
    }


def epilogue_lines(real: str) -> list[str]:
    """e-prop's epilogue (``kernels.epilogue``) inside the loop over the batch: this synapse's
    elements at bij, its gradient and regulariser sums in registers (written once, after the loop)."""
    elements = {"ebar": "ebar[bij]", "seq_sum": "seq_sum[bij]", "grad": "grad_ij", "reg_sum": "reg_ij", "L": "L[bi]"}
    lines, declared = [], set()

    def statement(step) -> str:
        new = step.target.isidentifier() and step.target not in declared and step.op == "="
        declared.add(step.target)
        text = f"{real + ' ' if new else ''}{step.target} {step.op} {step.value};".format(**elements)
        return text + (f"  // {step.note}" if step.note else "")

    for given, steps in epilogue():
        if given is None:
            lines += [statement(step) for step in steps]
        elif len(steps) == 1:
            lines.append(f"if ({given}) {statement(steps[0])}")
        else:
            lines += [f"if ({given}) {{"] + [f"    {statement(step)}" for step in steps] + ["}"]
    return lines


def context(blueprint: Blueprint) -> dict:
    """What templates/cuda/layer.cu.j2 places."""
    real = blueprint.analysis.naming.word("real")
    return {**kernel_frame.context(blueprint, lambda expr: printing.cuda_code(expr, real), _kernel,
                                   lambda cls: helper(cls, real)),
            "epilogue": epilogue_lines(real)}


def helper(cls: type, real: str = "real") -> tuple:
    """(name, parameters, body, the first line of its doc) of a spike or surrogate helper."""
    return (*printing.cuda_helper(cls, real), _first_line(inspect.getdoc(cls)))


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].replace("``", "") if doc else ""
