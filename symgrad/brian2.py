"""Brian2's equations in: a ``NeuronModel`` from the strings a Brian2 ``NeuronGroup`` takes.

    from brian2 import ms, mV, nA, nS, pF
    from symgrad.brian2 import from_equations

    adex = from_equations('''
        dv/dt = (g_L*(E_L - v) + g_L*Delta_T*exp((v - V_T)/Delta_T) - w + I)/C : volt
        dw/dt = (a*(v - E_L) - w)/tau_w : amp
        I : amp
        ''', threshold="v > V_cut", reset="v = V_r; w += b", method="euler", dt=0.1*ms,
        namespace={"C": 281*pF, "g_L": 30*nS, ...}, values={"v": -70.6*mV}, name="adex")

Brian2 does the reading: its ``Equations``, its expression and statement parsers, its units and
its unit check (a mismatch is refused as Brian2 would refuse it before a run). symgrad.odes'
``from_odes`` does the integration, with Brian2's order of integration, threshold and reset.

What each name becomes, every value in SI units (a time constant given as 20*ms is 0.02, dt in
seconds, so states and inputs are in volts, amperes, ...):
- a differential equation's variable: a state, starting at ``values[name]`` (else 0, as in Brian2);
- a declared parameter (``E : volt``): a parameter, its value from ``values`` (else 0), except
  those named in ``inputs`` (``I : amp``), which are the synaptic inputs a network drives;
- a name of ``namespace`` (Brian2's external constants): a parameter with that value, which
  ``learnable`` may train;
- Brian2's units and constants (``mV``, ``pi``) and ``dt``: numbers;
- a subexpression: inlined wherever it is used.

What a discrete map cannot hold is refused in one line naming it: refractoriness, noise
(``xi``, ``rand()``), the time ``t``, event-driven (synaptic) equations, the flags ``linked``,
``summed`` and ``constant over dt``, integer and boolean variables, and functions SymPy has no
form of (``clip``, ``int``, a ``TimedArray``).

Brian2 is an optional extra, imported on first use: ``pip install 'symgrad[brian2]'``.
"""
from __future__ import annotations

import operator
import re
import sys
import warnings

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from .model import ModelError, NeuronModel

EXTRA = "pip install 'symgrad[brian2]'"
BRIAN2_DEFAULT_DT = 1e-4  # seconds: Brian2's defaultclock
RANDOM_FUNCTIONS = ("rand", "randn", "poisson")
KEPT_FLAGS = {"constant", "shared"}  # a constant or shared parameter is still a parameter
REFRACTORY_NAMES = ("not_refractory", "lastspike", "refractory")
# Brian2's kinds of equation, as its Equations name them (brian2.equations.equations)
ODE, PARAMETER, SUBEXPRESSION = "differential equation", "parameter", "subexpression"


def from_equations(equations, threshold="v > v_th", reset="v = v_r", method="exact", dt=BRIAN2_DEFAULT_DT,
                   namespace=None, inputs=("I",), name="brian2_model", values=None, learnable=(),
                   per_neuron=(), surrogate=None, doc=None) -> NeuronModel:
    """The ``NeuronModel`` of a Brian2 ``NeuronGroup(N, equations, threshold, reset, method,
    namespace=namespace, dt=dt)`` whose variables start at ``values`` (module docstring).

    equations: Brian2's equation string (or a ``brian2.Equations``).
    threshold, reset: Brian2's code strings; a reset may hold several statements (``v = V_r; w += b``).
    method:    ``exact``, ``exponential_euler``, ``euler``, ``rk2``, ``rk4`` or ``heun`` (see symgrad.odes).
    dt:        the step, in seconds or as a Brian2 quantity (default 0.1 ms, Brian2's).
    namespace: {name: value} of the external constants the strings use (Brian2 quantities or numbers).
    values:    {name: value} of the states' initial values and the declared parameters' values.
    inputs:    the declared parameters that are synaptic inputs.
    learnable, per_neuron: parameter names, as for ``NeuronModel``.
    """
    b2 = import_brian2()
    from brian2.core.variables import Constant
    from brian2.utils.stringtools import get_identifiers

    if not isinstance(threshold, str) or not threshold.strip():
        raise ModelError(f"threshold {threshold!r}: give Brian2's condition, such as 'v > v_th'")
    reset = reset or ""
    eqs = _parsed(b2, equations)
    namespace, values = dict(namespace or {}), dict(values or {})
    kinds = {var: eq.type for var, eq in eqs.items()}
    dims = {var: eq.dim for var, eq in eqs.items()}
    _refuse_unrepresentable(eqs)
    inputs = tuple(inputs)
    for given in inputs:
        if kinds.get(given) != PARAMETER:
            raise ModelError(f"input {given!r} is not a parameter of the equations: declare it, e.g. "
                             f"'{given} : amp', so that a network can drive it")
    for given in values:
        if kinds.get(given) not in (ODE, PARAMETER) or given in inputs:
            raise ModelError(f"values[{given!r}]: {given!r} is not a state or parameter of the equations")

    # The code as Brian2 reads it: each equation, the threshold, the reset's statements.
    codes = [(f"d{var}/dt" if eq.type == ODE else var, eq.expr.code) for var, eq in eqs.items() if eq.expr is not None]
    codes.append(("threshold", threshold))
    statements = _statements(reset)
    codes += [(f"reset {target}", code) for target, _, code, _ in statements]
    temporaries = {target for target, *_ in statements if target not in kinds}

    dt = _si(b2, dt, "dt", b2.second.dim)
    known = {var: Constant(var, 0.0, dims[var]) for var in kinds}  # units only: the value is not read
    known["dt"] = Constant("dt", dt, b2.second.dim)
    numbers, params = {"dt": dt}, {}  # Brian2's units and constants become numbers, the namespace parameters
    for where, code in codes:
        for identifier in sorted(get_identifiers(code) - set(known) - temporaries):
            _refuse_name(identifier, where)
            found, from_user = _resolve(b2, identifier, namespace, where)
            if isinstance(found, b2.Function):
                known[identifier] = found
                continue
            value = _si(b2, found, f"namespace[{identifier!r}]" if from_user else identifier)
            known[identifier] = Constant(identifier, value, b2.get_dimensions(found))
            if from_user:
                params[sp.Symbol(identifier)] = value
            else:
                numbers[identifier] = value
    _check_units(b2, eqs, threshold, reset, known)

    symbols = {var: sp.Symbol(var) for var in kinds}
    inline = _inliner({symbols[var]: _sympy(eq.expr.code, numbers, var)
                       for var, eq in eqs.items() if eq.type == SUBEXPRESSION})
    odes = {symbols[var]: inline(_sympy(eq.expr.code, numbers, f"d{var}/dt"))
            for var, eq in eqs.items() if eq.type == ODE}
    params.update({symbols[var]: _si(b2, values.get(var, 0.0), f"values[{var!r}]", dims[var])
                   for var, kind in kinds.items() if kind == PARAMETER and var not in inputs})
    states = {x: _si(b2, values.get(x.name, 0.0), f"values[{x.name!r}]", dims[x.name]) for x in odes}
    from .odes import from_odes

    return from_odes(
        name=name, states=states, params=params, odes=odes, dt=dt, method=method,
        threshold=inline(_sympy(threshold, numbers, "threshold")),
        reset=_reset(statements, symbols, kinds, numbers, inline),
        inputs=tuple(symbols[given] for given in inputs), surrogate=surrogate,
        learnable=_parameters(learnable, params, "learnable"), per_neuron=_parameters(per_neuron, params, "per_neuron"),
        doc=_source(eqs, threshold, reset, method, dt) if doc is None else doc)


def import_brian2():
    """Brian2, imported on first use. Its import installs a hook for uncaught exceptions and
    routes Python's warnings through its logger; symgrad keeps its own reporting of both."""
    hook, show = sys.excepthook, warnings.showwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its parsing library's, not the user's
            import brian2
    except ImportError as err:
        raise ModelError(f"symgrad.brian2 needs Brian2, which is not installed ({err}): {EXTRA}") from None
    except Exception as err:  # Brian2 2.9.0 with NumPy 2.4: np.ndarray.ptp is gone
        raise ModelError(f"Brian2 fails to import ({type(err).__name__}: {err}); the brian2 extra installs "
                         f"a Brian2 and a NumPy that work together: {EXTRA}") from None
    finally:
        sys.excepthook, warnings.showwarning = hook, show
    return brian2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _parsed(b2, equations):
    """Brian2's ``Equations`` of ``equations``, its parsing errors in one line."""
    if isinstance(equations, b2.Equations):
        return equations
    if not isinstance(equations, str):
        raise ModelError(f"Brian2 equations must be a string or brian2.Equations, not {type(equations).__name__}")
    try:
        return b2.Equations(equations)
    except Exception as err:  # EquationError, SyntaxError, a unit Brian2 does not know
        raise ModelError(f"Brian2 cannot parse the equations: {_one_line(err)}") from None


def _statements(reset: str) -> list:
    """The reset's statements as Brian2 parses them: (target, operator, expression, comment)."""
    from brian2.parsing.statements import parse_statement

    statements = []
    for line in re.split(r"[;\n]", reset):  # Brian2 splits code so too
        if line.strip():
            try:
                statements.append(parse_statement(line))
            except Exception as err:  # pyparsing's ParseException, ValueError
                raise ModelError(f"Brian2 cannot parse the reset statement {line.strip()!r}: {_one_line(err)}") from None
    return statements


def _refuse_unrepresentable(eqs) -> None:
    """What a discrete-time map cannot hold, in one line naming it."""
    for var, eq in eqs.items():
        if "unless refractory" in eq.flags:
            raise ModelError(f"refractoriness ('unless refractory' on {var}) cannot be represented: "
                             f"symgrad's models have no refractory period; drop the flag")
        if "event-driven" in eq.flags:
            raise ModelError(f"event-driven equation of {var}: a synapse's equations cannot be brought in, "
                             f"only a neuron's")
        for flag in eq.flags:
            if flag not in KEPT_FLAGS:
                raise ModelError(f"flag '{flag}' on {var} cannot be represented by a neuron model's map")
        if eq.var_type != "float":
            raise ModelError(f"{var} is of type {eq.var_type}: symgrad's states and parameters are floats")


def _refuse_name(identifier: str, where: str) -> None:
    """Refuse a name whose meaning a discrete-time map cannot hold, in one line naming it."""
    if identifier == "t":
        raise ModelError(f"the time t in {where}: a model's map cannot depend on time; give a "
                         f"time-varying drive as an input")
    if identifier in REFRACTORY_NAMES:
        raise ModelError(f"refractoriness ({identifier} in {where}) cannot be represented: "
                         f"symgrad's models have no refractory period")
    if identifier in RANDOM_FUNCTIONS or identifier.startswith("xi_") or identifier == "xi":
        raise ModelError(f"stochastic term {identifier} in {where}: symgrad's models are deterministic")


def _resolve(b2, identifier: str, namespace: dict, where: str) -> tuple:
    """(what ``identifier`` stands for, whether the namespace gave it), looked up as Brian2 looks
    up an external name: its constants, units and functions first, then the namespace."""
    from brian2.core.namespace import DEFAULT_CONSTANTS, DEFAULT_FUNCTIONS, DEFAULT_UNITS

    for table in (DEFAULT_CONSTANTS, DEFAULT_UNITS, DEFAULT_FUNCTIONS, namespace):
        if identifier in table:
            found = table[identifier]
            break
    else:
        raise ModelError(f"{identifier} in {where} is not defined: give its value in namespace, or declare it "
                         f"in the equations")
    if isinstance(found, b2.Function) and not callable(getattr(found, "sympy_func", None)):
        raise ModelError(f"function {identifier} in {where} has no SymPy form (a TimedArray or a function "
                         f"symgrad cannot print)")
    if getattr(found, "sympy_obj", None) is not None:  # pi, e, inf: Brian2's parser writes SymPy's
        return found.value, False
    return found, table is namespace


def _si(b2, value, what: str, dim=None) -> float:
    """``value`` (a Brian2 quantity, or a number in SI units) as one number in SI units; a
    quantity is checked against the dimensions ``dim`` where given."""
    if dim is not None and isinstance(value, b2.Quantity):
        try:
            b2.units.fundamentalunits.fail_for_dimension_mismatch(value, dim, f"{what} has the wrong unit")
        except b2.DimensionMismatchError as err:
            raise ModelError(_one_line(err)) from None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ModelError(f"{what} is {value!r}: a number or a Brian2 quantity") from None
    if array.shape != ():
        raise ModelError(f"{what} has shape {array.shape}: one number (a model's parameter is shared; "
                         f"per-neuron values are given to the network)")
    return float(array)


def _check_units(b2, eqs, threshold, reset, known: dict) -> None:
    """Brian2's own unit check of the equations, threshold and reset, as before a run."""
    from brian2.equations.unitcheck import check_dimensions, check_units_statements
    from brian2.parsing.expressions import is_boolean_expression

    try:
        for var, eq in eqs.items():
            if eq.type == ODE:
                check_dimensions(eq.expr.code, eq.dim / b2.second.dim, known)
            elif eq.type == SUBEXPRESSION:
                check_dimensions(eq.expr.code, eq.dim, known)
        condition = is_boolean_expression(threshold, known)
        check_units_statements(f"_cond = {threshold}", known)
        check_units_statements(reset, known)
    except SyntaxError as err:
        raise ModelError(f"Brian2 cannot parse the threshold or reset: {_one_line(err)}") from None
    except (b2.DimensionMismatchError, KeyError, TypeError, ValueError) as err:
        raise ModelError(f"Brian2's unit check: {_one_line(err)}") from None
    if not condition:
        raise ModelError(f"threshold {threshold!r} is not a condition, such as 'v > v_th'")


def _sympy(code: str, numbers: dict, where: str) -> sp.Expr:
    """``code`` as SymPy (Brian2's parser), with plain symbols, and units and dt as numbers."""
    from brian2.core.namespace import DEFAULT_FUNCTIONS
    from brian2.parsing.sympytools import str_to_sympy

    try:
        expr = str_to_sympy(code)
    except SyntaxError as err:
        raise ModelError(f"Brian2 cannot parse {where}: {_one_line(err)}") from None
    # sqrt has no SymPy function class, so Brian2's parser leaves it an undefined function
    for call in sorted(expr.atoms(AppliedUndef), key=str):
        function = DEFAULT_FUNCTIONS.get(type(call).__name__)
        if function is None or not callable(function.sympy_func):
            raise ModelError(f"function {type(call).__name__} in {where} has no SymPy form")
        expr = expr.xreplace({call: function.sympy_func(*call.args)})
    plain = {s: sp.Float(numbers[s.name]) if s.name in numbers else sp.Symbol(s.name) for s in expr.free_symbols}
    return expr.xreplace(plain)


def _inliner(subexpressions: dict):
    """A function replacing every subexpression by its definition, those it uses inlined too."""
    def inline(expr):
        for _ in range(len(subexpressions) + 1):
            if not expr.free_symbols & set(subexpressions):
                return expr
            expr = expr.xreplace(subexpressions)
        cycle = sorted(s.name for s in expr.free_symbols & set(subexpressions))
        raise ModelError(f"subexpressions {', '.join(cycle)} are defined through each other: they cannot be inlined")
    return inline


AUGMENTED = {"=": lambda old, new: new, "+=": operator.add, "-=": operator.sub, "*=": operator.mul,
             "/=": operator.truediv}


def _reset(statements, symbols: dict, kinds: dict, numbers: dict, inline) -> dict:
    """{state: its value after the reset}, the statements run in order (each reads what the
    ones before it assigned, temporaries included)."""
    assigned = {}
    for target, op, code, _ in statements:
        if kinds.get(target, ODE) != ODE:
            raise ModelError(f"reset sets {target}, a {kinds[target]}: a reset sets states (variables with "
                             f"a differential equation) and temporaries only")
        if op not in AUGMENTED:
            raise ModelError(f"reset statement '{target} {op} {code}': its operator {op} cannot be represented")
        symbol = symbols.get(target, sp.Symbol(target))
        value = AUGMENTED[op](symbol, inline(_sympy(code, numbers, f"reset {target}")))
        assigned[symbol] = value.xreplace(assigned)
    return {x: value for x, value in assigned.items() if kinds.get(x.name) == ODE}


def _parameters(names, params: dict, group: str) -> tuple:
    """The parameter symbols named by ``names`` (names or symbols)."""
    by_name = {p.name: p for p in params}
    found = []
    for given in names:
        name = getattr(given, "name", given)
        if name not in by_name:
            raise ModelError(f"{group} entry {name!r} is not a parameter of the equations (parameters: "
                             f"{', '.join(by_name) or 'none'})")
        found.append(by_name[name])
    return tuple(found)


def _source(eqs, threshold, reset, method, dt: float) -> str:
    """The Brian2 declaration, for the model's doc (the generated code's header shows it)."""
    lines = [f"From Brian2's equations, method {method!r}, dt = {dt:g} s:", *(f"    {line.strip()}" for line in
             str(eqs).strip().splitlines()), f"threshold: {threshold}", f"reset: {reset}"]
    return "\n".join(lines)
