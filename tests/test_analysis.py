"""Jacobians, their classes and the trace plans of every built-in model.

The symbolic Jacobians are checked against central finite differences of the lambdified
update map, with each spike replaced by a smooth step whose derivative is its surrogate and
each stop_gradient term held at its value at the base point.
"""
import numpy as np
import pytest
import sympy as sp

from symgrad import models
from symgrad.analysis import Analysis
from symgrad.model import stop_gradient
from symgrad.plan import TracePlan, plans_of
from symgrad.surrogates import Pseudo, Spike

C, Z, P, Y = "constant", "zero", "per-neuron", "dynamic"

EXPECTED = {
    "lif": ([[C]], [C], [Y], {"v": "presynaptic"}),
    "alif": ([[C, Z], [Y, Y]], [C, Z], [Y, Y], {"v": "presynaptic", "a": "per-synapse"}),
    "cuba_lif": ([[C, C], [Z, C]], [C, C], [Y, Z], {"v": "presynaptic", "i": "presynaptic"}),
    "sigma_delta": ([[C, Z], [Z, C]], [C, Z], [Y, Y], {"sigma": "presynaptic", "r": "unreachable"}),
    "izhikevich": ([[Y, Y], [C, C]], [Y, Z], [Y, Z], {"v": "per-synapse", "u": "per-synapse"}),
    "se_adlif": ([[Y, P], [Y, Y]], [P, Y], [Y, Z], {"u": "per-synapse", "w": "per-synapse"}),
    "brf": ([[Y, Y, Y], [Y, Y, Y], [Y, Z, Y]], [C, Z, Z], [Y, Z, Y],
            {"x": "per-synapse", "y": "per-synapse", "q": "per-synapse"}),
    "leaky_tanh": ([[C]], [C], [Y], {"r": "presynaptic"}),
    "snn_lif": ([[Y]], [C], [Y], {"v": "per-synapse"}),
    # several inputs: c and the plan per input
    "coba_lif": ([[Y, Y, Y], [Z, C, Z], [Z, Z, C]], {"I_e": [Y, C, Z], "I_i": [Y, Z, C]}, [Y, Z, Z],
                 {"I_e": {"v": "per-synapse", "g_e": "presynaptic", "g_i": "unreachable"},
                  "I_i": {"v": "per-synapse", "g_e": "unreachable", "g_i": "presynaptic"}}),
    "two_compartment": ([[C, C], [C, C]], {"I_s": [C, Z], "I_d": [Z, C]}, [Y, Z],
                        {"I_s": {"v": "presynaptic", "d": "presynaptic"},
                         "I_d": {"v": "presynaptic", "d": "presynaptic"}}),
}


def test_every_builtin_is_covered():
    assert set(EXPECTED) == set(models.BUILTIN)
    assert len(models.BUILTIN) >= 9
    for name in models.BUILTIN:
        assert models.builtin(name).doc.strip(), f"{name} needs its source in its docstring"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_classes_and_plan(name):
    D, c, h, plan = EXPECTED[name]
    analysis = Analysis(models.builtin(name))
    classes = analysis.classes()
    assert classes["D"] == D
    assert classes["c"] == c
    assert classes["h"] == h
    plans = plans_of(analysis)
    by_name = {p.input.name: p.by_name() for p in plans}
    assert (by_name if len(plans) > 1 else by_name[analysis.inputs[0].name]) == plan


def test_alif_worked_example_expressions():
    analysis = Analysis(models.builtin("alif"))
    alpha, rho, beta = sp.symbols("alpha rho beta")
    assert analysis.D[0][0].expr == alpha
    assert analysis.c[0].expr == 1
    psi = analysis.D[1][0].expr
    assert isinstance(psi, Pseudo)
    assert sp.simplify(analysis.D[1][1].expr - (rho - beta * psi)) == 0
    assert sp.simplify(analysis.h[1].expr + beta * analysis.h[0].expr) == 0


def test_presynaptic_filter_coefficients():
    plan = TracePlan(Analysis(models.builtin("cuba_lif")))
    coefs = plan.filter_coefficients()
    alpha, alpha_s = sp.symbols("alpha alpha_s")
    assert coefs["v"] == {"c": 1, "D": {"v": alpha, "i": alpha_s}}
    assert coefs["i"] == {"c": 1, "D": {"i": alpha_s}}


def test_cyclic_per_synapse_components_save_one_copy():
    plan = TracePlan(Analysis(models.builtin("brf")))
    assert [s.index for s in plan.steps] == [0, 1, 2]
    assert plan.saved == [0]
    izh = TracePlan(Analysis(models.builtin("izhikevich")))
    assert len(izh.saved) == 1


def test_memory_of_lif_with_instantaneous_readout_has_nothing_per_synapse():
    plan = TracePlan(Analysis(models.builtin("lif")))
    figures = plan.memory(32, 256, 396, filtered=False)
    assert figures["per-synapse traces"] == figures["filtered eligibility"] == figures["scratch"] == 0
    assert figures["presynaptic traces"] == 32 * 396 * 4
    alif = TracePlan(Analysis(models.builtin("alif"))).memory(32, 256, 396, filtered=False)
    assert alif["per-synapse traces"] == 32 * 256 * 396 * 4


# -- finite differences -----------------------------------------------------------------------
# Where to evaluate: states spread around each model's threshold, so surrogates are non-zero.
POINTS = {
    "lif": {"v": (0.2, 1.0)},
    "alif": {"v": (0.4, 1.2), "a": (0.0, 0.2)},
    "cuba_lif": {"v": (0.5, 1.5), "i": (-0.5, 0.5)},
    "sigma_delta": {"sigma": (0.5, 1.5), "r": (0.0, 0.5)},
    "izhikevich": {"v": (25.0, 35.0), "u": (-15.0, -5.0)},
    "se_adlif": {"u": (0.1, 0.7), "w": (-0.2, 0.2)},
    "brf": {"x": (0.5, 1.5), "y": (-1.0, 1.0), "q": (0.0, 0.3)},
    "leaky_tanh": {"r": (-1.0, 1.0)},
    "snn_lif": {"v": (0.8, 1.2)},
    "coba_lif": {"v": (0.5, 1.5), "g_e": (0.0, 0.5), "g_i": (0.0, 0.5)},
    "two_compartment": {"v": (0.5, 1.5), "d": (-0.5, 0.5)},
}


def _numeric(expr, point):
    """The forward value of expr at a point: spikes are steps, stop_gradient the identity."""
    functions = {"stop_gradient": lambda e: e}
    for cls in Spike.__subclasses__():
        functions[cls.__name__] = lambda x, *params: 1.0 if x > 0 else 0.0
    for cls in Pseudo.__subclasses__():
        functions[cls.__name__] = lambda *args, cls=cls: float(cls.formula(*args))
    symbols = sorted(point, key=str)
    return float(sp.lambdify(symbols, expr, [functions, "math"])(*[point[s] for s in symbols]))


def _smooth(expr, base):
    """Hold stop_gradient terms at their base value; make each spike smooth around the base.

    A spike becomes H(x_0) + P(x) - P(x_0), with P the surrogate's primitive: its value at
    the base point is the step's, and its derivative is the surrogate.
    """
    expr = expr.replace(stop_gradient, lambda e: sp.Float(_numeric(e, base)))

    def smooth_step(step):
        primitive = step.psi(*step.args).primitive()
        return _numeric(step, base) - _numeric(primitive, base) + primitive

    return expr.replace(lambda e: isinstance(e, Spike), smooth_step)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_jacobians_match_finite_differences(name):
    model = models.builtin(name)
    analysis = Analysis(model)
    rng = np.random.default_rng(7)
    states, params = model.state_symbols, model.param_symbols
    variables = states + list(model.inputs) + list(model.learnable)
    checked, largest_h = 0, 0.0
    for trial in range(6):
        point = {p: v for p, v in model.params.items()}
        for s in states:
            low, high = POINTS[name][s.name]
            point[s] = rng.uniform(low, high)
        for symbol in model.inputs:
            point[symbol] = rng.uniform(-0.5, 0.5)
        updates = [_smooth(model.update[s], point) for s in states]
        f = sp.lambdify([variables + [p for p in params if p not in model.learnable]], updates, "math")
        base = [point[v] for v in variables] + [point[p] for p in params if p not in model.learnable]

        def numeric_derivative(index, h=1e-6):
            up, down = list(base), list(base)
            up[index] += h
            down[index] -= h
            return (np.array(f(up)) - np.array(f(down))) / (2 * h)

        for j, s in enumerate(states):  # D[:, j]
            fd = numeric_derivative(j)
            symbolic = [_numeric(analysis.D[k][j].expr, point) for k in range(len(states))]
            np.testing.assert_allclose(symbolic, fd, rtol=1e-5, atol=1e-7, err_msg=f"{name} D[:, {s}]")
        for i, symbol in enumerate(model.inputs):  # c of each input
            fd = numeric_derivative(len(states) + i)
            symbolic = [_numeric(e.expr, point) for e in analysis.c_of[symbol]]
            np.testing.assert_allclose(symbolic, fd, rtol=1e-5, atol=1e-7, err_msg=f"{name} c[{symbol}]")
        for i, p in enumerate(model.learnable):  # q
            fd = numeric_derivative(len(states) + len(model.inputs) + i)
            symbolic = [_numeric(e.expr, point) for e in analysis.q[p]]
            np.testing.assert_allclose(symbolic, fd, rtol=1e-5, atol=1e-7, err_msg=f"{name} q[{p}]")
        # h: the output's derivative by the (new) state
        fixed = {p: point[p] for p in params}
        g = sp.lambdify([states], _smooth(model.output, point).subs(fixed), "math")
        for j, s in enumerate(states):
            up = [point[t] + (1e-6 if t == s else 0) for t in states]
            down = [point[t] - (1e-6 if t == s else 0) for t in states]
            fd = (g(up) - g(down)) / 2e-6
            assert _numeric(analysis.h[j].expr, point) == pytest.approx(fd, rel=1e-5, abs=1e-7)
            largest_h = max(largest_h, abs(fd))
        checked += 1
    assert checked == 6
    assert largest_h > 1e-3, "the points never reach the surrogate: the check would be vacuous"


def test_rows_at_rest_are_derived_for_the_models_that_have_them():
    rest = {name: [p.quiescence for p in plans_of(Analysis(models.builtin(name)))] for name in models.BUILTIN}
    assert {n for n, q in rest.items() if all(each.event_driven for each in q)} == {
        "lif", "alif", "sigma_delta", "two_compartment"}
    assert not any(each.event_driven for each in rest["coba_lif"])
    # the conductance's drive depends on v, so eps_v hears the input at rest too
    assert "eps_v keeps hearing its input at rest (c_v_I_e = " in rest["coba_lif"][0].reason
    rest = {name: q[0] for name, q in rest.items()}
    assert "fast_sigmoid_psi is never zero" in rest["cuba_lif"].reason
    assert {k: str(v) for k, v in rest["alif"].decays.items()} == {"a": "rho"}
    assert "c_u" in rest["se_adlif"].reason and "no surrogate" in rest["leaky_tanh"].reason
    assert rest["alif"].at_rest == ("triangle_psi(-a_{t-1}*beta - v_th + v_{t-1}, 0.3, v_th)",
                                    "triangle_psi(-a_t*beta + v_t - v_th, 0.3, v_th)")


@pytest.mark.parametrize("name", ["lif", "alif", "sigma_delta"])
def test_a_row_at_rest_does_what_the_plan_says(name):
    """Far below threshold the generated step's entries are exactly the resting ones: per-synapse
    traces decay by their factor, hear nothing else, and the eligibility is zero."""
    import numpy as np

    from symgrad.runtime import compiled

    model = models.builtin(name)
    plan = TracePlan(Analysis(model))
    code = compiled.load(model)
    p = {q.name: np.asarray(v) for q, v in model.params.items()}
    K = code.fixed_entries(p)
    s = {state: np.full((1, 1), -5.0 if i == 0 else 0.0) for i, state in enumerate(code.STATES)}
    _, z, J = code.neuron_step(s, np.zeros((1, 1)), p)
    assert not z.any()
    entries = {**K, **J}
    analysis = plan.analysis
    for k in plan.eligible:
        assert float(np.asarray(entries[analysis.entry_name("h", k)]).ravel()[0]) == 0.0
    for name_k, decay in plan.quiescence.decays.items():
        k = analysis.names.index(name_k)
        value = float(decay.subs({q: v for q, v in model.params.items()}))
        assert float(np.asarray(entries[analysis.entry_name("D", k, k)]).ravel()[0]) == value
