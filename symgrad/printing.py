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


class _ModelFunctions:
    """Spikes, surrogates, max, min and abs, printed alike by every backend's printer.

    A backend names its maximum, minimum and absolute-value functions; ``_arg`` prints a
    function argument (the CUDA printer makes numbers ``real`` literals there).
    """

    maximum = minimum = absolute = ""

    def _arg(self, expr) -> str:
        return self._print(expr)

    def _fold(self, func, args):
        text = self._arg(args[0])
        for arg in args[1:]:
            text = f"{func}({text}, {self._arg(arg)})"
        return text

    def _print_Max(self, expr):
        return self._fold(self.maximum, expr.args)

    def _print_Min(self, expr):
        return self._fold(self.minimum, expr.args)

    def _print_Abs(self, expr):
        return f"{self.absolute}({self._arg(expr.args[0])})"

    def _print_Spike(self, expr):
        return f"spike({self._arg(expr.args[0])})"

    def _print_Pseudo(self, expr):
        return f"{type(expr).__name__}({', '.join(self._arg(a) for a in expr.args)})"

    def _print_Function(self, expr):
        if isinstance(expr, Spike):
            return self._print_Spike(expr)
        if isinstance(expr, Pseudo):
            return self._print_Pseudo(expr)
        return super()._print_Function(expr)


class NumPyPrinter(_ModelFunctions, _SymPyNumPyPrinter):
    """Element-wise NumPy code, with ``np.`` as the module prefix."""

    maximum, minimum, absolute = "np.maximum", "np.minimum", "np.abs"

    def __init__(self):
        super().__init__({"inline": True})

    def _module_format(self, fqn, register=True):
        name = super()._module_format(fqn, register)
        return name.replace("numpy.", "np.") if name.startswith("numpy.") else name

    def _print_Float(self, expr):
        return repr(float(expr))


class NumbaPrinter(NumPyPrinter):
    """Scalar code for the Numba kernels: NumPy's, with conditions as Python expressions
    (Numba has no scalar np.select, which NumPy's printer uses for Piecewise and Heaviside)."""

    def _print_Piecewise(self, expr):
        text = self._print(sp.nan)
        for value, condition in reversed(expr.args):
            value = self._print(value)
            text = value if condition == sp.true else f"({value} if {self._print(condition)} else {text})"
        return text

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"


_PRINTER = NumPyPrinter()
_NUMBA_PRINTER = NumbaPrinter()


def numpy_code(expr: sp.Expr) -> str:
    return _PRINTER.doprint(expr)


def numba_code(expr: sp.Expr) -> str:
    return _NUMBA_PRINTER.doprint(expr)


def used_functions(exprs) -> list[type]:
    """The spike and surrogate classes appearing in ``exprs``, in a stable order.

    Every spike family steps alike, so all of them share one helper, listed as ``Spike``: a
    model with two surrogate families must not define ``spike`` twice (C++ refuses that).
    """
    found = {Spike if isinstance(f, Spike) else type(f)
             for e in exprs for f in e.atoms(sp.Function) if isinstance(f, (Spike, Pseudo))}
    return sorted(found, key=lambda cls: (issubclass(cls, Pseudo), cls.__name__))


def numpy_helper(cls: type) -> tuple[str, str, str]:
    """(name, argument list, body expression) of the NumPy helper for a spike or surrogate."""
    if issubclass(cls, Spike):
        return "spike", "x", "(x > 0).astype(x.dtype)"
    names = list(inspect.signature(cls.formula).parameters)
    return cls.__name__, ", ".join(names), numpy_code(cls.formula(*sp.symbols(names)))


# -- CUDA --------------------------------------------------------------------------------------
# The kernels are templates on ``real`` (float or double), so every number is printed as a
# ``real(...)`` literal or left an integer that C++ promotes to real next to a real operand;
# function arguments are always real, so that the float and double overloads of the CUDA math
# functions (and of the host shim's <cmath>) are the ones chosen, never a promotion to double.

from sympy.printing.c import C99CodePrinter as _C99CodePrinter  # noqa: E402
from sympy.printing.c import known_functions_C99 as _C99_FUNCTIONS  # noqa: E402


class CUDAPrinter(_ModelFunctions, _C99CodePrinter):
    """Element-wise CUDA C++ for kernels templated on ``real``."""

    maximum, minimum, absolute = "fmax", "fmin", "fabs"

    def __init__(self):
        super().__init__({"math_macros": {}})

    def _number(self, value) -> str:
        value = float(value)
        return f"real({int(value)})" if value.is_integer() and abs(value) < 2**53 else f"real({value!r})"

    def parenthesize(self, item, level, strict=False):
        if isinstance(item, sp.Basic) and item.is_Number and not item.is_negative:
            return self._print(item)  # a real(...) literal needs no parentheses
        return super().parenthesize(item, level, strict)

    def _arg(self, expr) -> str:
        """A function argument: numbers as real literals, so overloads resolve to real."""
        return self._number(expr) if expr.is_number else self._print(expr)

    def _print_Float(self, expr):
        return self._number(expr)

    def _print_Rational(self, expr):
        return self._number(expr)

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_NumberSymbol(self, expr):
        return self._number(expr)

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Pow(self, expr):
        if expr.is_number:
            return self._number(expr)
        base, exp = expr.base, expr.exp
        if exp == sp.S.Half:
            return f"sqrt({self._print(base)})"
        if exp == -sp.S.Half:
            return f"1/sqrt({self._print(base)})"
        if exp.is_Integer and abs(int(exp)) <= 3:
            count = abs(int(exp))
            if count == 1:
                text = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"] + 1)
            elif base.is_Symbol:
                text = "(" + "*".join([self._print(base)] * count) + ")"
            else:
                text = f"pow({self._print(base)}, {self._number(count)})"
            return text if exp > 0 else f"1/{text}"
        return f"pow({self._print(base)}, {self._arg(exp)})"

    def _print_Mod(self, expr):
        # SymPy's Mod takes the divisor's sign, as Python's % and np.mod do; C's fmod takes the
        # dividend's, so it is written out with floor.
        x, y = expr.args
        return self._print(x - y * sp.floor(x / y))

    def _print_math(self, expr):
        if expr.is_number:
            return self._number(expr)
        known = self.known_functions[type(expr).__name__]
        if not isinstance(known, str):
            known = next(name for test, name in known if test(*expr.args))
        return f"{known}({', '.join(self._arg(a) for a in expr.args)})"


for _name in _C99_FUNCTIONS:
    if _name not in ("Abs", "Max", "Min"):
        setattr(CUDAPrinter, f"_print_{_name}", CUDAPrinter._print_math)

_CUDA_PRINTER = CUDAPrinter()


def cuda_code(expr: sp.Expr) -> str:
    text = _CUDA_PRINTER.doprint(sp.sympify(expr))
    return _strip_parentheses(text)


def _strip_parentheses(text: str) -> str:
    """``(x*x)`` -> ``x*x`` when the parentheses enclose the whole expression."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for position, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and position < len(text) - 1:
                return text
        text = text[1:-1]
    return text


def cuda_helper(cls: type) -> tuple[str, str, str]:
    """(name, parameter list, body expression) of the CUDA device helper for a spike or surrogate."""
    if issubclass(cls, Spike):
        return "spike", "const real x", "x > 0 ? real(1) : real(0)"
    names = list(inspect.signature(cls.formula).parameters)
    return (cls.__name__, ", ".join(f"const real {n}" for n in names),
            cuda_code(cls.formula(*sp.symbols(names))))


def cuda_function_names() -> list[str]:
    """The math functions the CUDA printer may call."""
    names = {"fmax", "fmin", "fabs", "pow", "sqrt"}
    for known in _C99_FUNCTIONS.values():
        names.update([known] if isinstance(known, str) else [name for _, name in known])
    return sorted(names)
