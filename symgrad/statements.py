"""The statements every backend prints: one neuron step and the fixed Jacobian entries.

Backends differ only in how they print an expression and lay statements out; the list of
statements, their names and their order come from here, so every backend computes the same
thing. Names (entries are named by ``Analysis.entry_name``):

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
from .model import ModelError, stop_gradient


@dataclass(frozen=True)
class Statement:
    """``name = expr``; ``source`` is the equation it comes from, for the comment."""

    name: str
    expr: sp.Expr
    source: str = ""
    temporary: bool = False


def new_symbol(state: sp.Symbol) -> sp.Symbol:
    return sp.Symbol(f"{state.name}_new")


def forward_value(expr: sp.Expr) -> sp.Expr:
    """The forward-pass value: stop_gradient is the identity there."""
    return expr.replace(stop_gradient, lambda e: e)


def neuron_step(analysis: Analysis) -> list[Statement]:
    """s_t, z_t and the dynamic Jacobian entries, with common subexpressions shared.

    Two phases: the update and D, c, q entries read the previous state; the output and h, dz
    read the new one, so their shared subexpressions can only follow the new states.
    """
    model = analysis.model
    to_new = {s: new_symbol(s) for s in model.state_symbols}
    _check_generated_names(analysis)
    dynamic = {n: e for n, e in analysis.entries().items() if not e.is_fixed}
    before = [(f"{s.name}_new", model.update[s], eq)
              for s, eq in zip(model.state_symbols, model.equations())]
    before += [(n, e.expr, f"{n} = {model.previous(e.expr)}") for n, e in dynamic.items()
               if not analysis.of_output(n)]
    after = [("z", model.output.subs(to_new), model.equations()[-1])]
    after += [(n, e.expr.subs(to_new), f"{n} = {model.current(e.expr)}") for n, e in dynamic.items()
              if analysis.of_output(n)]
    taken = {s.name for s in model.states} | {p.name for p in model.params} | set(model.input_names)
    symbols = sp.numbered_symbols("x", exclude=[sp.Symbol(n) for n in taken])
    statements = []
    for group in (before, after):
        temporaries, reduced = sp.cse([forward_value(expr) for _, expr, _ in group],
                                      symbols=symbols, order="canonical")
        statements += [Statement(str(t), e, temporary=True) for t, e in temporaries]
        statements += [Statement(name, e, source) for (name, _, source), e in zip(group, reduced)]
    return statements


def fixed_entries(analysis: Analysis) -> list[Statement]:
    """Entries known before the run (constant or per-neuron), computed once per run."""
    return [Statement(n, forward_value(e.expr), f"{n} = {e.expr}")
            for n, e in analysis.entries().items() if e.is_fixed]


def _check_generated_names(analysis: Analysis) -> None:
    """The step's own names (z, <s>_new) must not be a model symbol's name."""
    model = analysis.model
    ours = {"z"} | {f"{s}_new" for s in model.state_names} | set(analysis.entries())
    clash = sorted(ours & ({s.name for s in model.states} | {p.name for p in model.params}
                           | set(model.input_names)))
    if clash:
        raise ModelError(f"model {model.name!r}: the name(s) {', '.join(clash)} are used by the "
                         "generated code itself; rename them")


def step_names(analysis: Analysis) -> set[str]:
    """The names a model declares in the generated neuron step: its symbols, z, <s>_new and the
    Jacobian entries."""
    model = analysis.model
    names = set(model.state_names) | set(model.param_names) | set(model.input_names) | {"z"}
    return names | {f"{s}_new" for s in model.state_names} | set(analysis.entries())


def check_clashes(analysis: Analysis, internal: set, code: str) -> None:
    """A model name that is also one of ``internal``, the names the generated ``code`` uses
    itself, would shadow it (or fail to compile): rejected, naming it."""
    clash = sorted(step_names(analysis) & internal)
    if clash:
        raise ModelError(f"model {analysis.model.name!r}: the name(s) {', '.join(clash)} clash with "
                         f"names in the generated {code} code; rename them")
