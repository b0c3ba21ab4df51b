"""Per-neuron Jacobians of a model and the sparsity class of each entry.

For the update map s_t = f(s_{t-1}, I_t; theta) and the output z_t = g(s_t):

    D = df/ds (S x S)    c = df/dI (S)    h = dg/ds (S)    q[p] = df/dp (S) for each parameter

Each entry is classified once, symbolically, as one of

    zero        structurally zero: never computed, never stored
    constant    depends only on parameters shared by the whole layer
    per-neuron  depends on per-neuron parameters (and no state or input)
    dynamic     depends on the state or the input: changes per neuron and per step
"""
from __future__ import annotations

import cmath
import random
from dataclasses import dataclass

import sympy as sp

from .model import NeuronModel, stop_gradient
from .surrogates import Pseudo, Spike

ZERO, CONSTANT, PER_NEURON, DYNAMIC = "zero", "constant", "per-neuron", "dynamic"
CLASSES = (ZERO, CONSTANT, PER_NEURON, DYNAMIC)


@dataclass(frozen=True)
class Entry:
    """One Jacobian entry: its expression and its class."""

    expr: sp.Expr
    kind: str

    @property
    def is_zero(self) -> bool:
        return self.kind == ZERO

    @property
    def is_fixed(self) -> bool:
        """Known before the run starts (constant or per-neuron)."""
        return self.kind in (CONSTANT, PER_NEURON)


def classify(expr: sp.Expr, model: NeuronModel) -> str:
    """The sparsity class of ``expr``, a derivative of ``model``'s maps."""
    if _is_zero(expr):
        return ZERO
    free = expr.free_symbols
    if free & (set(model.states) | {model.input}):
        return DYNAMIC
    if free & set(model.neuron_params):
        return PER_NEURON
    return CONSTANT


def _is_zero(expr: sp.Expr) -> bool:
    """Whether ``expr`` is identically zero.

    Full simplification can take minutes on a large derivative, so first evaluate at a few
    points, with every spike, surrogate and stop_gradient application standing for an
    independent number: a non-zero value proves the entry non-zero. Only an expression that
    vanishes at every point goes through ``simplify``.
    """
    if expr == 0:
        return True
    names = (sp.Symbol(f"_application{i}") for i in range(10**6))
    generic = expr.replace(lambda e: isinstance(e, (Spike, Pseudo, stop_gradient)), lambda e: next(names))
    rng = random.Random(0)
    for _ in range(3):
        point = {s: sp.Float(rng.uniform(0.1, 0.9)) for s in sorted(generic.free_symbols, key=str)}
        value = complex(generic.xreplace(point).evalf())
        if cmath.isfinite(value) and abs(value) > 1e-12:
            return False
    return sp.simplify(expr) == 0


class Analysis:
    """The Jacobians of ``model`` with their classes.

    ``D[k][j]`` is the derivative of state k's update by the previous state j; ``c[k]`` by the
    input; ``h[k]`` the output's derivative by the new state k; ``q[p][k]`` state k's update by
    parameter p (for the learnable parameters).
    """

    def __init__(self, model: NeuronModel):
        self.model = model
        states = model.state_symbols
        updates = [model.update[s] for s in states]
        self.D = [[self._entry(sp.diff(f, s)) for s in states] for f in updates]
        self.c = [self._entry(sp.diff(f, model.input)) for f in updates]
        self.h = [self._entry(sp.diff(model.output, s)) for s in states]
        self.q = {p: [self._entry(sp.diff(f, p)) for f in updates] for p in model.learnable}

    def _entry(self, expr: sp.Expr) -> Entry:
        kind = classify(expr, self.model)
        return Entry(sp.S.Zero if kind == ZERO else expr, kind)

    # -- views ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.model.state_names

    def classes(self) -> dict:
        return {
            "D": [[e.kind for e in row] for row in self.D],
            "c": [e.kind for e in self.c],
            "h": [e.kind for e in self.h],
            "q": {p.name: [e.kind for e in row] for p, row in self.q.items()},
        }

    # -- notebook display ----------------------------------------------------------------
    def _repr_latex_(self) -> str:
        m = self.model
        lines = [rf"{sp.latex(s)}_t &= {sp.latex(m.update[s])}" for s in m.state_symbols]
        lines.append(rf"z_t &= {sp.latex(m.output)}")

        def matrix(rows):
            body = r" \\ ".join(" & ".join(_tagged(e) for e in row) for row in rows)
            return rf"\begin{{bmatrix}} {body} \end{{bmatrix}}"

        lines.append(rf"D &= {matrix(self.D)}")
        lines.append(rf"c &= {matrix([[e] for e in self.c])}")
        lines.append(rf"h &= {matrix([self.h])}")
        for p, row in self.q.items():
            lines.append(rf"q_{{{sp.latex(p)}}} &= {matrix([[e] for e in row])}")
        return r"$$\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}$$"


_COLOURS = {ZERO: "gray", CONSTANT: "blue", PER_NEURON: "teal", DYNAMIC: "red"}


def _tagged(entry: Entry) -> str:
    return rf"\color{{{_COLOURS[entry.kind]}}}{{{sp.latex(entry.expr)}}}"
