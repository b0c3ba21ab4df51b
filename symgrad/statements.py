"""The statements every backend prints: one neuron step and the fixed Jacobian entries.

Backends differ only in how they print an expression and lay statements out; the list of
statements, their names and their order come from here, so every backend computes the same
thing. Names, as the naming table (``symgrad.names``) spells them where nothing clashes:

    <s>            previous value of state s          <s>_new   its new value
    z              output on the new state            x<i>      a shared subexpression
    D_<k>_<j>      d s_k,t / d s_j,t-1                 c_<k>     d s_k,t / d I_t
    h_<k>          d z_t / d s_k,t                     q_<p>_<k> d s_k,t / d p
    dz_<p>         d z_t / d p
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .analysis import Analysis
from .model import stop_gradient
from .names import NEW


@dataclass(frozen=True)
class Statement:
    """``name = expr``; ``source`` is the equation it comes from, for the comment."""

    name: str
    expr: sp.Expr
    source: str = ""
    temporary: bool = False


def forward_value(expr: sp.Expr) -> sp.Expr:
    """The forward-pass value: stop_gradient is the identity there."""
    return expr.replace(stop_gradient, lambda e: e)


def neuron_step(analysis: Analysis) -> list[Statement]:
    """s_t, z_t and the dynamic Jacobian entries, with common subexpressions shared.

    Two phases: the update and D, c, q entries read the previous state; the output and h, dz
    read the new one, so their shared subexpressions can only follow the new states.
    """
    model, names = analysis.model, analysis.naming
    to_new = {s: sp.Symbol(names.of(NEW, s.name)) for s in model.state_symbols}
    dynamic = {n: e for n, e in analysis.entries().items() if not e.is_fixed}
    before = [(to_new[s].name, model.update[s], eq)
              for s, eq in zip(model.state_symbols, model.equations())]
    before += [(n, e.expr, f"{n} = {model.previous(e.expr)}") for n, e in dynamic.items()
               if not analysis.of_output(n)]
    after = [(names.word("z"), model.output.subs(to_new), model.equations()[-1])]
    after += [(n, e.expr.subs(to_new), f"{n} = {model.current(e.expr)}") for n, e in dynamic.items()
              if analysis.of_output(n)]
    symbols = (sp.Symbol(name) for name in names.temporaries())
    statements = []
    for group in (before, after):
        temporaries, reduced = sp.cse([forward_value(expr) for _, expr, _ in group],
                                      symbols=symbols, order="canonical")
        statements += [Statement(str(t), e, temporary=True) for t, e in temporaries]
        statements += [Statement(name, e, source) for (name, _, source), e in zip(group, reduced)]
    return statements


def fixed_entries(analysis: Analysis) -> list[Statement]:
    """Entries known before the run (constant or per-neuron), computed once per run; one equal
    to 1 is not: every backend prints the number instead of reading it."""
    return [Statement(n, forward_value(e.expr), f"{n} = {e.expr}")
            for n, e in analysis.entries().items() if e.is_fixed and e.expr != 1]
