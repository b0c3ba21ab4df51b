"""The leaky and adaptive integrate-and-fire neurons of e-prop.

Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass (2020), "A solution to the
learning dilemma for recurrent networks of spiking neurons", Nature Communications 11:3625,
equations in discrete time (Methods, "Neuron models"). The reset is subtracted and not
differentiated through, and the pseudo-derivative is the triangle of width v_th.
"""
import sympy as sp

from .. import surrogates
from ..model import NeuronModel, spike, stop_gradient


def lif() -> NeuronModel:
    """LIF (Bellec et al. 2020): v_t = alpha v_{t-1} + I_t - v_th z_{t-1}, z_t = H(v_t - v_th)."""
    v, I = sp.symbols("v I")
    alpha, v_th = sp.symbols("alpha v_th")
    z = spike(v - v_th, surrogate=surrogates.triangle(gamma=0.3, width=v_th))
    return NeuronModel(
        name="lif",
        states={v: 0.0},
        params={alpha: 0.95, v_th: 0.6},
        update={v: alpha * v + I - v_th * stop_gradient(z)},
        output=z,
        doc=lif.__doc__,
    )


def alif() -> NeuronModel:
    """ALIF (Bellec et al. 2020): a LIF whose threshold v_th + beta a_t adapts with each spike."""
    v, a, I = sp.symbols("v a I")
    alpha, rho, beta, v_th = sp.symbols("alpha rho beta v_th")
    z = spike(v - v_th - beta * a, surrogate=surrogates.triangle(gamma=0.3, width=v_th))
    return NeuronModel(
        name="alif",
        states={v: 0.0, a: 0.0},
        params={alpha: 0.95, rho: 0.995, beta: 1.8, v_th: 0.6},
        update={
            v: alpha * v + I - v_th * stop_gradient(z),
            a: rho * a + z,
        },
        output=z,
        doc=alif.__doc__,
    )
