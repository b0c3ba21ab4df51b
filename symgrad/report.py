"""What ``symgrad inspect`` shows: a model's equations, Jacobians, classes, plan and memory.

A model with several synaptic inputs has one trace plan per input (``plans``); each is shown
under its input's name.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .analysis import Analysis
from .layouts import CSR, DENSE, Layout
from .memory import size_text
from .plan import PER_SYNAPSE, PRESYNAPTIC, TracePlan, unheard_input
from .printing import linear_text
from .surrogates import Spike, describe


def _listed(plans) -> list[TracePlan]:
    """One plan (a one-input model's) or a list of them."""
    return [plans] if isinstance(plans, TracePlan) else list(plans)


def as_json(analysis: Analysis, plans: list[TracePlan]) -> dict:
    model, plans = analysis.model, _listed(plans)
    classes = analysis.classes()
    several = len(plans) > 1
    found = {
        "model": model.name,
        "states": model.state_names,
        "params": {p.name: v for p, v in model.params.items()},
        **({"derived_from": model.origin.as_json()} if model.origin is not None else {}),
        "update": {s.name: str(model.update[s]) for s in model.state_symbols},
        "output": str(model.output),
        # a model with several inputs: c and the plan are {input: ...}
        "jacobian": {"D": classes["D"], "c": classes["c"], "h": classes["h"]},
        "plan": {p.input.name: p.by_name() for p in plans} if several else plans[0].by_name(),
    }
    return {"model": model.name, "inputs": model.input_names, **found} if several else found


def header(analysis: Analysis, plans: list[TracePlan], layout: Layout = DENSE) -> list[str]:
    """The lines that open every generated file: equations, Jacobian classes, trace plan (its
    per-synapse shapes as ``layout`` stores them)."""
    model, names, plans = analysis.model, analysis.names, _listed(plans)
    width = max(len(n) for n in names)
    several = len(plans) > 1
    labels = {i: f"c[{i.name}]" if several else "c" for i in analysis.inputs}
    column = max([width + 3] + [len(label) for label in labels.values()])
    lines = [f"Model {model.name}:", ""]
    lines += [f"    {equation}" for equation in model.equations()]
    lines += ["", "Jacobian classes (D[k][j] = d s_k,t / d s_j,t-1):", ""]
    for k, row in enumerate(analysis.D):
        lines.append(f"    {f'D[{names[k]:>{width}}]':<{column}} = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    rows = [(labels[i], analysis.c_of[i]) for i in analysis.inputs] + [("h", analysis.h)]
    for label, row in rows:
        lines.append(f"    {label:<{column}} = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for p, row in analysis.q.items():
        lines.append(f"    q[{p.name}] = [" + ", ".join(f"{e.kind:>10}" for e in row) + "]")
    for p, entry in analysis.dz.items():
        lines.append(f"    dz/d{p.name} = {entry.kind}")
    lines += ["", "Trace plan, one set of traces per input:" if several else "Trace plan:"]
    shape = {PRESYNAPTIC: "(batch, pre)", PER_SYNAPSE: layout.synapse_shape if layout.sparse else "(batch, post, pre)"}
    for plan in plans:
        lines += ["", f"    input {plan.input.name}:"] if several else [""]
        indent = " " * (8 if several else 4)
        for k, name in enumerate(names):
            kind = plan.kinds[k]
            lines.append(f"{indent}eps_{name:<{width}}  {kind:<12} {shape.get(kind, 'not stored')}")
    return lines


def as_text(analysis: Analysis, plans: list[TracePlan], batch: int, n: int, n_pre, itemsize: int,
            nnz: list | None = None) -> str:
    """n_pre: the presynaptic inputs of each input's projections (one number: the same for each);
    nnz: the synapses of each input where they are sparse (None: every pair)."""
    model, names, plans = analysis.model, analysis.names, _listed(plans)
    several = len(plans) > 1
    n_pres = n_pre if isinstance(n_pre, (list, tuple)) else [n_pre] * len(plans)
    out = [f"model {model.name}", ""]
    if model.doc:
        out += ["  " + line.strip() for line in model.doc.strip().splitlines()[:1]] + [""]
    if model.origin is not None:  # derived from differential equations: them first, then the map
        out += model.origin.lines() + ["", "equations (the map derived from them):"]
    else:
        out.append("equations:")
    out += [f"  {equation}" for equation in model.equations()]
    if several:
        out += ["", f"synaptic inputs: {', '.join(model.input_names)}"]
    out += ["", "parameters:"]
    out += [f"  {p.name} = {v:g}" + (" (learnable)" if p in model.learnable else "")
            for p, v in model.params.items()]
    out += _spikes_text(model)
    out += ["", "Jacobians (class: expression):"]
    for k, row in enumerate(analysis.D):
        for j, e in enumerate(row):
            out.append(f"  D[{names[k]},{names[j]}]  {e.kind:<10}  {sp.sstr(e.expr)}")
    for i, row in analysis.c_of.items():
        label = f"c_{i.name}" if several else "c"
        out += [f"  {label}[{names[k]}]  {e.kind:<10}  {sp.sstr(e.expr)}" for k, e in enumerate(row)]
    out += [f"  h[{names[k]}]  {e.kind:<10}  {sp.sstr(e.expr)}" for k, e in enumerate(analysis.h)]
    for p, row in analysis.q.items():
        out += [f"  q[{p.name},{names[k]}]  {e.kind:<10}  {sp.sstr(e.expr)}" for k, e in enumerate(row)]
    out += [f"  dz/d{p.name}  {e.kind:<10}  {sp.sstr(e.expr)}" for p, e in analysis.dz.items()]
    for plan, count, synapses in zip(plans, n_pres, nnz or [None] * len(plans)):
        out += _plan_text(plan, several, batch, n, count, itemsize, synapses)
    return "\n".join(out)


def _spikes_text(model) -> list[str]:
    """One line per spike of the model (z_t-1 in the update and z_t in the output are one): its
    surrogate, as symgrad.surrogates describes it."""
    found = dict.fromkeys(node for expr in [*model.update.values(), model.output]
                          for node in sp.preorder_traversal(expr) if isinstance(node, Spike))
    if not found:
        return []
    return ["", "spikes (surrogate derivative):"] + [f"  {sp.sstr(step)}: {describe(step)}" for step in found]


def _plan_text(plan: TracePlan, several: bool, batch: int, n: int, n_pre: int, itemsize: int,
               nnz: int | None = None) -> list[str]:
    """One input's trace plan, rows at rest and memory."""
    of = f" of input {plan.input.name}" if several else ""
    out = ["", f"trace plan{of}:"]
    out += [f"  eps_{name}: {kind}" for name, kind in plan.by_name().items()]
    unheard = unheard_input(plan.input, plan.eligible)
    if unheard:
        out.append(f"  warning: {unheard}")
    for name, coefs in plan.filter_coefficients().items():
        terms = [(c, f"eps_{j}") for j, c in coefs["D"].items()]
        terms += [(coefs["c"], "u")] if coefs["c"] != 0 else []
        out.append(f"  filter of eps_{name}: eps_{name},t = {linear_text(terms)}")
    rest = plan.quiescence
    if rest.event_driven:
        out += ["", f"rows at rest{of} (sample, neuron with every surrogate derivative zero at step t):"]
        out += [f"  when {condition} = 0" for condition in rest.at_rest]
        out += [f"  eps_{name},t = " + linear_text([(decay, f"eps_{name},t-1")])
                for name, decay in rest.decays.items()]
        out.append("  e_t = 0: the filtered eligibility only decays by kappa, and no sum grows")
    else:
        out += ["", f"rows at rest{of}: none ({rest.reason})"]
    sparse = f", {nnz:,} synapses ({nnz / (n * n_pre):.1%})" if nnz is not None else ""
    stored = plan if nnz is None else replace(plan.summary(), layout=CSR)  # per-synapse arrays (batch, nnz)
    out += ["", f"trace memory per layer{of} (batch {batch}, {n} neurons, {n_pre} presynaptic{sparse}, "
                f"{itemsize}-byte floats):"]
    for label, filtered in (("instantaneous readout (kappa = 0)", False), ("leaky readout", True)):
        figures = stored.memory(batch, n, n_pre, itemsize, filtered=filtered, nnz=nnz)
        parts = ", ".join(f"{k} {size_text(v)}" for k, v in figures.items()
                          if v and k != "total")
        out.append(f"  {label}: {size_text(figures['total'])}" + (f" ({parts})" if parts else ""))
    return out
