"""Shared test helpers: small active networks, smooth model variants, finite differences,
NVRTC and WAV files."""
import ctypes
import ctypes.util
import wave
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symgrad import NeuronModel, models
from symgrad.model import stop_gradient
from symgrad.runtime import Network, bptt, eprop
from symgrad.runtime.projection import Source
from symgrad.surrogates import Spike

# Input weight scale that makes each built-in model fire with 30% input spikes.
DRIVE = {"izhikevich": 40.0, "brf": 60.0, "se_adlif": 4.0, "snn_lif": 1.5, "cuba_lif": 1.0}


def network(name, *, recurrent=False, kappa=0.0, hidden=5, n_in=6, n_out=4, dtype="float64",
            seed=2, model=None, **kwargs):
    model = model or models.builtin(name)
    net = Network(model, n_in, hidden, n_out, recurrent=recurrent, kappa=kappa, seed=seed,
                  dtype=dtype, **kwargs)
    for layer in net.layers:
        for name_ in input_weights(layer):
            net.params[name_] *= 2.0 * DRIVE.get(name, 1.0)
    return net


def input_weights(layer) -> list:
    """The names of a layer's weights from its input (W_in, or W_in_<input> of each input)."""
    return [p.key for p in layer.projections if p.source is Source.INPUT]


def batch(steps=25, size=3, n_in=6, n_out=4, seed=1, rate=0.3):
    """Input spikes (steps, size, n_in) at ``rate`` per channel and step, and random labels."""
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, size, n_in)) < rate).astype(float)
    return x, rng.integers(0, n_out, size)


def assert_active(result, net):
    """Every layer produced output: the gradients of a silent network prove nothing."""
    for count, layer in zip(result.spikes, net.layers):
        assert abs(count) > 0, f"layer {layer.index} is silent: this test would prove nothing"


def assert_eprop_equals_bptt(net, x, target, tolerance, loss="ce", nonzero=True):
    """e-prop's gradient of every parameter against BPTT's, on an active network (and, with
    ``nonzero``, no gradient identically zero); returns both results."""
    fast, reference = eprop(net, x, target, loss=loss), bptt(net, x, target, loss=loss)
    assert_active(fast, net)
    assert set(fast.grads) == set(reference.grads)
    for key in reference.grads:
        if nonzero:
            assert np.abs(reference.grads[key]).max() > 0, f"{key}: zero gradient proves nothing"
        assert relative_error(fast.grads[key], reference.grads[key]) <= tolerance, key
    return fast, reference


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
    update = {s: smooth(e) for s, e in model.update.items()}
    heard = set().union(*(e.free_symbols for e in update.values()))
    # A model that ignores its one input was declared without naming it; so is its variant.
    inputs = model.inputs if set(model.inputs) <= heard else ()
    return NeuronModel(
        name=f"{model.name}_smooth", states=model.states, params=model.params, update=update,
        output=smooth(model.output), input=model.input, learnable=model.learnable,
        per_neuron=model.per_neuron, doc=model.doc, inputs=inputs, projections=model.projections,
        signs=model.signs)


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


def finite_difference_check(net, x, labels, loss="ce", points=3):
    """BPTT's gradient of every parameter against central differences of its loss, at
    ``points`` entries of each; returns BPTT's result."""
    reference = bptt(net, x, labels, loss=loss)
    rng = np.random.default_rng(0)
    for key, value in net.params.items():
        for index in [tuple(rng.integers(0, s) for s in value.shape) for _ in range(points)]:
            original = value[index]
            h = 1e-6 * max(1.0, abs(original))
            value[index] = original + h
            up = bptt(net, x, labels, loss=loss).loss
            value[index] = original - h
            down = bptt(net, x, labels, loss=loss).loss
            value[index] = original
            assert reference.grads[key][index] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8), (
                key, index)
    return reference


def nvrtc():
    """libnvrtc, as CuPy uses it: from the nvidia-cuda-nvrtc wheel or the system, else None."""
    candidates = []
    try:
        import nvidia.cuda_nvrtc as package

        for folder in package.__path__:
            candidates += sorted(Path(folder, "lib").glob("libnvrtc.so*"))
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    candidates += [found] if found else []
    for candidate in candidates:
        try:
            return ctypes.CDLL(str(candidate))
        except OSError:
            continue
    return None


def nvrtc_compile(lib, source: bytes, name: bytes, expressions) -> ctypes.c_void_p:
    """Compile a .cu as CuPy does, with the kernel instantiations ``expressions``; fails the
    test with NVRTC's log. The caller destroys the returned program."""
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source, name, 0, None, None) == 0
    for expression in expressions:
        assert lib.nvrtcAddNameExpression(program, expression) == 0
    options = [b"--std=c++14", b"-arch=compute_80"]
    status = lib.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    if status != 0:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0, log.value.decode()
    return program
