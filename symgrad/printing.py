"""Printing SymPy expressions as NumPy code.

Spikes and surrogate derivatives print as calls of small helpers defined at the top of the
generated module (``spike``, ``triangle_psi``, ...), so the generated code reads like the
model; ``helpers`` returns the source of exactly the helpers an expression list uses.
"""
from __future__ import annotations

import inspect

import sympy as sp
from sympy.printing.numpy import NumPyPrinter as _SymPyNumPyPrinter

from .surrogates import Pseudo, Spike


class NumPyPrinter(_SymPyNumPyPrinter):
    """Element-wise NumPy code, with ``np.`` as the module prefix."""

    def __init__(self):
        super().__init__({"inline": True})

    def _module_format(self, fqn, register=True):
        name = super()._module_format(fqn, register)
        return name.replace("numpy.", "np.") if name.startswith("numpy.") else name

    def _print_Spike(self, expr):
        return f"spike({self._print(expr.args[0])})"

    def _print_Pseudo(self, expr):
        return f"{type(expr).__name__}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr):
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("np.minimum", expr.args)

    def _print_Abs(self, expr):
        return f"np.abs({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _fold(self, func, args):
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{func}({text}, {self._print(arg)})"
        return text

    def _print_Function(self, expr):
        if isinstance(expr, Spike):
            return self._print_Spike(expr)
        if isinstance(expr, Pseudo):
            return self._print_Pseudo(expr)
        return super()._print_Function(expr)


_PRINTER = NumPyPrinter()


def numpy_code(expr: sp.Expr) -> str:
    return _PRINTER.doprint(expr)


def used_functions(exprs) -> list[type]:
    """The spike and surrogate classes appearing in ``exprs``, in a stable order."""
    found = {type(f) for e in exprs for f in e.atoms(sp.Function) if isinstance(f, (Spike, Pseudo))}
    return sorted(found, key=lambda cls: (issubclass(cls, Pseudo), cls.__name__))


def numpy_helper(cls: type) -> tuple[str, str, str]:
    """(name, argument list, body expression) of the NumPy helper for a spike or surrogate."""
    if issubclass(cls, Spike):
        return "spike", "x", "(x > 0).astype(x.dtype)"
    names = list(inspect.signature(cls.formula).parameters)
    return cls.__name__, ", ".join(names), numpy_code(cls.formula(*sp.symbols(names)))
