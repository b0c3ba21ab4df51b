"""The CUDA backend's printer: the kernels' lines, one thread per index, templated on ``real``.

Inside a kernel a dynamic entry is read per sample from its array (``J_<name>[bi]``) and a
fixed one is loaded once per thread into a local named after it; traces live in registers
between their load and their store, so an update never needs a saved copy.
"""
from __future__ import annotations

import inspect

from .. import printing
from ..analysis import CONSTANT, DYNAMIC
from ..kernels import Blueprint, Kernel, KernelArg, Line
from ..statements import check_clashes
from . import kernel_frame

# What one thread's index is called in each index space, and where a trace load reads.
_INDEX = {"synapse": {True: "bij", False: "bj"}, "sample, pre": {False: "bj"}, "sample, neuron": {False: "bi"}}


def parameter_lines(kernel: Kernel) -> list[str]:
    """The parameter list, one argument a line with its comment, aligned."""
    texts = [declaration(a) + ("," if i + 1 < len(kernel.args) else ")") for i, a in enumerate(kernel.args)]
    width = max(len(t) for t in texts)
    return [f"{t:<{width}}  // {a.note}" for t, a in zip(texts, kernel.args)]


def declaration(arg: KernelArg, real: str = "real") -> str:
    ctype = arg.ctype.replace("real", real)
    return f"{ctype} __restrict__ {arg.name}" if arg.array else f"const {ctype} {arg.name}"


def code(line: Line) -> str:
    """``D_a_v * eps_v + J_D_a_a[bi] * eps_a``: the sum of the line's terms."""
    parts = []
    for term, operand in line.terms:
        ref = f"J_{term.entry}[bi]" if term.kind == DYNAMIC else term.entry
        parts.append(ref if operand is None else operand if term.unit else f"{ref} * {operand}")
    return " + ".join(parts) if parts else "0"


def _kernel(kernel: Kernel | None) -> dict | None:
    if kernel is None:
        return None
    index = _INDEX.get(kernel.space, {})
    store = index.get(True, index.get(False))
    return {
        "kernel": kernel,
        "parameters": parameter_lines(kernel),
        "fixed": [f"const real {name} = K_{name}[{0 if kind == CONSTANT else 'post'}];  // {kind}"
                  for name, kind in kernel.fixed],
        "loads": [f"const real {local} = {array}[{index[own]}];" for local, array, own in kernel.loads],
        "lines": [dict(target=line.target, code=code(line), equation=line.equation) for line in kernel.lines],
        "stores": [f"{array}[{store}] = {local};" for array, local in kernel.stores],
        # a line stored as soon as it is computed (the presynaptic step)
        "direct": [f"{array}[{store}] = {code(line)};  // {line.equation}"
                   for line, (array, _) in zip(kernel.lines, kernel.stores)],
        "results": [dict(target=line.target, code=code(line), equation=line.equation) for line in kernel.results],
    }


def context(blueprint: Blueprint) -> dict:
    """What templates/cuda/layer.cu.j2 places."""
    ctx = kernel_frame.context(blueprint, printing.cuda_code, _kernel, helper)
    _check_names(blueprint, ctx)
    return ctx


def helper(cls: type) -> tuple:
    """(name, parameters, body, the first line of its doc) of a spike or surrogate helper."""
    return (*printing.cuda_helper(cls), _first_line(inspect.getdoc(cls)))


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].replace("``", "") if doc else ""


# Names the generated CUDA code uses itself; a model symbol with one of them would not compile
# (or worse, would silently read the wrong variable).
_CUDA_WORDS = set("""
    auto bool break case catch char class const constexpr continue default delete do double else
    enum explicit extern false float for friend goto if inline int long mutable namespace new
    nullptr operator private protected public register return short signed sizeof static struct
    switch template this throw true try typedef typename union unsigned using virtual void
    volatile while and or not xor real size_t threadIdx blockIdx blockDim gridDim warpSize
    bi neuron spike
""".split())


def _check_names(blueprint: Blueprint, ctx: dict) -> None:
    internal = set(_CUDA_WORDS) | {name for name, _, _, _ in ctx["helpers"]}
    internal |= set(printing.cuda_function_names()) | kernel_frame.argument_names(blueprint)
    check_clashes(blueprint.analysis, internal, "CUDA")
