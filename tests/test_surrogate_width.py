"""inspect names every spike's surrogate with its parameters, and says plainly where the
triangle's width was left to its default: 1.0, whatever the model's threshold."""
import sympy as sp

from symgrad import NeuronModel, models, render, spike, surrogates

NOTE = "its width is 1.0 whatever the threshold"

MODEL = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient, surrogates

v, I, v_th = sp.symbols("v I v_th")
z = {spike}
tiny = NeuronModel(name="tiny", states={{v: 0.0}}, params={{v_th: 0.01}},
                   update={{v: 0.9 * v + I - v_th * stop_gradient(z)}}, output=z)
"""


def spike_lines(out: str) -> list[str]:
    """The lines of inspect's text that name a spike's surrogate."""
    return [line.strip() for line in out.splitlines() if line.strip().startswith("spike(")]


def test_a_built_in_with_the_default_surrogate_says_so(symgrad):
    result = symgrad("inspect", "coba_lif")
    assert result.code == 0, result.err
    # z is used in the update and is the output: one spike, one line
    assert spike_lines(result.out) == [
        "spike(v - v_th): triangle(gamma=0.3, width=1.0), by default: " + NOTE
        + "; give one: spike(v - v_th, surrogates.triangle(0.3, width))"]


def test_a_user_model_left_to_the_default_says_so_and_one_with_a_width_does_not(symgrad, tmp_path):
    (tmp_path / "default.py").write_text(MODEL.format(spike="spike(v - v_th)"))
    (tmp_path / "given.py").write_text(MODEL.format(spike="spike(v - v_th, surrogates.triangle(0.3, 0.02))"))
    defaulted = symgrad("inspect", "default.py")
    assert defaulted.code == 0, defaulted.err
    [line] = spike_lines(defaulted.out)
    assert "width=1.0" in line and NOTE in line and "surrogates.triangle(0.3, width)" in line
    given = symgrad("inspect", "given.py")
    assert given.code == 0, given.err
    assert spike_lines(given.out) == ["spike(v - v_th): triangle(gamma=0.3, width=0.02)"]
    assert "whatever the threshold" not in given.out


def test_every_spike_is_named_with_its_surrogate(symgrad):
    lif = symgrad("inspect", "lif")
    assert spike_lines(lif.out) == ["spike(v - v_th): triangle(gamma=0.3, width=v_th)"]
    izhikevich = symgrad("inspect", "izhikevich")
    assert spike_lines(izhikevich.out) == ["spike(v - v_peak): fast_sigmoid(beta=0.5)"]
    se_adlif = spike_lines(symgrad("inspect", "se_adlif").out)  # z_t-1 resets u, z_t is the output
    assert len(se_adlif) == 2 and all(line.endswith(": triangle(gamma=0.3, width=theta)") for line in se_adlif)
    for name in models.BUILTIN:  # only the models that leave the surrogate to its default say so
        out = symgrad("inspect", name).out
        assert (NOTE in out) == (name in ("coba_lif", "two_compartment")), name


def test_the_note_is_the_surrogates_own_and_changes_neither_the_model_nor_its_code():
    v, v_th = sp.symbols("v v_th")
    defaulted, given = spike(v - v_th), surrogates.triangle(0.3, 1.0)(v - v_th)
    assert surrogates.default_width(defaulted) and surrogates.default_width(given)
    assert not surrogates.default_width(surrogates.triangle(0.3, v_th)(v - v_th))
    assert defaulted == given and sp.srepr(defaulted) == sp.srepr(given)
    built = [NeuronModel(name="m", states={v: 0.0}, params={v_th: 0.5}, update={v: 0.9 * v + sp.Symbol("I")},
                         output=z) for z in (defaulted, given)]
    assert built[0] == built[1] and models.identity(built[0]) == models.identity(built[1])
    assert render.render(built[0]) == render.render(built[1])
