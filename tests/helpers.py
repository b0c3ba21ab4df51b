"""Shared test helpers: small active networks, smooth model variants and WAV files."""
import wave

import numpy as np
import sympy as sp

from symgrad import NeuronModel, models
from symgrad.model import stop_gradient
from symgrad.runtime import Network
from symgrad.surrogates import Spike

# Input weight scale that makes each built-in model fire with 30% input spikes.
DRIVE = {"izhikevich": 40.0, "brf": 60.0, "se_adlif": 4.0, "snn_lif": 1.5, "cuba_lif": 1.0}


def network(name, *, recurrent=False, kappa=0.0, hidden=5, n_in=6, n_out=4, dtype="float64",
            seed=2, model=None, **kwargs):
    model = model or models.builtin(name)
    net = Network(model, n_in, hidden, n_out, recurrent=recurrent, kappa=kappa, seed=seed,
                  dtype=dtype, **kwargs)
    for layer in net.layers:
        net.params[layer.key("W_in")] *= 2.0 * DRIVE.get(name, 1.0)
    return net


def batch(steps=25, size=3, n_in=6, n_out=4, seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, size, n_in)) < 0.3).astype(float)
    return x, rng.integers(0, n_out, size)


def relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def cosine(a: dict, b: dict, keys) -> float:
    u = np.concatenate([np.ravel(a[k]) for k in keys])
    v = np.concatenate([np.ravel(b[k]) for k in keys])
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def smooth_variant(model: NeuronModel, sharpness=4.0) -> NeuronModel:
    """The model with every spike a sigmoid and no stop_gradient: differentiable everywhere."""
    def smooth(expr):
        expr = expr.replace(stop_gradient, lambda e: e)
        # The logistic sigmoid written with tanh: its derivative, 1 - tanh^2, cannot overflow
        # far below threshold as exp(-k x) / (1 + exp(-k x))^2 does.
        return expr.replace(lambda e: isinstance(e, Spike),
                            lambda e: (1 + sp.tanh(sharpness * e.args[0] / 2)) / 2)
    return NeuronModel(
        name=f"{model.name}_smooth", states=model.states, params=model.params,
        update={s: smooth(e) for s, e in model.update.items()}, output=smooth(model.output),
        input=model.input, learnable=model.learnable, per_neuron=model.per_neuron, doc=model.doc)


def write_wav(path, audio, rate=8000, channels=1):
    """16-bit PCM WAV from float audio in [-1, 1] shaped (frames,) or (frames, channels)."""
    pcm = (np.asarray(audio) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def tone(freq, seconds=0.25, rate=8000):
    """A Hann-windowed sine: a stand-in for a spoken digit."""
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))
