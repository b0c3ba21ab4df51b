"""Hypothesis strategies that write neuron models at random, for tests/test_fuzz.py.

A drawn model is a dict of ``NeuronModel`` keyword arguments (``model_specs``), so a test can
first ask whether symgrad accepts it at all. The dynamics are built to stay bounded: every
state leaks (its own decay below 0.9) and everything else added to it is either bounded
(tanh, exp(-x^2), x / (1 + x^2), ...) or a small multiple of another state, so a network of
these neurons neither explodes nor, once its input is scaled, stays silent.

Names are drawn from a pool meant to break the code generators: prefixes of each other
(``a``, ``a_b``, ``b_c``), SymPy function and constant names (``beta``, ``gamma``, ``E``,
``exp``), Python and C++ keywords (``lambda``, ``for``, ``class``), and the generated code's
own names (``z``, ``v_new``, ``D_v_v``, ``np``, ``size``, ``spike``, ...) as the naming table
would spell them (``a_b_c``, ``g_I``, ``eps_a``, ...), with now and then a state named ``I`` beside
an input ``x``. symgrad must either generate working code for them or reject the model with a
one-line ModelError.
"""
from __future__ import annotations

import sympy as sp
from hypothesis import strategies as st

from symgrad import spike, stop_gradient, surrogates

PLAIN_NAMES = ["v", "a", "a_b", "b_c", "c", "w", "v1", "u_", "r_", "theta", "rho", "tau"]
TRICKY_NAMES = [
    # SymPy functions and constants, as symbol names
    "beta", "gamma", "exp", "E", "I_", "pi", "S", "N", "O", "Q", "zeta", "tanh", "sqrt", "Abs",
    # Python / C++ words
    "lambda", "for", "class", "None", "float", "int", "range", "math", "np", "numba", "prange", "self", "I",
    # names of the generated code
    "s", "p", "z", "x0", "x1", "v_new", "D_v_v", "c_v", "h_v", "eps_v", "size", "real", "spike", "bi",
    "neuron", "J", "K", "L", "u", "g", "gz", "t", "n", "batch", "dtype", "scratch", "grad",
    "kappa", "trace_v", "p_v", "input", "out", "weight",
    # what the naming table allocates, spelled as it would be (symgrad.names): concatenations of
    # the plain names, adjoints, arguments, the words it moves aside, and names it refuses
    "a_b_c", "eps_a", "eps_a_b", "g_v", "g_I", "g_x", "e_a", "decay_v", "catch_v", "old_v", "s_v", "s_v_new",
    "trace_a_b_c", "J_h_v", "K_c_v", "current", "out_z", "kappa_skipped", "elig", "post", "sample", "spare",
    "traces", "product", "_r", "v__1", "new", "this",
]
INPUT_NAMES = ["I"] * 8 + ["J", "I_syn", "i", "x"]
# Names for a model with several synaptic inputs (one in five drawn models): prefixes of each
# other and of the generated names (I_e_t, c_v_I_e, W_in_I_e, Traces_I_e, input_I_e).
SEVERAL_INPUT_NAMES = ["I_e", "I_i", "I_e_i", "I_d", "J", "x", "input", "c", "I", "I_1", "current"]

SURROGATES = {
    "triangle": lambda width: surrogates.triangle(0.3, width),
    "fast_sigmoid": lambda width: surrogates.fast_sigmoid(4.0 / width),
    "sigmoid": lambda width: surrogates.sigmoid(4.0 / width),
    "arctan": lambda width: surrogates.arctan(2.0 / width),
}


class Parameters:
    """The parameters a model declares while its equations are drawn, each with its role.

    A parameter's role fixes a safe range for its value: a decay stays in [0.5, 0.85], a
    coupling coefficient is small, a threshold or surrogate width is positive.
    """

    RANGES = {"decay": (0.5, 0.85), "coef": (-0.3, 0.3), "small": (-0.08, 0.08),
              "threshold": (0.3, 1.0), "gain": (0.5, 1.5), "tau": (0.003, 0.01)}

    def __init__(self, draw, names):
        self.draw, self.names = draw, names
        self.values = {}
        self.roles = {}

    def number_or_param(self, role: str) -> sp.Expr:
        """A number in the role's range, or a parameter of that role (a new or a known one)."""
        low, high = self.RANGES[role]
        value = round(self.draw(st.floats(low, high)), 3)
        kind = self.draw(st.sampled_from(["number", "param", "param"]))
        if kind == "number" or not self.names:
            return sp.Float(value)
        known = [p for p, r in self.roles.items() if r == role]
        if known and self.draw(st.booleans()):
            return self.draw(st.sampled_from(known))
        symbol = sp.Symbol(self.names.pop(0))
        self.values[symbol], self.roles[symbol] = value, role
        return symbol


def one_in(draw, odds: int) -> bool:
    """True once in ``odds`` draws (and False as Hypothesis shrinks): integers(0, n) == 0
    would come up far more often, since Hypothesis favours the ends of a range."""
    return draw(st.sampled_from([False] * (odds - 1) + [True]))


@st.composite
def names(draw, count: int) -> list[str]:
    """``count`` distinct names, one in six of them tricky."""
    chosen = []
    for _ in range(count):
        pool = TRICKY_NAMES if one_in(draw, 6) else PLAIN_NAMES
        chosen.append(draw(st.sampled_from([n for n in pool if n not in chosen])))
    return chosen


def bounded(draw, x: sp.Expr) -> sp.Expr:
    """A bounded nonlinearity of ``x``: tanh, exp, a rational term or a (rational) power."""
    return draw(st.sampled_from([
        sp.tanh(x), sp.exp(-x**2), sp.exp(sp.tanh(x)) - 1, x / (1 + x**2), 1 / (1 + x**2),
        1 / (1 + sp.exp(-x)), x**3 / (1 + x**4), 1 / sp.sqrt(1 + x**2), (1 + x**2) ** sp.Rational(-3, 2),
    ]))


def constant(draw) -> sp.Expr:
    """An exact constant as SymPy writes it, which every printer must turn into a number."""
    return draw(st.sampled_from([sp.Rational(1, 3), sp.pi / 10, sp.E / 10, sp.Integer(-1) / 7, sp.sqrt(2) / 10]))


def argument(draw, atoms: list, params: Parameters) -> sp.Expr:
    """A sum of one or two atoms, each scaled (by a number or a parameter)."""
    chosen = draw(st.lists(st.sampled_from(atoms), min_size=1, max_size=2))
    return sum(params.number_or_param("gain") * atom for atom in chosen)


def coupling(draw, states: list, inputs: list, params: Parameters, own: sp.Symbol) -> sp.Expr:
    """One term added to a state's update: bounded, or a small multiple of a state."""
    kind = draw(st.sampled_from(["bounded", "bounded", "linear", "product", "rational_input", "exact",
                                 "spike"]))
    atoms = states + inputs
    if kind == "bounded":
        term = params.number_or_param("coef") * bounded(draw, argument(draw, atoms, params))
    elif kind == "exact":
        term = constant(draw) * bounded(draw, argument(draw, atoms, params))
    elif kind == "spike":  # a second spike, with its own surrogate: adaptation, gating
        family = draw(st.sampled_from(sorted(SURROGATES)))
        term = params.number_or_param("coef") * spike(argument(draw, states, params) - params.number_or_param(
            "threshold"), SURROGATES[family](draw(st.sampled_from([0.5, 1.0]))))
    elif kind == "linear":
        term = params.number_or_param("small") * draw(st.sampled_from(states))
    elif kind == "product":  # a state times a bounded function: small, so the leak still wins
        other = draw(st.sampled_from(states))
        term = params.number_or_param("small") * other * bounded(draw, argument(draw, atoms, params))
    else:
        term = params.number_or_param("coef") * draw(st.sampled_from(atoms)) / (1 + own**2)
    if one_in(draw, 4):
        term = stop_gradient(term)
    return term


def input_term(draw, states: list, I: sp.Symbol, params: Parameters) -> sp.Expr:
    """How the input enters a state: linearly, with a state-dependent gain, or saturated."""
    kind = draw(st.sampled_from(["linear", "linear", "gain", "tanh", "rational"]))
    if kind == "linear":
        return params.number_or_param("gain") * I
    if kind == "gain":
        return I * (1 + params.number_or_param("coef") * sp.tanh(draw(st.sampled_from(states))))
    if kind == "tanh":
        return 2 * sp.tanh(I / 2 + params.number_or_param("small") * draw(st.sampled_from(states)))
    return I / (1 + params.number_or_param("coef")**2 * draw(st.sampled_from(states))**2)


def non_differentiable(draw, states: list) -> sp.Expr:
    """A kink, which a model may only use inside stop_gradient."""
    s = draw(st.sampled_from(states))
    return draw(st.sampled_from([
        sp.Abs(s), sp.Max(s, 0), sp.Min(s, 1), sp.Heaviside(s), sp.sign(s), sp.floor(2 * s),
        sp.ceiling(s), sp.frac(s), sp.Mod(s, sp.Rational(1, 2)), sp.Piecewise((s, s > 0), (s / 2, True)),
    ]))


@st.composite
def model_specs(draw) -> dict:
    """Keyword arguments of a random ``NeuronModel``: 1-4 states, 0-6 parameters (none at all
    in one in six), one synaptic input or (one in five) two or three."""
    n_states = draw(st.integers(1, 4))
    drawn = draw(names(n_states + 6))
    state_names, param_names = drawn[:n_states], drawn[n_states:]
    if one_in(draw, 40):  # a parameter named like a state: must be rejected
        param_names[0] = state_names[-1]
    elif one_in(draw, 6):  # no parameters at all: every coefficient a number
        param_names = []
    if one_in(draw, 10) and "I" not in drawn:  # a state named like the usual input, which is x
        state_names[0] = "I"
    states = [sp.Symbol(n) for n in state_names]
    if "I" in state_names:
        inputs = [sp.Symbol("x")]
    elif one_in(draw, 5):
        count = draw(st.integers(2, 3))
        inputs = [sp.Symbol(n) for n in draw(st.lists(st.sampled_from(SEVERAL_INPUT_NAMES), min_size=count,
                                                      max_size=count, unique=True))]
    else:
        inputs = [sp.Symbol(draw(st.sampled_from(INPUT_NAMES)))]
    I = inputs[0]
    params = Parameters(draw, param_names)

    threshold = params.number_or_param("threshold")
    family = draw(st.sampled_from(sorted(SURROGATES)))
    width = draw(st.sampled_from([sp.Float(0.5), sp.Float(1.0), threshold]))
    read = draw(st.lists(st.sampled_from(states), min_size=1, max_size=n_states, unique=True))
    if one_in(draw, 20):
        read = read[:-1]  # occasionally an output of no state at all
    drive = sum((params.number_or_param("gain") * s for s in read), sp.S.Zero)
    if read and one_in(draw, 4):  # a part of the drive that the surrogate does not see
        drive += stop_gradient(params.number_or_param("small") * draw(st.sampled_from(read)))
    z = spike(drive - threshold, SURROGATES[family](width))

    ignores_input = one_in(draw, 8)
    update = {}
    for s in states:
        value = params.number_or_param("decay") * s
        if not ignores_input and draw(st.booleans()):
            value += input_term(draw, states, draw(st.sampled_from(inputs)), params)
        for _ in range(draw(st.integers(0, 2))):
            value += coupling(draw, states, [] if ignores_input else inputs, params, s)
        reset = draw(st.sampled_from(["none", "stopped", "stopped", "through"]))
        if reset != "none":
            value -= threshold * (stop_gradient(z) if reset == "stopped" else z)
        if one_in(draw, 25):
            kink = non_differentiable(draw, states)
            value += sp.Rational(1, 10) * draw(st.sampled_from([stop_gradient(kink), kink, spike(kink)]))
        update[s] = value
    for symbol in inputs:  # every input used (but, once in 25, a declared one left out)
        if not ignores_input and not any(symbol in e.free_symbols for e in update.values()):
            if len(inputs) == 1 or not one_in(draw, 25):
                update[draw(st.sampled_from(states))] += symbol
    several = dict(inputs=tuple(inputs)) if len(inputs) > 1 else {}

    declared = list(params.values)
    learnable = draw(st.lists(st.sampled_from(declared), unique=True)) if declared else []
    per_neuron = draw(st.lists(st.sampled_from(declared), unique=True)) if declared else []
    initial = {s: round(draw(st.floats(-0.5, 1.5)), 2) for s in states}
    return dict(name="fuzz", states=initial, params=dict(params.values), update=update, output=z,
                input=I if I.name != "I" and not several else None, learnable=tuple(learnable),
                per_neuron=tuple(per_neuron), **several)


ODE_METHODS = ["exact", "exponential_euler", "euler", "rk2", "rk4", "heun", "sequential_euler"]


@st.composite
def ode_specs(draw) -> dict:
    """Keyword arguments of a random ``NeuronModel.from_odes``: 1-2 states, each leaking with a
    time constant of 3-10 steps of dt = 1 ms, plus a linear or bounded nonlinear coupling (which
    ``exact``, and ``exponential_euler`` where the state couples to itself, refuse in one line);
    the input inside an ODE or as a jump; a threshold on the first state, its reset (and once in
    two an increment of the second state), and a drawn method."""
    n_states = draw(st.integers(1, 2))
    drawn = draw(names(n_states + 5))
    states = [sp.Symbol(n) for n in drawn[:n_states]]
    I = sp.Symbol("x" if "I" in drawn else "I")
    params = Parameters(draw, drawn[n_states:])
    odes, jumps = {}, {}
    for s in states:
        nonlinear = params.number_or_param("coef") * bounded(draw, argument(draw, states, params))
        term = draw(st.sampled_from([sp.S.Zero, params.number_or_param("small") * states[-1], nonlinear]))
        odes[s] = (term - s) / params.number_or_param("tau")
    target = draw(st.sampled_from(states))
    if draw(st.booleans()):
        jumps[target] = params.number_or_param("gain") * I
    else:
        odes[target] += params.number_or_param("gain") * I / params.number_or_param("tau")
    threshold = params.number_or_param("threshold")
    reset = {states[0]: draw(st.sampled_from([sp.S.Zero, params.number_or_param("small")]))}
    if len(states) > 1 and draw(st.booleans()):
        reset[states[1]] = states[1] + params.number_or_param("small")
    family = draw(st.sampled_from(sorted(SURROGATES)))
    declared = list(params.values)
    return dict(name="fuzz_ode", states={s: 0.0 for s in states}, params=dict(params.values), odes=odes,
                jumps=jumps, dt=1e-3, method=draw(st.sampled_from(ODE_METHODS)), threshold=states[0] > threshold,
                reset=reset, inputs=(I,), surrogate=SURROGATES[family](draw(st.sampled_from([0.5, 1.0]))),
                reset_gradient=draw(st.booleans()),
                learnable=tuple(draw(st.lists(st.sampled_from(declared), unique=True))) if declared else ())
