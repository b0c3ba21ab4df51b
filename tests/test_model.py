"""The public model API and every malformed-model error."""
import sympy as sp
import pytest

from symgrad import ModelError, NeuronModel, spike, stop_gradient, surrogates
from symgrad.surrogates import Pseudo

v, a, I = sp.symbols("v a I")
alpha, rho, beta, v_th = sp.symbols("alpha rho beta v_th")


def alif_like(**changes):
    z = spike(v - v_th - beta * a, surrogate=surrogates.triangle(gamma=0.3, width=v_th))
    spec = dict(
        name="alif",
        states={v: 0.0, a: 0.0},
        params={alpha: 0.95, rho: 0.995, beta: 1.8, v_th: 0.6},
        update={v: alpha * v + I - v_th * stop_gradient(z), a: rho * a + z},
        output=z,
    )
    spec.update(changes)
    return NeuronModel(**spec)


def test_issue_example_declares_a_model():
    model = alif_like()
    assert model.state_names == ["v", "a"]
    assert model.input == I
    assert str(model.output) == "spike(-a*beta + v - v_th)"


def test_input_named_by_argument():
    x = sp.Symbol("x")
    model = alif_like(update={v: alpha * v + x, a: rho * a}, input=x)
    assert model.input == x


def test_stop_gradient_has_zero_derivative():
    assert sp.diff(stop_gradient(v**2), v) == 0
    assert sp.diff(3 * v + stop_gradient(v), v) == 3


@pytest.mark.parametrize("make", [
    lambda x: surrogates.triangle(0.3, 0.6)(x),
    lambda x: surrogates.fast_sigmoid(10.0)(x),
    lambda x: surrogates.sigmoid(5.0)(x),
    lambda x: surrogates.arctan(2.0)(x),
])
def test_spike_derivative_is_the_surrogate_and_primitive_integrates_it(make):
    x = sp.Symbol("x", real=True)
    step = make(x)
    psi = sp.diff(step, x)
    assert isinstance(psi, Pseudo)
    # the primitive's derivative is the surrogate, checked at points off the kinks
    for point in (-0.9, -0.31, 0.07, 0.45, 1.3):
        numeric = float(sp.diff(psi.primitive(), x).subs(x, point))
        assert numeric == pytest.approx(float(psi.explicit().subs(x, point)), rel=1e-12, abs=1e-15)
    assert float(psi.explicit().subs(x, 0)) > 0


def test_triangle_is_the_eprop_pseudo_derivative():
    x = sp.Symbol("x")
    psi = sp.diff(surrogates.triangle(gamma=0.3, width=0.6)(x), x).explicit()
    assert float(psi.subs(x, 0)) == pytest.approx(0.5)
    assert float(psi.subs(x, 0.3)) == pytest.approx(0.25)
    assert float(psi.subs(x, 0.7)) == 0.0


ERRORS = {
    "undeclared symbol": (dict(update={v: alpha * v + I + sp.Symbol("w"), a: rho * a}), "undeclared symbol 'w'"),
    "state without update": (dict(update={v: alpha * v + I}), "state a has no update"),
    "update of a non-state": (
        dict(update={v: alpha * v + I, a: rho * a, sp.Symbol("b"): v}), "update for b, which is not a declared state"),
    "Heaviside": (dict(update={v: alpha * v + I, a: rho * a + sp.Heaviside(v - v_th)}), "non-differentiable Heaviside"),
    "sign": (dict(update={v: alpha * v + I * sp.sign(v), a: rho * a}), "non-differentiable sign(v)"),
    "floor": (dict(update={v: sp.floor(alpha * v) + I, a: rho * a}), "non-differentiable floor"),
    "non-numeric parameter": (dict(params={alpha: "fast", rho: 0.9, beta: 1.0, v_th: 0.5}), "non-numeric value 'fast'"),
    "symbolic parameter": (dict(params={alpha: v_th, rho: 0.9, beta: 1.0, v_th: 0.5}), "parameter alpha has non-numeric"),
    "duplicate names": (
        dict(params={alpha: 0.9, rho: 0.9, beta: 1.0, v_th: 0.5, sp.Symbol("v", positive=True): 1.0}), "duplicate name 'v'"),
    "input shadows a state": (dict(input=v), "duplicate name 'v'"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_models_get_one_line_errors_naming_the_culprit(case):
    changes, message = ERRORS[case]
    with pytest.raises(ModelError) as info:
        alif_like(**changes)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_functions_allowed_inside_spike_and_stop_gradient():
    model = alif_like(update={v: alpha * v + I - stop_gradient(sp.Abs(v)), a: rho * a})
    assert model.states


def test_with_params_replaces_defaults():
    model = alif_like().with_params(alpha=0.5)
    assert model.params[alpha] == 0.5
    with pytest.raises(ModelError, match="no parameter 'gamma'"):
        alif_like().with_params(gamma=1)
