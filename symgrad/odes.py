"""Neuron models from differential equations: the discrete-time map derived symbolically.

``from_odes`` integrates ``dx/dt = f(x, I)`` over one step ``dt`` by one of Brian2's methods,
with the synaptic inputs ``I`` held constant over the step, and returns an ordinary
``NeuronModel``. Parameters stay symbols through the integration, so a learnable ``tau``
is trained through the exact derivative of ``exp(-dt/tau)``.

Spikes and resets follow Brian2's order within a step: integrate, test the threshold, reset.
The stored state is the value before the reset, so each step of the map first applies the
reset triggered by the previous step's spike, then integrates, then adds the jumps:

    x_r = x + sg(z_{t-1}) (reset(x) - x)       for each state with a reset
    x_t = step(x_r, I_t) + jump(x_r, I_t)
    z_t = spike(threshold(x_t))

so the spikes fall on the same steps as Brian2's. ``sg`` is ``stop_gradient``: the gradient
sees the membrane set to its reset value but not the spike that triggered it, as in
symgrad's other models; with ``reset_gradient=True`` the spike is differentiated too,
through its surrogate.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.matrices.exceptions import MatrixError

from .model import ModelError, NeuronModel, spike, stop_gradient

# The step inside the integrators: positive, so that SymPy simplifies exp(-h/tau) freely, and a
# Dummy, so that no model's own symbol is it; replaced by the model's dt afterwards.
_H = sp.Dummy("h", positive=True)


def _slopes(f: dict, at: dict) -> dict:
    """f evaluated with every state x replaced by ``at[x]`` (all at once)."""
    return {x: rhs.xreplace(at) for x, rhs in f.items()}


def euler(f: dict, h) -> dict:
    """Forward Euler: x' = x + h f(x)."""
    return {x: x + h * rhs for x, rhs in f.items()}


def rk2(f: dict, h) -> dict:
    """Second-order Runge-Kutta, the midpoint method: k = h f(x); x' = x + h f(x + k/2)."""
    midpoint = {x: x + h * rhs / 2 for x, rhs in f.items()}
    return {x: x + h * slope for x, slope in _slopes(f, midpoint).items()}


def rk4(f: dict, h) -> dict:
    """Classical Runge-Kutta: k1 = h f(x), k2 = h f(x + k1/2), k3 = h f(x + k2/2),
    k4 = h f(x + k3); x' = x + (k1 + 2 k2 + 2 k3 + k4) / 6."""
    k1 = {x: h * rhs for x, rhs in f.items()}
    k2 = {x: h * s for x, s in _slopes(f, {y: y + k1[y] / 2 for y in f}).items()}
    k3 = {x: h * s for x, s in _slopes(f, {y: y + k2[y] / 2 for y in f}).items()}
    k4 = {x: h * s for x, s in _slopes(f, {y: y + k3[y] for y in f}).items()}
    return {x: x + (k1[x] + 2 * k2[x] + 2 * k3[x] + k4[x]) / 6 for x in f}


def heun(f: dict, h) -> dict:
    """Brian2's ``heun``, the stochastic Heun method for Stratonovich equations. Its support
    point corrects only the noise term; the drift takes the forward Euler step, so on
    equations without noise (all that symgrad takes) it is x' = x + h f(x), as in Brian2."""
    return euler(f, h)


def sequential_euler(f: dict, h) -> dict:
    """Forward Euler one state at a time, in the order of ``f``, each slope reading the states
    already advanced in this step (semi-implicit Euler): x_k' = x_k + h f_k(x_1', .., x_{k-1}',
    x_k, ..). This is the order of snnTorch and NIR's reference frameworks, where the synaptic
    current is advanced before the membrane reads it. Not one of Brian2's methods."""
    new = {}
    for x, rhs in f.items():
        new[x] = x + h * rhs.xreplace(new)
    return new


def exponential_euler(f: dict, h) -> dict:
    """For conditionally linear equations dx/dt = A x + B, where A and B may depend on the
    other states (at their values before the step) but not on x:
    x' = x + h B where A = 0, else x' = (x + B/A) exp(A h) - B/A."""
    new = {}
    for x, rhs in f.items():
        term = nonlinear_term(rhs, {x})
        if term is not None:
            raise ModelError(f"method 'exponential_euler' needs each equation linear in its own state: "
                             f"d{x}/dt has the term {term}, nonlinear in {x} (use euler, rk2 or rk4)")
        a, b = sp.diff(rhs, x), rhs.xreplace({x: sp.S.Zero})
        new[x] = x + h * b if a == 0 else (x + b / a) * sp.exp(a * h) - b / a
    return new


def exact(f: dict, h) -> dict:
    """For equations linear in the states, dX/dt = M X + c (M and c may hold parameters and
    inputs, held constant over the step): X' = e^{M h} X + (integral_0^h e^{M s} ds) c, both
    read off the matrix exponential of [[M, c], [0, 0]] h, computed by SymPy."""
    states = list(f)
    for x, rhs in f.items():
        term = nonlinear_term(rhs, set(states))
        if term is not None:
            raise ModelError(f"method 'exact' needs equations linear in the states: d{x}/dt has the "
                             f"nonlinear term {term} (use exponential_euler, euler, rk2 or rk4)")
    n = len(states)
    rates = sp.Matrix([[sp.diff(rhs, y) for y in states] for rhs in f.values()])
    constant = sp.Matrix([rhs.xreplace(dict.fromkeys(states, sp.S.Zero)) for rhs in f.values()])
    try:
        propagator = (rates.row_join(constant).col_join(sp.zeros(1, n + 1)) * h).exp()
    except (NotImplementedError, MatrixError) as err:  # no Jordan form SymPy can find
        raise ModelError(f"method 'exact': SymPy finds no matrix exponential for these equations "
                         f"({err}); use exponential_euler, euler, rk2 or rk4") from None
    return {x: sum((_tidy(propagator[k, j]) * y for j, y in enumerate(states)), _tidy(propagator[k, n]))
            for k, x in enumerate(states)}


def _tidy(entry: sp.Expr) -> sp.Expr:
    """An entry of the matrix exponential as a sum over its exponentials, each with a factored
    coefficient: exp(-h/tau) rather than SymPy's (exp(h/tau) - 1) exp(-h/tau) forms."""
    entry = sp.powsimp(sp.expand(sp.powsimp(sp.expand(entry))))
    return sp.collect(entry, sorted(entry.atoms(sp.exp), key=str), sp.factor)


METHODS = {"exact": exact, "exponential_euler": exponential_euler, "euler": euler, "rk2": rk2,
           "rk4": rk4, "heun": heun, "sequential_euler": sequential_euler}


def nonlinear_term(expr: sp.Expr, variables: set) -> sp.Expr | None:
    """The first part of ``expr`` that is not linear in ``variables``: a function or power of
    them, or a product of two factors that hold them; None where ``expr`` is linear."""
    if not expr.free_symbols & variables or expr in variables:
        return None
    if isinstance(expr, sp.Add):
        return next((term for arg in expr.args if (term := nonlinear_term(arg, variables)) is not None), None)
    if isinstance(expr, sp.Mul):
        holding = [arg for arg in expr.args if arg.free_symbols & variables]
        return sp.Mul(*holding) if len(holding) > 1 else nonlinear_term(holding[0], variables)
    return expr


def threshold_expression(threshold) -> sp.Expr:
    """``v > v_th`` as v - v_th, ``v < x`` as x - v; a plain expression as itself: a spike
    wherever it is positive."""
    threshold = sp.sympify(threshold)
    if isinstance(threshold, sp.StrictGreaterThan):
        return threshold.lhs - threshold.rhs
    if isinstance(threshold, sp.StrictLessThan):
        return threshold.rhs - threshold.lhs
    if isinstance(threshold, (sp.GreaterThan, sp.LessThan)):
        raise ModelError(f"threshold {threshold}: a spike is a strict comparison (spike(x) is 1 where "
                         f"x > 0); write it with > or <")
    if isinstance(threshold, sp.Expr) and not isinstance(threshold, sp.logic.boolalg.Boolean):
        return threshold
    raise ModelError(f"threshold {threshold}: give one comparison such as v > v_th, or an expression "
                     f"that is positive where the neuron spikes")


@dataclass(frozen=True)
class Origin:
    """What a model was derived from: its differential equations, method and events, as
    ``symgrad inspect`` shows them."""

    odes: dict
    method: str
    dt: sp.Expr
    threshold: sp.Expr | None  # the comparison, as given
    reset: dict
    jumps: dict
    reset_gradient: bool

    def lines(self) -> list[str]:
        """A heading, then the equations and events indented."""
        dt = sp.sstr(self.dt) if isinstance(self.dt, sp.Symbol) else f"{float(self.dt):g}"
        out = [f"differential equations, integrated by {self.method} over dt = {dt}:"]
        out += [f"  d{x}/dt = {sp.sstr(rhs)}" for x, rhs in self.odes.items()]
        if self.threshold is not None:
            out.append(f"  threshold: {sp.sstr(self.threshold)}")
        gradient = "differentiated" if self.reset_gradient else "the spike in stop_gradient"
        out += [f"  reset on a spike: {x} = {sp.sstr(e)} ({gradient})" for x, e in self.reset.items()]
        out += [f"  after each step: {x} += {sp.sstr(e)}" for x, e in self.jumps.items()]
        return out

    def as_json(self) -> dict:
        return {"odes": {x.name: str(rhs) for x, rhs in self.odes.items()}, "method": self.method,
                "dt": str(self.dt), "threshold": None if self.threshold is None else str(self.threshold),
                "reset": {x.name: str(e) for x, e in self.reset.items()},
                "jumps": {x.name: str(e) for x, e in self.jumps.items()},
                "reset_gradient": self.reset_gradient}


def from_odes(*, name: str, states: dict, params: dict, odes: dict, dt, method: str = "exact",
              threshold=None, reset: dict | None = None, inputs=(), surrogate=None, learnable=(),
              per_neuron=(), output=None, jumps: dict | None = None, reset_gradient: bool = False,
              doc: str = "") -> NeuronModel:
    """A ``NeuronModel`` whose update is ``odes`` ({state: dx/dt}) integrated over ``dt`` by
    ``method`` (see ``METHODS``), with Brian2's threshold-and-reset order (module docstring).

    dt:        the step, a positive number or a declared parameter symbol.
    threshold: a comparison such as ``v > v_th`` (or an expression: a spike where it is > 0).
    reset:     {state: value it takes on a spike}, all read before the reset.
    jumps:     {state: expression added after the integration}, e.g. {v: I} for a current
               that moves the membrane at once. A state without an ODE must have a jump; it
               is constant between them.
    output:    by default the spike of ``threshold``, with ``surrogate``.
    """
    states, params, inputs = dict(states), dict(params), tuple(inputs)
    for kind, symbols in (("state", states), ("input", inputs)):
        for x in symbols:
            if not isinstance(x, sp.Symbol):
                raise ModelError(f"{kind} {x!r} of model {name!r} is not a SymPy symbol")
    odes = _declared(name, "ODE", odes, states)
    jumps = _declared(name, "jump", jumps or {}, states)
    reset = _declared(name, "reset", reset or {}, states)
    known = {*states, *params, *inputs}
    places = [(f"d{x}/dt", e) for x, e in odes.items()] + [(f"the jump of {x}", e) for x, e in jumps.items()]
    for place, expr in places + [(f"the reset of {x}", e) for x, e in reset.items()]:
        # without declared inputs, the model's one input is the symbol named I (NeuronModel's rule)
        unknown = sorted(s.name for s in expr.free_symbols - known if inputs or s.name != "I")
        if unknown:
            raise ModelError(f"undeclared symbol {unknown[0]!r} in {place} of model {name!r}: {expr}")
    for x in states:
        if x not in odes and x not in jumps:
            raise ModelError(f"state {x} of model {name!r} has no ODE and no jump: give d{x}/dt "
                             f"(0 for a state that only a reset or jump changes)")
    if method not in METHODS:
        raise ModelError(f"unknown integration method {method!r} for model {name!r}; one of "
                         f"{', '.join(METHODS)}")
    step = _step(name, dt, params)
    advanced = {x: e.xreplace({_H: step}) for x, e in METHODS[method](odes, _H).items()}
    new = {x: advanced.get(x, x) + jumps.get(x, 0) for x in states}

    threshold = None if threshold is None else sp.sympify(threshold)
    theta = None if threshold is None else threshold_expression(threshold)
    if theta is None and (reset or output is None):
        raise ModelError(f"model {name!r} has " + ("a reset but no threshold" if reset else
                                                   "no threshold and no output") + ": give threshold=")
    if reset:
        fired = spike(theta, surrogate)
        gate = fired if reset_gradient else stop_gradient(fired)
        after_reset = {x: x + gate * (value - x) for x, value in reset.items()}
        new = {x: e.xreplace(after_reset) for x, e in new.items()}
    shown = threshold if isinstance(threshold, sp.core.relational.Relational) else sp.Gt(theta, 0)
    origin = Origin(odes, method, step, None if theta is None else shown, reset, jumps, bool(reset_gradient))
    return NeuronModel(name=name, states=states, params=params, update=new,
                       output=spike(theta, surrogate) if output is None else output, inputs=inputs,
                       learnable=learnable, per_neuron=per_neuron, doc=doc, origin=origin)


def _declared(name: str, what: str, table: dict, states: dict) -> dict:
    """``table`` with sympified values, refused where a key is not a declared state."""
    if not isinstance(table, dict):
        raise ModelError(f"{what}s of model {name!r} must map states to expressions, not {table!r}")
    for x in table:
        if x not in states:
            raise ModelError(f"{what} for {x} in model {name!r}, which is not a declared state")
    try:
        return {x: sp.sympify(e) for x, e in table.items()}
    except sp.SympifyError as err:
        raise ModelError(f"{what}s of model {name!r}: {err.expr!r} is not an expression") from None


def _step(name: str, dt, params: dict) -> sp.Expr:
    """dt as the integrators' result takes it: a declared parameter, or a positive number."""
    if isinstance(dt, sp.Symbol) and dt in params:
        return dt
    try:
        value = float(dt) if not isinstance(dt, (bool, str)) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ModelError(f"dt of model {name!r} is {dt!r}: a positive number or a declared parameter")
    return sp.Float(value)
