"""Per-neuron Jacobians of a model and the sparsity class of each entry.

For the update map s_t = f(s_{t-1}, I_t; theta) and the output z_t = g(s_t; theta):

    D = df/ds (S x S)    c = df/dI (S)    h = dg/ds (S)
    c^p = df/dI_p (S)    for each synaptic input I_p of a model with several
    q[p] = df/dp (S)     dz[p] = dg/dp    for each learnable parameter p

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
from .names import Names
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
    if free & (set(model.states) | set(model.inputs)):
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

    ``D[k][j]`` is the derivative of state k's update by the previous state j; ``c_of[I][k]`` by
    the input I (``c[k]`` where the model has one input); ``h[k]`` the output's derivative by
    the new state k; ``q[p][k]`` state k's update by parameter p and ``dz[p]`` the output's own
    derivative by p (for the learnable parameters).

    The analysis owns the entries' names too (``entry_name``), so that every backend, the plan
    and the runtime spell an entry alike.
    """

    def __init__(self, model: NeuronModel):
        self.model = model
        states = model.state_symbols
        updates = [model.update[s] for s in states]
        self.D = [[self._entry(sp.diff(f, s)) for s in states] for f in updates]
        self.inputs = model.inputs
        self.c_of = {i: [self._entry(sp.diff(f, i)) for f in updates] for i in model.inputs}
        self.c = self.c_of[model.inputs[0]] if len(model.inputs) == 1 else None
        self.h = [self._entry(sp.diff(model.output, s)) for s in states]
        self.q = {p: [self._entry(sp.diff(f, p)) for f in updates] for p in model.learnable}
        self.dz = {p: self._entry(sp.diff(model.output, p)) for p in model.learnable}
        self.naming = Names(model)
        self._names = _entry_names(model, self.naming)
        self._keys = {name: key for key, name in self._names.items()}

    def _entry(self, expr: sp.Expr) -> Entry:
        kind = classify(expr, self.model)
        return Entry(sp.S.Zero if kind == ZERO else expr, kind)

    # -- entries by name ---------------------------------------------------------------------
    def entry_name(self, kind: str, k: int | sp.Symbol | None = None, j=None) -> str:
        """The name of an entry: ``entry_name("D", k, j)``, ``("c", k, I)``, ``("h", k)``,
        ``("q", p, k)`` or ``("dz", p)``, with p a learnable parameter symbol and I an input
        symbol (which a one-input model may leave out)."""
        return self._names[self._key(kind, k, j)]

    def entry(self, kind: str, k=None, j=None) -> Entry:
        if kind == "D":
            return self.D[k][j]
        if kind == "q":
            return self.q[k][j]
        if kind == "dz":
            return self.dz[k]
        if kind == "c":
            return self.c_of[self._key(kind, k, j)[2]][k]
        return self.h[k]

    def _key(self, kind: str, k, j) -> tuple:
        return (kind, k, self.inputs[0]) if kind == "c" and j is None and len(self.inputs) == 1 else (kind, k, j)

    def D_c_entries(self) -> list[Entry]:
        """The entries taken at the previous state: D and every input's c."""
        return [e for row in self.D for e in row] + [e for c in self.c_of.values() for e in c]

    def of_output(self, name: str) -> bool:
        """Whether the entry ``name`` derives the output (h, dz): it is taken at the new state."""
        return self._keys[name][0] in ("h", "dz")

    def entries(self) -> dict[str, Entry]:
        """Every non-zero entry by its name, in the order D, c, h, q, dz."""
        found = {name: self.entry(*key) for key, name in self._names.items()}
        return {name: e for name, e in found.items() if not e.is_zero}

    # -- views ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.model.state_names

    def classes(self) -> dict:
        c = {i.name: [e.kind for e in row] for i, row in self.c_of.items()}
        return {
            "D": [[e.kind for e in row] for row in self.D],
            "c": c[self.inputs[0].name] if len(c) == 1 else c,
            "h": [e.kind for e in self.h],
            "q": {p.name: [e.kind for e in row] for p, row in self.q.items()},
            "dz": {p.name: e.kind for p, e in self.dz.items()},
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
        for i, c in self.c_of.items():
            label = "c" if len(self.c_of) == 1 else rf"c^{{{sp.latex(i)}}}"
            lines.append(rf"{label} &= {matrix([[e] for e in c])}")
        lines.append(rf"h &= {matrix([self.h])}")
        for p, row in self.q.items():
            lines.append(rf"q_{{{sp.latex(p)}}} &= {matrix([[e] for e in row])}")
            lines.append(rf"\frac{{\partial z}}{{\partial {sp.latex(p)}}} &= {_tagged(self.dz[p])}")
        return r"$$\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}$$"


def _entry_keys(model: NeuronModel) -> list[tuple]:
    size = range(len(model.states))
    keys = [("D", k, j) for k in size for j in size] + [("c", k, i) for i in model.inputs for k in size]
    keys += [("h", k, None) for k in size]
    keys += [("q", p, k) for p in model.learnable for k in size]
    return keys + [("dz", p, None) for p in model.learnable]


def _entry_names(model: NeuronModel, naming: Names) -> dict[tuple, str]:
    """Every entry's name, e.g. ``D_a_v`` for d a_t / d v_{t-1}, as the naming table spells it."""
    states = model.state_names

    def name(kind, a, b):
        if kind == "D":
            return naming.entry("D", states[a], states[b])
        if kind == "c":
            return naming.entry("c", states[a], b.name)
        if kind == "q":
            return naming.entry("q", a.name, states[b])
        return naming.entry(kind, a.name if kind == "dz" else states[a])

    return {key: name(*key) for key in _entry_keys(model)}


_COLOURS = {ZERO: "gray", CONSTANT: "blue", PER_NEURON: "teal", DYNAMIC: "red"}


def _tagged(entry: Entry) -> str:
    return rf"\color{{{_COLOURS[entry.kind]}}}{{{sp.latex(entry.expr)}}}"
