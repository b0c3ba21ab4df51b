"""Printing SymPy expressions as NumPy, Numba and CUDA code.

Spikes and surrogate derivatives print as calls of small helpers defined at the top of the
generated module (``spike``, ``triangle_psi``, ...), so the generated code reads like the
model; ``helpers`` returns the source of exactly the helpers an expression list uses.

``FUNCTIONS`` and ``WRITTEN_OUT`` are every function a model may call: symgrad.model refuses
any other when a model is declared, and tests/test_functions.py runs each on every backend.
"""
from __future__ import annotations

import inspect

import sympy as sp
from sympy.codegen.cfunctions import exp2, expm1, hypot, log1p, log2, log10
from sympy.printing.numpy import NumPyPrinter as _SymPyNumPyPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .surrogates import Pseudo, Spike

# SymPy function: (its NumPy function, which the Numba kernels call too, on scalars; its CUDA
# function, with float and double overloads). NumPy has no erf or erfc: Python's math module
# stands in, called as it is in the Numba kernels and mapped over arrays by a helper of the same
# name in the NumPy module (``array_helper``).
FUNCTIONS = {
    sp.exp: ("np.exp", "exp"), sp.log: ("np.log", "log"),
    exp2: ("np.exp2", "exp2"), log2: ("np.log2", "log2"), log10: ("np.log10", "log10"),
    expm1: ("np.expm1", "expm1"), log1p: ("np.log1p", "log1p"),
    sp.sin: ("np.sin", "sin"), sp.cos: ("np.cos", "cos"), sp.tan: ("np.tan", "tan"),
    sp.asin: ("np.arcsin", "asin"), sp.acos: ("np.arccos", "acos"), sp.atan: ("np.arctan", "atan"),
    sp.atan2: ("np.arctan2", "atan2"), hypot: ("np.hypot", "hypot"),
    sp.sinh: ("np.sinh", "sinh"), sp.cosh: ("np.cosh", "cosh"), sp.tanh: ("np.tanh", "tanh"),
    sp.asinh: ("np.arcsinh", "asinh"), sp.acosh: ("np.arccosh", "acosh"), sp.atanh: ("np.arctanh", "atanh"),
    sp.erf: ("math.erf", "erf"), sp.erfc: ("math.erfc", "erfc"),
    # without a useful derivative: a model calls these inside stop_gradient() only
    sp.Abs: ("np.abs", "fabs"), sp.Max: ("np.maximum", "fmax"), sp.Min: ("np.minimum", "fmin"),
    sp.floor: ("np.floor", "floor"), sp.ceiling: ("np.ceil", "ceil"),
}
# Written out by each printer its own way (a sign, a remainder, a choice and its conditions); like
# the relations they test, a model uses them inside stop_gradient() only.
WRITTEN_OUT = (sp.sign, sp.Mod, sp.frac, sp.Heaviside, sp.Piecewise, sp.And, sp.Or, sp.Not)
SUPPORTED = (*FUNCTIONS, *WRITTEN_OUT)


class _ModelFunctions:
    """Spikes, surrogates and the FUNCTIONS, printed alike by every backend's printer.

    ``function`` names a SymPy function in the backend's code; ``_arg`` prints a function
    argument (the CUDA printer makes numbers ``real`` literals there).
    """

    def function(self, func) -> str:
        raise NotImplementedError

    def _arg(self, expr) -> str:
        return self._print(expr)

    def _print_listed(self, expr):
        return f"{self.function(expr.func)}({', '.join(self._arg(a) for a in expr.args)})"

    def _fold(self, func, args):
        text = self._arg(args[0])
        for arg in args[1:]:
            text = f"{func}({text}, {self._arg(arg)})"
        return text

    def _print_Max(self, expr):
        return self._fold(self.function(sp.Max), expr.args)

    def _print_Min(self, expr):
        return self._fold(self.function(sp.Min), expr.args)

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


# SymPy's printers dispatch on _print_<class name>, ahead of their own ways to print these
for _function in FUNCTIONS:
    if _function not in (sp.Max, sp.Min):  # folded, two arguments at a time
        setattr(_ModelFunctions, f"_print_{_function.__name__}", lambda self, expr: self._print_listed(expr))


class NumPyPrinter(_ModelFunctions, _SymPyNumPyPrinter):
    """Element-wise NumPy code, with ``np.`` as the module prefix."""

    def __init__(self):
        super().__init__({"inline": True})

    def function(self, func) -> str:
        return FUNCTIONS[func][0].removeprefix("math.")  # the helper that maps it over an array

    def _print_And(self, expr):
        return self._fold("np.logical_and", expr.args)

    def _print_Or(self, expr):
        return self._fold("np.logical_or", expr.args)

    def _print_Not(self, expr):
        return f"np.logical_not({self._print(expr.args[0])})"

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

    def function(self, func) -> str:
        return FUNCTIONS[func][0]

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(not {self._print(expr.args[0])})"


_PRINTER = NumPyPrinter()
_NUMBA_PRINTER = NumbaPrinter()
_STR = StrPrinter()


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


def math_calls(exprs) -> list[str]:
    """The functions of Python's math module that ``exprs`` call, by name (see FUNCTIONS)."""
    return sorted({FUNCTIONS[f.func][0].removeprefix("math.") for e in exprs for f in e.atoms(sp.Function)
                   if FUNCTIONS.get(f.func, ("",))[0].startswith("math.")})


def array_helper(name: str) -> tuple[str, str, str]:
    """(name, argument list, body expression) of the NumPy helper that maps Python's math function
    ``name`` over an array, keeping its floating type."""
    return name, "x", f"np.vectorize(math.{name}, otypes=[np.result_type(x, 1.0)])(x)"


def linear_text(terms) -> str:
    """``a * x + (b - c) * y - u``: the sum of (coefficient, operand) pairs in SymPy's notation, each
    coefficient bracketed where its precedence needs it and a unit one left out."""
    text = ""
    for coefficient, operand in terms:
        sign = " + "
        if not coefficient.is_Add and coefficient.could_extract_minus_sign():
            sign, coefficient = " - ", -coefficient
        factor = _STR.parenthesize(coefficient, PRECEDENCE["Mul"])
        text += sign + (operand if coefficient == 1 else f"{factor} * {operand}")
    return "-" + text[3:] if text.startswith(" - ") else text[3:] or "0"


# -- CUDA --------------------------------------------------------------------------------------
# The kernels are templates on ``real`` (float or double), so every number is printed as a
# ``real(...)`` literal or left an integer that C++ promotes to real next to a real operand;
# function arguments are always real, so that the float and double overloads of the CUDA math
# functions (and of the host shim's <cmath>) are the ones chosen, never a promotion to double.

from sympy.printing.c import C99CodePrinter as _C99CodePrinter  # noqa: E402


class CUDAPrinter(_ModelFunctions, _C99CodePrinter):
    """Element-wise CUDA C++ for kernels templated on ``real``."""

    def __init__(self, real: str = "real"):
        super().__init__({"math_macros": {}})
        self.real = real  # the kernels' type parameter, as the naming table spells it

    def function(self, func) -> str:
        return FUNCTIONS[func][1]

    def _number(self, value) -> str:
        value = float(value)
        return f"{self.real}({int(value)})" if value.is_integer() and abs(value) < 2**53 else f"{self.real}({value!r})"

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

    def _print_listed(self, expr):
        return self._number(expr) if expr.is_number else super()._print_listed(expr)

    def _print_sign(self, expr):
        # a real, never an int: 1/sign(x) must not be an integer division
        x = self._print(expr.args[0])
        return f"{self.real}(({x} > 0) - ({x} < 0))"

    def _print_Piecewise(self, expr):
        """On one line, every value a real (an int choice would make 1/(...) an integer division);
        no condition holding gives NaN, as NumPy's np.select does."""
        text = f'{self.real}(nan(""))'
        for value, condition in reversed(expr.args):
            value = self._arg(value)
            text = value if condition == sp.true else f"({self._print(condition)} ? {value} : {text})"
        return text

    def _print_Heaviside(self, expr):
        return self._print(expr.rewrite(sp.Piecewise))


_CUDA_PRINTERS: dict = {}


def cuda_code(expr: sp.Expr, real: str = "real") -> str:
    if real not in _CUDA_PRINTERS:
        _CUDA_PRINTERS[real] = CUDAPrinter(real)
    return _strip_parentheses(_CUDA_PRINTERS[real].doprint(sp.sympify(expr)))


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


def cuda_helper(cls: type, real: str = "real") -> tuple[str, str, str]:
    """(name, parameter list, body expression) of the CUDA device helper for a spike or surrogate."""
    if issubclass(cls, Spike):
        return "spike", f"const {real} x", f"x > 0 ? {real}(1) : {real}(0)"
    names = list(inspect.signature(cls.formula).parameters)
    return (cls.__name__, ", ".join(f"const {real} {n}" for n in names),
            cuda_code(cls.formula(*sp.symbols(names)), real))


def cuda_function_names() -> list[str]:
    """The math functions the CUDA printer may call."""
    return sorted({cuda for _, cuda in FUNCTIONS.values()} | {"pow", "sqrt", "floor", "nan"})
