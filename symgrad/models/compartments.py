"""Built-in models with several synaptic inputs: each projection of a network drives one of them.

Each input I_p has its own Jacobian column c^p and its own eligibility traces, planned apart:
the conductance-based LIF shows an input whose traces become per synapse (its drive is
multiplied by the membrane's distance to a reversal potential), the two-compartment neuron one
whose traces stay presynaptic filters.
"""
import sympy as sp

from ..model import NeuronModel, spike, stop_gradient


def coba_lif() -> NeuronModel:
    """Conductance-based LIF with excitatory and inhibitory conductances.

    The conductance-based integrate-and-fire neuron of Vogels & Abbott (2005), "Signal
    propagation and logic gating in networks of integrate-and-fire neurons", J. Neurosci.
    25(46), Eqs. 1-2 (the COBA model of Brette et al. 2007, J. Comput. Neurosci. 23(3)),
    forward Euler with beta = dt/tau_m, conductances in units of the leak conductance and the
    membrane measured from rest in units of the threshold (E_L = 0, v_th = 1; with -60 mV rest,
    -50 mV threshold, 0 mV and -80 mV reversal potentials E_e = 6 and E_i = -2):

        g_e,t = alpha_e g_e,t-1 + I_e,t          g_i,t = alpha_i g_i,t-1 + I_i,t
        r_t   = (1 - stop_gradient(z_t-1)) v_t-1        (reset to rest after a spike)
        v_t   = r_t - beta r_t + beta (g_e,t (E_e - r_t) + g_i,t (E_i - r_t))
        z_t   = H(v_t - v_th)

    Each input reaches v through a conductance times the distance to its reversal potential,
    a factor that changes with v: c_v for both inputs is dynamic, so eps_v is stored per
    synapse for each input, while the conductances' traces stay presynaptic filters. By
    default both inputs hear the input and the recurrent spikes, with weights kept >= 0
    (a conductance never turns negative); E_e and E_i make one excitatory, one inhibitory.
    """
    v, g_e, g_i, I_e, I_i = sp.symbols("v g_e g_i I_e I_i")
    alpha_e, alpha_i, beta, E_e, E_i, v_th = sp.symbols("alpha_e alpha_i beta E_e E_i v_th")
    z = spike(v - v_th)
    g_e_new, g_i_new = alpha_e * g_e + I_e, alpha_i * g_i + I_i
    rest = (1 - stop_gradient(z)) * v
    return NeuronModel(
        name="coba_lif",
        states={v: 0.0, g_e: 0.0, g_i: 0.0},
        params={alpha_e: 0.8, alpha_i: 0.9, beta: 0.01, E_e: 6.0, E_i: -2.0, v_th: 1.0},
        update={
            v: rest - beta * rest + beta * (g_e_new * (E_e - rest) + g_i_new * (E_i - rest)),
            g_e: g_e_new,
            g_i: g_i_new,
        },
        output=z,
        inputs=(I_e, I_i),
        projections={"I_e": ("input", "recurrent"), "I_i": ("input", "recurrent")},
        signs={"I_e": 1, "I_i": 1},
        doc=coba_lif.__doc__,
    )


def two_compartment() -> NeuronModel:
    """Two-compartment LIF: a soma that spikes and a passive dendrite, coupled both ways.

    The reduced two-compartment neuron of Pinsky & Rinzel (1994), "Intrinsic and network
    rhythmogenesis in a reduced Traub model for CA3 neurons", J. Comput. Neurosci. 1(1-2), with
    the active currents replaced by a leaky soma that fires and resets as in Bellec et al.
    (2020), and one synaptic input per compartment as in the dendritic prediction rule of
    Urbanczik & Senn (2014), "Learning by the dendritic prediction of somatic spiking",
    Neuron 81(3):

        d_t = alpha_d d_t-1 + g_ds (v_t-1 - d_t-1) + I_d,t             (dendrite)
        v_t = alpha v_t-1 + g_sd (d_t-1 - v_t-1) + I_s,t - v_th stop_gradient(z_t-1)   (soma)
        z_t = H(v_t - v_th)

    Every Jacobian entry of the updates is constant, so both inputs' traces are presynaptic
    filters: the dendrite's input reaches the soma through the coupling g_sd a step later.
    By default the soma hears the input, the dendrite the input and the recurrent spikes.
    """
    v, d, I_s, I_d = sp.symbols("v d I_s I_d")
    alpha, alpha_d, g_sd, g_ds, v_th = sp.symbols("alpha alpha_d g_sd g_ds v_th")
    z = spike(v - v_th)
    return NeuronModel(
        name="two_compartment",
        states={v: 0.0, d: 0.0},
        params={alpha: 0.9, alpha_d: 0.9, g_sd: 0.1, g_ds: 0.05, v_th: 1.0},
        update={
            v: alpha * v + g_sd * (d - v) + I_s - v_th * stop_gradient(z),
            d: alpha_d * d + g_ds * (v - d) + I_d,
        },
        output=z,
        inputs=(I_s, I_d),
        projections={"I_s": ("input",), "I_d": ("input", "recurrent")},
        doc=two_compartment.__doc__,
    )
