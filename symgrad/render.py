"""Rendering a model's analysis and trace plan through the backend templates.

Every backend has the same template names under ``templates/<backend>/``; the context
they get is built here once, backend-neutral, and the backend's printer turns SymPy
expressions into code. Jinja runs with ``StrictUndefined``, so a template that asks for
something the context lacks fails loudly instead of printing nothing.
"""
from __future__ import annotations

import importlib.resources
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import sympy as sp

from . import __version__, printing, statements
from .analysis import CONSTANT, DYNAMIC, Analysis
from .model import ModelError, NeuronModel
from .plan import PER_SYNAPSE, PRESYNAPTIC, TracePlan

TEMPLATE_SUFFIX = ".j2"
# generator backend: (template under templates/<backend>/, file written under generated/<model>/)
BACKENDS = {"numpy": ("layer.py", "numpy_layer.py"), "cuda": ("layer.cu", "cuda_layer.cu")}


def template_dir() -> Path:
    """``templates/`` of a checkout, or the copy shipped inside the installed package."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files("symgrad") / "templates"))


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Term:
    """``coef * source`` in a trace update: source is a state's old trace, or u."""

    coef: str  # entry name, e.g. "D_a_v"
    kind: str  # the entry's class
    unit: bool  # the coefficient is the number 1
    source: str | None  # state name, or None for the presynaptic input u
    source_plan: str | None  # the source trace's plan, None for u
    saved: bool  # read from the saved copy of the source


def trace_updates(analysis: Analysis, plan: TracePlan) -> list[dict]:
    """Each planned component's update eps_k = sum_j D_kj eps_j + c_k u, in the planned order."""
    names, D, c = analysis.names, analysis.D, analysis.c
    saved = set(plan.saved)
    done: set[int] = set()
    updates = []
    for step in plan.steps:
        k = step.index
        terms = [Term(f"D_{names[k]}_{names[j]}", D[k][j].kind, D[k][j].expr == 1, names[j],
                      plan.kinds[j], j in saved and j in done)
                 for j in step.reads]
        if not c[k].is_zero:
            terms.append(Term(f"c_{names[k]}", c[k].kind, c[k].expr == 1, None, None, False))
        own = [t for t in terms if t.source == names[k]]
        updates.append({
            "state": names[k],
            "plan": plan.kinds[k],
            "save_first": step.save_first,
            "own": own[0] if own else None,
            "others": [t for t in terms if t.source != names[k]],
            "equation": f"eps_{names[k]} = " + " + ".join(
                f"{t.coef} * {'eps_' + t.source if t.source else 'u'}" for t in terms),
        })
        done.add(k)
    return updates


def header(analysis: Analysis, plan: TracePlan) -> list[str]:
    """The lines that open every generated file: equations, Jacobian classes, trace plan."""
    model, names = analysis.model, analysis.names
    width = max(len(n) for n in names)
    lines = [f"Model {model.name} (update reads the previous step; output the new state):", ""]
    lines += [f"    {s.name}_t = {model.update[s]}" for s in model.state_symbols]
    lines += [f"    z_t = {model.output}", "", "Jacobian classes (D[k][j] = d s_k,t / d s_j,t-1):", ""]
    for k, row in enumerate(analysis.D):
        lines.append(f"    D[{names[k]:>{width}}] = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for label, row in (("c", analysis.c), ("h", analysis.h)):
        lines.append(f"    {label + ' ' * (width + 2)} = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for p, row in analysis.q.items():
        lines.append(f"    q[{p.name}] = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    lines += ["", "Trace plan:", ""]
    shape = {PRESYNAPTIC: "(batch, pre)", PER_SYNAPSE: "(batch, post, pre)"}
    for k, name in enumerate(names):
        kind = plan.kinds[k]
        lines.append(f"    eps_{name:<{width}}  {kind:<12} {shape.get(kind, 'not stored')}")
    return lines


def context(model: NeuronModel, printer=printing.numpy_code, helper=printing.numpy_helper,
            dense: bool = False) -> dict:
    analysis = Analysis(model)
    return _context(analysis, TracePlan(analysis, dense=dense), printer, helper)


def _context(analysis: Analysis, plan: TracePlan, printer, helper) -> dict:
    model = analysis.model
    step = statements.neuron_step(analysis)
    fixed = statements.fixed_entries(analysis)
    entries = statements.entry_names(analysis)
    exprs = [s.expr for s in step + fixed]
    relevant = [analysis.names[k] for k in plan.relevant]
    step_symbols = _names(s.expr for s in step)
    return {
        "version": __version__,
        "model": model,
        "doc": (model.doc or "").strip(),
        "header": header(analysis, plan),
        "states": analysis.names,
        "step_states": [n for n in analysis.names if n in step_symbols],
        "step_params": [n for n in model.param_names if n in step_symbols],
        "fixed_params": [n for n in model.param_names if n in _names(s.expr for s in fixed)],
        "eligible": [analysis.names[k] for k in plan.reachable if not analysis.h[k].is_zero],
        "initial": {s.name: v for s, v in model.states.items()},
        "params": model.param_names,
        "learnable": [p.name for p in model.learnable],
        "helpers": [helper(cls) for cls in printing.used_functions(exprs)],
        "step": [dict(name=s.name, code=printer(s.expr), source=s.source, temporary=s.temporary)
                 for s in step],
        "fixed": [dict(name=s.name, code=printer(s.expr), source=s.source) for s in fixed],
        "dynamic": [n for n, e in entries.items() if not e.is_fixed],
        "kind": {n: e.kind for n, e in entries.items()},
        "presynaptic": [analysis.names[k] for k in plan.presynaptic],
        "per_synapse": [analysis.names[k] for k in plan.per_synapse],
        "saved": [analysis.names[k] for k in plan.saved],
        "updates": trace_updates(analysis, plan),
        "relevant": relevant,
        "adjoint": adjoint(analysis, plan),
        "param_traces": param_traces(analysis, plan),
        "c": [n for n in analysis.names if f"c_{n}" in entries],
    }


def adjoint(analysis: Analysis, plan: TracePlan) -> list[dict]:
    """BPTT: g_j,t = h_j,t gz_t + sum_k D_kj,t+1 g_k,t+1 for the relevant components j."""
    names, D, h = analysis.names, analysis.D, analysis.h
    rows = []
    for j in plan.relevant:
        rows.append({
            "state": names[j],
            "h": None if h[j].is_zero else f"h_{names[j]}",
            "terms": [(f"D_{names[k]}_{names[j]}", names[k]) for k in plan.relevant
                      if not D[k][j].is_zero],
        })
    return rows


def param_traces(analysis: Analysis, plan: TracePlan) -> list[dict]:
    """Per-neuron traces eps^p_k = sum_j D_kj eps^p_j + q_pk of each learnable parameter."""
    names, D = analysis.names, analysis.D
    traces = []
    for p, q in analysis.q.items():
        comps = [k for k in plan.relevant if k in plan.param_reach[p]]
        traces.append({
            "param": p.name,
            "rows": [{
                "state": names[k],
                "terms": [(f"D_{names[k]}_{names[j]}", names[j]) for j in comps if not D[k][j].is_zero],
                "q": None if q[k].is_zero else f"q_{p.name}_{names[k]}",
            } for k in comps],
        })
    return traces


def render(model: NeuronModel, backend: str = "numpy", dense: bool = False) -> str:
    """The generated file of ``model`` for ``backend``; ``dense`` forces every trace per synapse."""
    values = cuda_context(model, dense) if backend == "cuda" else context(model, dense=dense)
    return render_context(backend, values)


def render_context(backend: str, values: dict) -> str:
    """Render ``backend``'s template with a context made by ``context`` or ``cuda_context``."""
    template, _ = BACKENDS[backend]
    return environment().get_template(f"{backend}/{template}{TEMPLATE_SUFFIX}").render(values)


def generate(model: NeuronModel, out_dir: str | Path = "generated", backends=("numpy",)) -> list[Path]:
    """Write the generated files of ``model`` under ``out_dir/<model>/``; return their paths."""
    folder = Path(out_dir) / model.name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for backend in backends:
        path = folder / BACKENDS[backend][1]
        text = render(model, backend)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _names(exprs) -> set[str]:
    return {s.name for e in exprs for s in e.free_symbols}


# -- CUDA ------------------------------------------------------------------------------------
# The CUDA template gets the backend-neutral context printed with the CUDA printer, plus the
# kernels' argument lists and the lines of the fused trace kernels, built here so that the
# drivers in symgrad.runtime.cuda bind arguments by the very names the template declares.

@dataclass(frozen=True)
class KernelArg:
    """One argument of a generated kernel; the drivers pass values by ``name``."""

    name: str
    ctype: str  # "int", "real", "const real*" or "real*"
    note: str

    @property
    def declaration(self) -> str:
        if self.ctype.endswith("*"):
            return f"{self.ctype} __restrict__ {self.name}"
        return f"const {self.ctype} {self.name}"


@dataclass(frozen=True)
class Kernel:
    """A ``template <typename real> __global__`` kernel: its name and arguments."""

    name: str
    args: tuple

    def parameter_lines(self) -> list[str]:
        """The parameter list, one argument a line with its comment, aligned."""
        texts = [a.declaration + ("," if i + 1 < len(self.args) else ")") for i, a in enumerate(self.args)]
        width = max(len(t) for t in texts)
        return [f"{t:<{width}}  // {a.note}" for t, a in zip(texts, self.args)]


def cuda_context(model: NeuronModel, dense: bool = False) -> dict:
    """The template context of the CUDA backend (see templates/cuda/layer.cu.j2)."""
    analysis = Analysis(model)
    plan = TracePlan(analysis, dense=dense)
    ctx = _context(analysis, plan, printing.cuda_code, printing.cuda_helper)
    entries = statements.entry_names(analysis)
    shared = [n for n in model.param_names if n not in {p.name for p in model.neuron_params}]
    ctx.update(
        input=model.input.name,
        param_index={n: "0" if n in shared else "neuron" for n in model.param_names},
        fixed_index={n: "0" if e.kind == CONSTANT else "post" for n, e in entries.items()},
        step_per_neuron=any(p in model.neuron_params for p in model.param_symbols
                            if p.name in ctx["step_params"]),
        helper_docs={printing.cuda_helper(cls)[0]: _first_line(inspect.getdoc(cls))
                     for cls in printing.used_functions([s.expr for s in statements.neuron_step(analysis)
                                                         + statements.fixed_entries(analysis)])},
    )
    ctx["fixed_kernel"] = _fixed_kernel(ctx)
    ctx["neuron_kernel"] = _neuron_kernel(ctx)
    ctx["synapse"] = _synapse_kernel(analysis, plan, entries, ctx)
    ctx["presynaptic_kernel"] = _presynaptic_kernel(analysis, plan, entries) if plan.presynaptic else None
    ctx["param_kernel"] = _param_kernel(entries, ctx) if ctx["param_traces"] else None
    ctx["kernels"] = [k for k in (ctx["fixed_kernel"], ctx["neuron_kernel"], ctx["synapse"]["kernel"],
                                  ctx["presynaptic_kernel"] and ctx["presynaptic_kernel"]["kernel"],
                                  ctx["param_kernel"] and ctx["param_kernel"]["kernel"]) if k]
    _check_cuda_names(model, ctx)
    return ctx


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].replace("``", "") if doc else ""


def cuda_kernels(model: NeuronModel, dense: bool = False) -> list[Kernel]:
    """The kernels that the generated .cu of ``model`` defines, in order."""
    return cuda_context(model, dense)["kernels"]


def _param_note(name: str, ctx: dict) -> str:
    return f"{name}: per neuron (n)" if ctx["param_index"][name] == "neuron" else f"{name}: one value (1)"


def _fixed_kernel(ctx: dict) -> Kernel | None:
    if not ctx["fixed"]:
        return None
    args = [KernelArg("n", "int", "neurons: one thread each")]
    args += [KernelArg(f"p_{p}", "const real*", _param_note(p, ctx)) for p in ctx["fixed_params"]]
    args += [KernelArg(f"K_{f['name']}", "real*", f"{f['name']} (n), {ctx['kind'][f['name']]}: written")
             for f in ctx["fixed"]]
    return Kernel("fixed_entries", tuple(args))


def _neuron_kernel(ctx: dict) -> Kernel:
    uses_input = any(re.search(rf"\b{re.escape(ctx['input'])}\b", s["code"]) for s in ctx["step"])
    args = [KernelArg("size", "int", "batch * n: one thread per sample and neuron")]
    if ctx["step_per_neuron"]:
        args.append(KernelArg("n", "int", "neurons"))
    if uses_input:
        args.append(KernelArg("input", "const real*", f"{ctx['input']}_t (batch, n): synaptic input"))
    args += [KernelArg(f"s_{s}", "const real*", f"{s}_t-1 (batch, n)") for s in ctx["step_states"]]
    args += [KernelArg(f"p_{p}", "const real*", _param_note(p, ctx)) for p in ctx["step_params"]]
    args += [KernelArg(f"s_{s}_new", "real*", f"{s}_t (batch, n): written") for s in ctx["states"]]
    args.append(KernelArg("out_z", "real*", "z_t (batch, n): written"))
    args += [KernelArg(f"J_{n}", "real*", f"{n} (batch, n): written") for n in ctx["dynamic"]]
    return Kernel("neuron_step", tuple(args))


class _Uses:
    """Jacobian entries a kernel reads, in the order of ``entries``: dynamic ones per sample
    (``J_<name>[bi]``), fixed ones loaded once per thread into a local named after the entry."""

    def __init__(self, entries: dict):
        self.entries, self.used = entries, set()

    def ref(self, name: str) -> str:
        self.used.add(name)
        return f"J_{name}[bi]" if self.entries[name].kind == DYNAMIC else name

    def times(self, name: str, operand: str) -> str:
        """``name * operand``, or the operand alone when the entry is the number 1."""
        if self.entries[name].expr == 1:
            return operand
        return f"{self.ref(name)} * {operand}"

    def dynamic(self) -> list[str]:
        return [n for n, e in self.entries.items() if n in self.used and e.kind == DYNAMIC]

    def fixed(self) -> list[str]:
        return [n for n, e in self.entries.items() if n in self.used and e.kind != DYNAMIC]

    def args(self) -> list[KernelArg]:
        return ([KernelArg(f"J_{n}", "const real*", f"{n}_t (batch, n)") for n in self.dynamic()]
                + [KernelArg(f"K_{n}", "const real*", f"{n} (n), {_fixed_note(self.entries[n].kind)}")
                   for n in self.fixed()])


def _fixed_note(kind: str) -> str:
    return "constant: element 0 is read" if kind == CONSTANT else kind


def _sum(terms: list[str]) -> str:
    return " + ".join(terms) if terms else "0"


def _trace_update(analysis: Analysis, step, uses: _Uses) -> dict:
    """eps_k,t = sum_j D_kj eps_j,t-1 + c_k u_t, reading the previous values (kept in registers)."""
    names, c = analysis.names, analysis.c
    k = step.index
    terms = [(f"D_{names[k]}_{names[j]}", names[j]) for j in step.reads]
    if not c[k].is_zero:
        terms.append((f"c_{names[k]}", None))
    return {
        "state": names[k],
        "equation": f"eps_{names[k]} = " + " + ".join(
            f"{coef} * {'eps_' + src if src else 'u'}" for coef, src in terms),
        "code": _sum([uses.times(coef, f"eps_{src}" if src else "u_j") for coef, src in terms]),
        "reads": [names[j] for j in step.reads],
        "input": not c[k].is_zero,
    }


def _synapse_kernel(analysis: Analysis, plan: TracePlan, entries: dict, ctx: dict) -> dict:
    names, eligible = analysis.names, ctx["eligible"]
    uses = _Uses(entries)
    per_synapse = [names[k] for k in plan.per_synapse]
    updates = [_trace_update(analysis, step, uses) for step in plan.steps
               if names[step.index] in per_synapse or names[step.index] in eligible]
    for up in updates:
        up["store"] = up["state"] in per_synapse
    e = _sum([uses.times(f"h_{s}", f"eps_{s}_new") for s in eligible])
    read = {s for up in updates for s in up["reads"]}
    loads = [s for s in names if s in read]
    uses_input = any(up["input"] for up in updates)
    args = [KernelArg("batch", "int", "samples: each thread loops over them"),
            KernelArg("n", "int", "post neurons"),
            KernelArg("n_pre", "int", "presynaptic inputs; one thread per synapse (post, pre)")]
    if uses_input:
        args.append(KernelArg("u", "const real*", "u_t (batch, pre): presynaptic input"))
    for s in names:
        if s in per_synapse:
            args.append(KernelArg(f"trace_{s}", "real*", f"eps_{s} (batch, n, pre), per-synapse: updated"))
        elif s in loads:
            args.append(KernelArg(f"trace_{s}", "const real*",
                                  f"eps_{s}_t-1 (batch, pre), presynaptic: read only"))
    args += uses.args()
    args += [
        KernelArg("L", "const real*", "learning signal L_t (batch, n), or null"),
        KernelArg("kappa", "real", "the readout's leak: ebar_t = kappa ebar_t-1 + e_t"),
        KernelArg("ebar", "real*", "filtered eligibility (batch, n, pre): updated, or null"),
        KernelArg("seq_sum", "real*", "(batch, n, pre): += w ebar_t (w e_t without ebar), or null"),
        KernelArg("seq_weight", "real", "w, this step's weight in seq_sum"),
        KernelArg("grad", "real*", "(n, pre): += sum_b L_t ebar_t (e_t without ebar) when L is given"),
        KernelArg("reg_sum", "real*", "(n, pre): += sum_b e_t for the rate regulariser, or null"),
    ]
    return {
        "kernel": Kernel("synapse_step", tuple(args)),
        "fixed": uses.fixed(),
        "loads": [(s, s in per_synapse) for s in loads],
        "input": uses_input,
        "updates": updates,
        "e": e,
    }


def _presynaptic_kernel(analysis: Analysis, plan: TracePlan, entries: dict) -> dict:
    names = analysis.names
    uses = _Uses(entries)
    updates = [_trace_update(analysis, step, uses) for step in plan.steps if step.index in plan.presynaptic]
    read = {s for up in updates for s in up["reads"]}
    uses_input = any(up["input"] for up in updates)
    args = [KernelArg("size", "int", "batch * n_pre: one thread per sample and input")]
    if uses_input:
        args.append(KernelArg("u", "const real*", "u_t (batch, pre): presynaptic input"))
    args += [KernelArg(f"trace_{names[k]}", "real*", f"eps_{names[k]} (batch, pre): updated")
             for k in plan.presynaptic]
    args += uses.args()
    return {
        "kernel": Kernel("presynaptic_step", tuple(args)),
        "fixed": uses.fixed(),
        "loads": [s for s in names if s in read],
        "input": uses_input,
        "updates": updates,
    }


def _param_kernel(entries: dict, ctx: dict) -> dict:
    uses = _Uses(entries)
    params = []
    for pt in ctx["param_traces"]:
        p = pt["param"]
        rows = []
        for row in pt["rows"]:
            terms = [uses.times(coef, f"eps_{p}_{src}") for coef, src in row["terms"]]
            if row["q"]:
                terms.append(uses.ref(row["q"]))
            equation = " + ".join([f"{coef} * eps^{p}_{src}" for coef, src in row["terms"]]
                                  + ([row["q"]] if row["q"] else []))
            rows.append({"state": row["state"], "code": _sum(terms),
                         "equation": f"eps^{p}_{row['state']} = {equation or '0'}"})
        reads = {src for row in pt["rows"] for _, src in row["terms"]}
        e = _sum([uses.times(f"h_{row['state']}", f"eps_{p}_{row['state']}_new")
                  for row in pt["rows"] if row["state"] in ctx["eligible"]])
        params.append({"param": p, "rows": rows, "loads": [r["state"] for r in pt["rows"] if r["state"] in reads],
                       "e": e})
    fixed = uses.fixed()
    args = [KernelArg("size", "int", "batch * n: one thread per sample and neuron")]
    if fixed:
        args.append(KernelArg("n", "int", "neurons"))
    args += uses.args()
    for pt in params:
        args += [KernelArg(f"trace_{pt['param']}_{r['state']}", "real*",
                           f"eps^{pt['param']}_{r['state']} (batch, n): updated") for r in pt["rows"]]
        args.append(KernelArg(f"e_{pt['param']}", "real*",
                              f"e^{pt['param']}_t = h_t . eps^{pt['param']}_t (batch, n): written"))
    return {"kernel": Kernel("param_traces", tuple(args)), "fixed": fixed, "params": params}


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


def _check_cuda_names(model: NeuronModel, ctx: dict) -> None:
    user = set(model.state_names) | set(model.param_names) | {model.input.name, "z"}
    user |= {f"{s}_new" for s in model.state_names} | {s["name"] for s in ctx["step"]}
    user |= set(ctx["kind"])
    internal = set(_CUDA_WORDS) | {name for name, _, _ in ctx["helpers"]}
    internal |= set(printing.cuda_function_names())
    for kernel in (ctx["fixed_kernel"], ctx["neuron_kernel"]):
        if kernel:
            internal |= {a.name for a in kernel.args}
    clash = sorted(user & internal)
    if clash:
        raise ModelError(f"model {model.name!r}: the name(s) {', '.join(clash)} clash with names in "
                         "the generated CUDA code; rename them")
