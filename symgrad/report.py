"""What ``symgrad inspect`` shows: a model's equations, Jacobians, classes, plan and memory."""
from __future__ import annotations

import sympy as sp

from .analysis import Analysis
from .plan import PER_SYNAPSE, PRESYNAPTIC, TracePlan, unheard_input


def as_json(analysis: Analysis, plan: TracePlan) -> dict:
    model = analysis.model
    classes = analysis.classes()
    return {
        "model": model.name,
        "states": model.state_names,
        "params": {p.name: v for p, v in model.params.items()},
        "update": {s.name: str(model.update[s]) for s in model.state_symbols},
        "output": str(model.output),
        "jacobian": {"D": classes["D"], "c": classes["c"], "h": classes["h"]},
        "plan": plan.by_name(),
    }


def header(analysis: Analysis, plan: TracePlan) -> list[str]:
    """The lines that open every generated file: equations, Jacobian classes, trace plan."""
    model, names = analysis.model, analysis.names
    width = max(len(n) for n in names)
    lines = [f"Model {model.name}:", ""]
    lines += [f"    {equation}" for equation in model.equations()]
    lines += ["", "Jacobian classes (D[k][j] = d s_k,t / d s_j,t-1):", ""]
    for k, row in enumerate(analysis.D):
        lines.append(f"    D[{names[k]:>{width}}] = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for label, row in (("c", analysis.c), ("h", analysis.h)):
        lines.append(f"    {label + ' ' * (width + 2)} = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for p, row in analysis.q.items():
        lines.append(f"    q[{p.name}] = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for p, entry in analysis.dz.items():
        lines.append(f"    dz/d{p.name} = {entry.kind}")
    lines += ["", "Trace plan:", ""]
    shape = {PRESYNAPTIC: "(batch, pre)", PER_SYNAPSE: "(batch, post, pre)"}
    for k, name in enumerate(names):
        kind = plan.kinds[k]
        lines.append(f"    eps_{name:<{width}}  {kind:<12} {shape.get(kind, 'not stored')}")
    return lines


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def as_text(analysis: Analysis, plan: TracePlan, batch: int, n: int, n_pre: int, itemsize: int) -> str:
    model, names = analysis.model, analysis.names
    out = [f"model {model.name}", ""]
    if model.doc:
        out += ["  " + line.strip() for line in model.doc.strip().splitlines()[:1]] + [""]
    out.append("equations:")
    out += [f"  {equation}" for equation in model.equations()]
    out += ["", "parameters:"]
    out += [f"  {p.name} = {v:g}" + (" (learnable)" if p in model.learnable else "")
            for p, v in model.params.items()]
    out += ["", "Jacobians (class: expression):"]
    for k, row in enumerate(analysis.D):
        for j, e in enumerate(row):
            out.append(f"  D[{names[k]},{names[j]}]  {e.kind:<10}  {sp.sstr(e.expr)}")
    for label, row in (("c", analysis.c), ("h", analysis.h)):
        out += [f"  {label}[{names[k]}]  {e.kind:<10}  {sp.sstr(e.expr)}" for k, e in enumerate(row)]
    for p, row in analysis.q.items():
        out += [f"  q[{p.name},{names[k]}]  {e.kind:<10}  {sp.sstr(e.expr)}" for k, e in enumerate(row)]
    out += [f"  dz/d{p.name}  {e.kind:<10}  {sp.sstr(e.expr)}" for p, e in analysis.dz.items()]
    out += ["", "trace plan:"]
    out += [f"  eps_{name}: {kind}" for name, kind in plan.by_name().items()]
    unheard = unheard_input(model.input, plan.eligible)
    if unheard:
        out.append(f"  warning: {unheard}")
    for name, coefs in plan.filter_coefficients().items():
        terms = [f"{sp.sstr(c)} * eps_{j}" for j, c in coefs["D"].items()]
        if coefs["c"] != 0:
            terms.append(f"{sp.sstr(coefs['c'])} * u")
        out.append(f"  filter of eps_{name}: eps_{name},t = " + " + ".join(terms))
    rest = plan.quiescence
    if rest.event_driven:
        out += ["", "rows at rest (sample, neuron with every surrogate derivative zero at step t):"]
        out += [f"  when {condition} = 0" for condition in rest.at_rest]
        out += [f"  eps_{name},t = {sp.sstr(decay)} * eps_{name},t-1" for name, decay in rest.decays.items()]
        out.append("  e_t = 0: the filtered eligibility only decays by kappa, and no sum grows")
    else:
        out += ["", f"rows at rest: none ({rest.reason})"]
    out += ["", f"trace memory per layer (batch {batch}, {n} neurons, {n_pre} presynaptic, "
                f"{itemsize}-byte floats):"]
    for label, filtered in (("instantaneous readout (kappa = 0)", False), ("leaky readout", True)):
        figures = plan.memory(batch, n, n_pre, itemsize, filtered=filtered)
        parts = ", ".join(f"{k} {_size(v)}" for k, v in figures.items()
                          if v and k != "total")
        out.append(f"  {label}: {_size(figures['total'])}" + (f" ({parts})" if parts else ""))
    return "\n".join(out)
