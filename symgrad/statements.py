"""The statements every backend prints: one neuron step and the fixed Jacobian entries.

Backends differ only in how they print an expression and lay statements out; the list of
statements, their names and their order come from here, so every backend computes the same
thing. Names:

    <s>            previous value of state s          <s>_new   its new value
    z              output on the new state
    D_<k>_<j>      d s_k,t / d s_j,t-1                 c_<k>     d s_k,t / d I_t
    h_<k>          d z_t / d s_k,t                     q_<p>_<k> d s_k,t / d p
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .analysis import Analysis, Entry
from .model import stop_gradient


@dataclass(frozen=True)
class Statement:
    """``name = expr``; ``source`` is the equation it comes from, for the comment."""

    name: str
    expr: sp.Expr
    source: str = ""
    temporary: bool = False


def entry_names(analysis: Analysis) -> dict[str, Entry]:
    """Every non-zero Jacobian entry by its name (D, then c, h and q)."""
    names = analysis.names
    found = {}
    for k, row in enumerate(analysis.D):
        for j, entry in enumerate(row):
            found[f"D_{names[k]}_{names[j]}"] = entry
    for k, entry in enumerate(analysis.c):
        found[f"c_{names[k]}"] = entry
    for k, entry in enumerate(analysis.h):
        found[f"h_{names[k]}"] = entry
    for p, row in analysis.q.items():
        for k, entry in enumerate(row):
            found[f"q_{p.name}_{names[k]}"] = entry
    return {name: e for name, e in found.items() if not e.is_zero}


def new_symbol(state: sp.Symbol) -> sp.Symbol:
    return sp.Symbol(f"{state.name}_new")


def forward_value(expr: sp.Expr) -> sp.Expr:
    """The forward-pass value: stop_gradient is the identity there."""
    return expr.replace(stop_gradient, lambda e: e)


def neuron_step(analysis: Analysis) -> list[Statement]:
    """s_t, z_t and the dynamic Jacobian entries, with common subexpressions shared.

    Two phases: the update and D, c, q entries read the previous state; the output and h
    read the new one, so their shared subexpressions can only follow the new states.
    """
    model = analysis.model
    to_new = {s: new_symbol(s) for s in model.state_symbols}
    dynamic = {n: e for n, e in entry_names(analysis).items() if not e.is_fixed}
    before = [(f"{s.name}_new", model.update[s], f"{s.name}_t = {model.update[s]}")
              for s in model.state_symbols]
    before += [(n, e.expr, f"{n} = {e.expr}") for n, e in dynamic.items() if not n.startswith("h_")]
    after = [("z", model.output.subs(to_new), f"z_t = {model.output}")]
    after += [(n, e.expr.subs(to_new), f"{n} = {e.expr}") for n, e in dynamic.items()
              if n.startswith("h_")]
    counter = iter(range(10**6))
    statements = []
    for group in (before, after):
        symbols = (sp.Symbol(f"x{i}") for i in counter)
        temporaries, reduced = sp.cse([forward_value(expr) for _, expr, _ in group],
                                      symbols=symbols, order="canonical")
        statements += [Statement(str(t), e, temporary=True) for t, e in temporaries]
        statements += [Statement(name, e, source) for (name, _, source), e in zip(group, reduced)]
    return statements


def fixed_entries(analysis: Analysis) -> list[Statement]:
    """Entries known before the run (constant or per-neuron), computed once per run."""
    return [Statement(n, forward_value(e.expr), f"{n} = {e.expr}")
            for n, e in entry_names(analysis).items() if e.is_fixed]
