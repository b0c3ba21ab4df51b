"""Rendering a model's analysis and trace plan through the backend templates.

Every backend has the same template names under ``templates/<backend>/``; the context
they get is built here once, backend-neutral, and the backend's printer turns SymPy
expressions into code. Jinja runs with ``StrictUndefined``, so a template that asks for
something the context lacks fails loudly instead of printing nothing.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import jinja2
import sympy as sp

from . import __version__, printing, statements
from .analysis import Analysis
from .model import NeuronModel
from .plan import PER_SYNAPSE, PRESYNAPTIC, TracePlan

TEMPLATE_SUFFIX = ".j2"
BACKENDS = {"numpy": ("layer.py", "numpy_layer.py")}


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
    plan = TracePlan(analysis, dense=dense)
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
    template, _ = BACKENDS[backend]
    return environment().get_template(f"{backend}/{template}{TEMPLATE_SUFFIX}").render(context(model, dense=dense))


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
