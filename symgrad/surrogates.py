"""Spikes and their surrogate derivatives, as SymPy functions.

A spike is a Heaviside step in the forward pass. Its derivative is replaced by a
pseudo-derivative psi, the *surrogate*. Each surrogate family is a pair of SymPy functions:

* ``<family>_spike(x, *params)``: the step; its derivative rule returns ``<family>_psi``;
* ``<family>_psi(x, *params)``: the pseudo-derivative, with an elementary formula
  (``explicit``) that the printers emit, and a smooth primitive (``primitive``) whose
  derivative is psi. Tests replace the step by that primitive to check the symbolic
  Jacobians against finite differences.

The surrogate's own parameters (gamma, width, ...) shape only the backward pass, so the
derivative of a spike with respect to them is zero.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import sympy as sp


class Spike(sp.Function):
    """Heaviside step, spike(x) = 1 if x > 0 else 0, differentiated through ``psi``."""

    psi: type["Pseudo"]

    def fdiff(self, argindex=1):
        if argindex == 1:
            return self.psi(*self.args)
        return sp.S.Zero

    def _sympystr(self, printer):
        return f"spike({printer._print(self.args[0])})"

    def _latex(self, printer):
        return rf"\Theta\left({printer._print(self.args[0])}\right)"


class Pseudo(sp.Function):
    """A surrogate pseudo-derivative psi(x, *params)."""

    symbol = r"\psi"

    compact = False  # zero outside a bounded interval, so a neuron far from threshold rests

    @classmethod
    def formula(cls, x, *params) -> sp.Expr:
        raise NotImplementedError

    @classmethod
    def integral(cls, x, *params) -> sp.Expr:
        raise NotImplementedError

    def explicit(self) -> sp.Expr:
        """The elementary expression that the printers emit."""
        return self.formula(*self.args)

    def primitive(self) -> sp.Expr:
        """A smooth step whose derivative in x is ``explicit``."""
        return self.integral(*self.args)

    def fdiff(self, argindex=1):
        return sp.diff(self.formula(*self.args), self.args[argindex - 1])

    def _sympystr(self, printer):
        return f"{type(self).__name__}({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer):
        return rf"{self.symbol}\left({printer._print(self.args[0])}\right)"


class triangle_psi(Pseudo):
    """gamma / width * max(0, 1 - |x| / width): the e-prop pseudo-derivative (Bellec et al. 2020)."""

    nargs = 3

    compact = True

    @classmethod
    def formula(cls, x, gamma, width):
        return gamma / width * sp.Max(0, 1 - sp.Abs(x) / width)

    @classmethod
    def integral(cls, x, gamma, width):
        return sp.Piecewise(
            (0, x <= -width),
            (gamma / (2 * width**2) * (x + width) ** 2, x <= 0),
            (gamma - gamma / (2 * width**2) * (width - x) ** 2, x <= width),
            (gamma, True),
        )


class fast_sigmoid_psi(Pseudo):
    """1 / (1 + beta |x|)^2: SuperSpike's fast sigmoid (Zenke & Ganguli 2018)."""

    nargs = 2

    @classmethod
    def formula(cls, x, beta):
        return 1 / (1 + beta * sp.Abs(x)) ** 2

    @classmethod
    def integral(cls, x, beta):
        return x / (1 + beta * sp.Abs(x))


class sigmoid_psi(Pseudo):
    """beta * sigma(beta x) * (1 - sigma(beta x)): derivative of a steep logistic."""

    nargs = 2

    @classmethod
    def formula(cls, x, beta):
        s = 1 / (1 + sp.exp(-beta * x))
        return beta * s * (1 - s)

    @classmethod
    def integral(cls, x, beta):
        return 1 / (1 + sp.exp(-beta * x))


class arctan_psi(Pseudo):
    """(alpha / 2) / (1 + (pi alpha x / 2)^2): the arctan surrogate (Fang et al. 2021)."""

    nargs = 2

    @classmethod
    def formula(cls, x, alpha):
        return (alpha / 2) / (1 + (sp.pi * alpha * x / 2) ** 2)

    @classmethod
    def integral(cls, x, alpha):
        return sp.atan(sp.pi * alpha * x / 2) / sp.pi


class triangle_spike(Spike):
    psi = triangle_psi
    nargs = 3


class fast_sigmoid_spike(Spike):
    psi = fast_sigmoid_psi
    nargs = 2


class sigmoid_spike(Spike):
    psi = sigmoid_psi
    nargs = 2


class arctan_spike(Spike):
    psi = arctan_psi
    nargs = 2


@dataclass(frozen=True)
class Surrogate:
    """A surrogate family with its parameters, ready to be given to ``spike``."""

    step: type[Spike]
    params: tuple

    def __call__(self, x) -> sp.Expr:
        return self.step(sp.sympify(x), *self.params)


def _number_or_symbol(value):
    return sp.sympify(value)


def triangle(gamma=0.3, width=1.0) -> Surrogate:
    """e-prop's pseudo-derivative gamma/width * max(0, 1 - |x|/width)."""
    return Surrogate(triangle_spike, (_number_or_symbol(gamma), _number_or_symbol(width)))


def default_width(step: Spike) -> bool:
    """Whether ``step`` is a triangle of the default width, the number 1.0, blind to the threshold
    (``spike(x)`` without a surrogate, or an explicit ``triangle(0.3, 1.0)``: one expression)."""
    if not isinstance(step, triangle_spike):
        return False
    width = step.args[2]
    return width.is_number and float(width) == 1.0


def describe(step: Spike) -> str:
    """``step``'s surrogate with its parameters, ``triangle(gamma=0.3, width=v_th)``; for the
    default width, that it ignores the threshold and how to give one, on one line."""
    names = list(inspect.signature(step.psi.formula).parameters)[1:]  # after x
    params = step.args[1:]
    text = f"{type(step).__name__.removesuffix('_spike')}(" + ", ".join(
        f"{name}={_shown(value)}" for name, value in zip(names, params)) + ")"
    if not default_width(step):
        return text
    gamma, width = params
    return (f"{text}, by default: its width is {_shown(width)} whatever the threshold; give one: "
            f"spike({sp.sstr(step.args[0])}, surrogates.triangle({_shown(gamma)}, width))")


def _shown(value) -> str:
    """A number as Python writes it (0.3, not 0.300000000000000), else the expression."""
    return repr(float(value)) if value.is_number else sp.sstr(value)


def fast_sigmoid(beta=10.0) -> Surrogate:
    """SuperSpike's 1 / (1 + beta|x|)^2."""
    return Surrogate(fast_sigmoid_spike, (_number_or_symbol(beta),))


def sigmoid(beta=5.0) -> Surrogate:
    """The derivative of sigma(beta x)."""
    return Surrogate(sigmoid_spike, (_number_or_symbol(beta),))


def arctan(alpha=2.0) -> Surrogate:
    """(alpha/2) / (1 + (pi alpha x / 2)^2)."""
    return Surrogate(arctan_spike, (_number_or_symbol(alpha),))
