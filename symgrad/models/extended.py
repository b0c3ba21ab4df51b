"""More neuron models, each declared with the same public API as lif and alif.

Every model states its source. Where a published model is continuous in time it is
discretised with the step noted in its docstring; where it resets, the reset is wrapped in
``stop_gradient`` unless the model exists to differentiate through it (``snn_lif``).
"""
import sympy as sp

from .. import surrogates
from ..model import NeuronModel, spike, stop_gradient


def cuba_lif() -> NeuronModel:
    """Current-based LIF with a synaptic-current state.

    Neftci, Mostafa & Zenke (2019), "Surrogate gradient learning in spiking neural
    networks", IEEE Signal Processing Magazine 36(6), Eqs. 2-3 in discrete time, with the
    reset subtracted as in Bellec et al. (2020):

        i_t = alpha_s i_{t-1} + I_t
        v_t = alpha v_{t-1} + i_t - v_th stop_gradient(z_{t-1})

    Both Jacobian rows are constant, so both traces are presynaptic filters.
    """
    v, i, I = sp.symbols("v i I")
    alpha, alpha_s, v_th = sp.symbols("alpha alpha_s v_th")
    z = spike(v - v_th, surrogate=surrogates.fast_sigmoid(beta=10.0))
    i_new = alpha_s * i + I
    return NeuronModel(
        name="cuba_lif",
        states={v: 0.0, i: 0.0},
        params={alpha: 0.95, alpha_s: 0.8, v_th: 1.0},
        update={
            v: alpha * v + i_new - v_th * stop_gradient(z),
            i: i_new,
        },
        output=z,
        doc=cuba_lif.__doc__,
    )


def sigma_delta() -> NeuronModel:
    """Sigma-delta neuron, after the one in the seed paper's reference code.

    Lohoff, Kaya, Assmuth & Neftci (2025), "A truly sparse and general implementation of
    gradient-based synaptic plasticity"; the sigma-delta scheme of Loihi 2's SDNNs
    (Shrestha et al. 2024, "Efficient video and audio processing with Loihi 2"). The sigma
    state integrates the input; the reference r tracks what has been transmitted, growing by
    the quantum v_th per spike, and a spike is sent when the two drift apart by v_th:

        sigma_t = alpha sigma_{t-1} + I_t
        r_t     = r_{t-1} + v_th stop_gradient(z_{t-1})
        z_t     = H(sigma_t - r_t - v_th)

    The reference never sees the input through a derivative, so its trace is unreachable.
    """
    sigma, r, I = sp.symbols("sigma r I")
    alpha, v_th = sp.symbols("alpha v_th")
    z = spike(sigma - r - v_th, surrogate=surrogates.triangle(gamma=0.3, width=v_th))
    return NeuronModel(
        name="sigma_delta",
        states={sigma: 0.0, r: 0.0},
        params={alpha: 0.99, v_th: 0.5},
        update={
            sigma: alpha * sigma + I,
            r: r + v_th * stop_gradient(z),
        },
        output=z,
        doc=sigma_delta.__doc__,
    )


def izhikevich() -> NeuronModel:
    """Izhikevich neuron, forward-Euler with step dt (ms).

    Izhikevich (2003), "Simple model of spiking neurons", IEEE Trans. Neural Networks 14(6):

        v' = 0.04 v^2 + 5 v + 140 - u + I,   u' = a (b v - u),
        if v >= v_peak: v <- c, u <- u + d.

    Here the reset selects with stop_gradient(z_{t-1}), where z = H(v - v_peak):

        v_t = (1 - z) (v + dt (0.04 v^2 + 5 v + 140 - u + I)) + z c
        u_t = u + dt a (b v - u) + d z

    The quadratic membrane makes every trace per-synapse. Regular-spiking defaults.
    """
    v, u, I = sp.symbols("v u I")
    a, b, c, d, v_peak, dt = sp.symbols("a b c d v_peak dt")
    z = spike(v - v_peak, surrogate=surrogates.fast_sigmoid(beta=0.5))
    z_reset = stop_gradient(z)
    dv = 0.04 * v**2 + 5 * v + 140 - u + I
    return NeuronModel(
        name="izhikevich",
        states={v: -65.0, u: -13.0},
        params={a: 0.02, b: 0.2, c: -65.0, d: 8.0, v_peak: 30.0, dt: 0.5},
        update={
            v: (1 - z_reset) * (v + dt * dv) + z_reset * c,
            u: u + dt * a * (b * v - u) + d * z_reset,
        },
        output=z,
        doc=izhikevich.__doc__,
    )


def se_adlif() -> NeuronModel:
    """Adaptive LIF discretised with symplectic Euler (SE-adLIF).

    Baronig, Ferrand, Sabathiel & Legenstein (2024), "Advancing spatio-temporal processing
    in spiking neural networks through adaptation", Eqs. 8-10. The adaptation w is updated
    with the *new* membrane potential and spike, which is what makes the scheme symplectic:

        u_t = alpha u_{t-1} (1 - stop_gradient(z_{t-1})) + (1 - alpha) (I_t - w_{t-1})
        z_t = H(u_t - theta)
        w_t = beta w_{t-1} + (1 - beta) (a u_t + b z_t)

    The stored u is the membrane before the reset, which the next step applies. alpha and
    beta are per-neuron and learnable, as in the paper.
    """
    u, w, I = sp.symbols("u w I")
    alpha, beta, a, b, theta = sp.symbols("alpha beta a b theta")
    surrogate = surrogates.triangle(gamma=0.3, width=theta)
    z = spike(u - theta, surrogate=surrogate)
    u_new = alpha * u * (1 - stop_gradient(z)) + (1 - alpha) * (I - w)
    z_new = spike(u_new - theta, surrogate=surrogate)
    return NeuronModel(
        name="se_adlif",
        states={u: 0.0, w: 0.0},
        params={alpha: 0.9, beta: 0.97, a: 0.5, b: 1.0, theta: 0.4},
        update={
            u: u_new,
            w: beta * w + (1 - beta) * (a * u_new + b * z_new),
        },
        output=z,
        learnable=(alpha, beta),
        doc=se_adlif.__doc__,
    )


def brf() -> NeuronModel:
    """Balanced resonate-and-fire neuron (BRF).

    Higuchi, Kairat, Bohte & Otte (2024), "Balanced resonate-and-fire neurons", ICML,
    Eqs. 5-9. The complex potential x + i y rotates at angular frequency omega and decays at
    the rate p(omega) + b_offset - q, where p keeps the discrete system at its divergence
    boundary and the refractory q rises with each spike:

        x_t = e^{dt (p + b_offset - q_{t-1})} (cos(omega dt) x - sin(omega dt) y) + dt I_t
        y_t = e^{dt (p + b_offset - q_{t-1})} (sin(omega dt) x + cos(omega dt) y)
        q_t = gamma q_{t-1} + z_{t-1},      z_t = H(x_t - theta - q_t)

    with p(omega) = (-1 + sqrt(1 - (dt omega)^2)) / dt. omega is per-neuron and learnable.
    """
    x, y, q, I = sp.symbols("x y q I")
    omega, b_offset, theta, gamma, dt = sp.symbols("omega b_offset theta gamma dt")
    z = spike(x - theta - q, surrogate=surrogates.triangle(gamma=0.3, width=theta))
    p = (-1 + sp.sqrt(1 - (dt * omega) ** 2)) / dt
    decay = sp.exp(dt * (p + b_offset - q))
    return NeuronModel(
        name="brf",
        states={x: 0.0, y: 0.0, q: 0.0},
        params={omega: 10.0, b_offset: -1.0, theta: 1.0, gamma: 0.9, dt: 0.01},
        update={
            x: decay * (sp.cos(omega * dt) * x - sp.sin(omega * dt) * y) + dt * I,
            y: decay * (sp.sin(omega * dt) * x + sp.cos(omega * dt) * y),
            q: gamma * q + z,
        },
        output=z,
        learnable=(omega,),
        doc=brf.__doc__,
    )


def leaky_tanh() -> NeuronModel:
    """Non-spiking leaky rate neuron with a tanh output.

    The continuous-time rate network of Sussillo & Abbott (2009), "Generating coherent
    patterns of activity from chaotic neural networks", Neuron 63(4), Euler-discretised with
    alpha = exp(-dt / tau):

        r_t = alpha r_{t-1} + (1 - alpha) I_t,      z_t = tanh(r_t)

    Its trace is presynaptic; with an instantaneous readout nothing per-synapse is stored.
    """
    r, I = sp.symbols("r I")
    alpha = sp.Symbol("alpha")
    return NeuronModel(
        name="leaky_tanh",
        states={r: 0.0},
        params={alpha: 0.9},
        update={r: alpha * r + (1 - alpha) * I},
        output=sp.tanh(r),
        doc=leaky_tanh.__doc__,
    )


def snn_lif() -> NeuronModel:
    """LIF whose reset to zero is differentiated through.

    The ``SNN_LIF`` cell of the seed paper's reference code (Lohoff et al. 2025), as in
    Zenke & Vogels (2021), "The remarkable robustness of surrogate gradient learning":

        v_t = alpha v_{t-1} (1 - z_{t-1}) + I_t,      z_t = H(v_t - v_th)

    The gradient flows through the reset, so D_vv = alpha (1 - z - v psi) is dynamic and the
    membrane trace is per-synapse.
    """
    v, I = sp.symbols("v I")
    alpha, v_th = sp.symbols("alpha v_th")
    z = spike(v - v_th, surrogate=surrogates.fast_sigmoid(beta=10.0))
    return NeuronModel(
        name="snn_lif",
        states={v: 0.0},
        params={alpha: 0.95, v_th: 1.0},
        update={v: alpha * v * (1 - z) + I},
        output=z,
        doc=snn_lif.__doc__,
    )
