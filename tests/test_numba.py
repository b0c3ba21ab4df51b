"""The fused CPU backend (Numba): the CUDA kernels' descriptions, compiled for the CPU.

It equals the NumPy backend to 1e-12 in float64 (1e-4 in float32) in every case the CUDA host
tests cover, e-prop on it still equals BPTT where e-prop is exact, and a kernel Numba cannot
compile is a one-line error.
"""
import numpy as np
import pytest

from symgrad import models
from symgrad.model import ModelError
from symgrad.runtime import bptt, eprop
from helpers import assert_eprop_equals_bptt, batch, network, relative_error
from test_cuda import _user_models, compare

pytest.importorskip("numba")
MODELS = list(models.BUILTIN)
EXACT = 1e-12


@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", MODELS)
def test_eprop_matches_numpy(name, kappa):
    compare(name, "numba", eprop, kappa=kappa, tolerance=EXACT)


@pytest.mark.parametrize("name", MODELS)
def test_recurrent_eprop_and_bptt_match_numpy(name):
    compare(name, "numba", eprop, kappa=0.8, recurrent=True, hidden=8, tolerance=EXACT)
    compare(name, "numba", bptt, kappa=0.6, recurrent=True, hidden=8, tolerance=EXACT)


@pytest.mark.parametrize("loss, kappa", [("ce_mean", 0.0), ("ce_mean", 0.9), ("ce_last", 0.9)])
@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_sequence_losses_match_numpy(name, kappa, loss):
    compare(name, "numba", eprop, loss=loss, kappa=kappa, steps=20, tolerance=EXACT)


@pytest.mark.parametrize("kappa", [0.0, 0.5])
@pytest.mark.parametrize("name", ["lif", "alif", "cuba_lif", "brf"])
def test_mse_and_rate_regulariser_match_numpy(name, kappa):
    compare(name, "numba", eprop, loss="mse", kappa=kappa, reg=0.5, steps=20, tolerance=EXACT)


def test_dense_traces_and_two_layers_match_numpy():
    compare("alif", "numba", eprop, kappa=0.8, dense=True, tolerance=EXACT)
    compare("cuba_lif", "numba", eprop, kappa=0.0, dense=True, tolerance=EXACT)
    compare("alif", "numba", eprop, kappa=0.7, hidden=(8, 6), tolerance=EXACT)
    compare("se_adlif", "numba", bptt, kappa=0.7, hidden=(8, 6), tolerance=EXACT)


def test_user_models_match_numpy():
    from symgrad.runtime import Network

    x, labels = batch()
    for model in _user_models():
        nets = [Network(model, 6, 5, 4, recurrent=True, kappa=0.7, seed=2, backend=b) for b in ("numpy", "numba")]
        for net in nets:
            net.params["W_in"] *= 3.0
        for rule, reg in ((eprop, 0.3), (bptt, 0.0)):
            expected, got = (rule(net, x, labels, reg=reg) for net in nets)
            assert abs(expected.spikes[0]) > 0
            for key, value in expected.grads.items():
                assert relative_error(got.grads[key], value) <= EXACT, (model.name, key)


def test_float32_matches_numpy_float32():
    got = compare("alif", "numba", eprop, kappa=0.8, dtype="float32", tolerance=1e-4)
    assert got.grads["W_in"].dtype == np.float32


@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", ["alif", "se_adlif", "brf"])
def test_eprop_on_numba_equals_bptt_where_exact(name, kappa):
    net = network(name, kappa=kappa, backend="numba")
    assert_eprop_equals_bptt(net, *batch(), 1e-6)


def test_a_kernel_numba_cannot_compile_is_one_line():
    from numba import njit

    from symgrad.runtime.numba_layer import NumbaKernels

    net = network("lif", backend="numba")
    layer = net.layers[0].code

    @njit
    def broken(*args):
        return undefined_function(args)  # noqa: F821

    kernels = NumbaKernels(layer.kernels.path, layer.kernels.kernels, type("M", (), {
        name: broken for name in layer.kernels.kernels}), "lif")
    kernel, sources = layer.kernels.kernels["fixed_entries"], {}
    for arg in kernel.args:
        sources.setdefault(arg.role, {})[arg.of] = 1 if arg.ctype == "int" else np.zeros(1)
    with pytest.raises(ModelError) as caught:
        kernels.launch(kernel, "float64", 1, sources)
    message = str(caught.value)
    assert "\n" not in message and "undefined_function" in message and "--backend numpy" in message


SECOND_RUN = """
import sympy as sp
from symgrad import NeuronModel, spike
from symgrad.runtime import Network, eprop
from helpers import batch

v, a, I, alpha = sp.symbols("v a I alpha")
model = NeuronModel("cached_twice", {v: 0.0, a: 0.0}, {alpha: 0.9},
                    {v: alpha * v + I - spike(v - 1), a: 0.95 * a + spike(v - 1)}, spike(v - 1 - 0.2 * a))
net = Network(model, 6, 5, 4, kappa=0.8, backend="numba")
x, labels = batch()
eprop(net, x, labels)
stats = [f.stats for f in net.layers[0].code.kernels.functions.values()]
print(sum(len(s.cache_misses) for s in stats), sum(len(s.cache_hits) for s in stats))
"""


def test_a_second_run_compiles_nothing(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, SYMGRAD_CACHE=str(tmp_path), PYTHONPATH=str(Path(__file__).parent))
    runs = [subprocess.run([sys.executable, "-c", SECOND_RUN], env=env, capture_output=True, text=True)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (first_misses, _), (second_misses, second_hits) = (map(int, r.stdout.split()) for r in runs)
    assert first_misses > 0 and second_misses == 0 and second_hits > 0
    assert list(tmp_path.rglob("*.nbi")), "the compiled kernels are cached beside the generated module"


def test_without_numba_the_numpy_backend_runs_and_says_so(monkeypatch, capsys):
    from symgrad.runtime import backends

    monkeypatch.setitem(__import__("sys").modules, "numba", None)  # import numba now fails
    monkeypatch.setattr(backends, "_FELL_BACK", set())
    net = network("lif", backend="numba")
    assert net.backend == "numpy"
    net2 = network("alif", backend="numba")
    assert net2.backend == "numpy"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Numba is not usable" in err and "NumPy backend" in err


def test_the_fused_backend_is_the_default_where_numba_is_installed():
    from symgrad.cli import build_parser
    from symgrad.runtime import backends
    from symgrad.runtime.trainer import Config

    assert backends.DEFAULT == "numba" and Config().backend == "numba"
    grads = build_parser().parse_args(["grads", "lif", "--inputs", "a.npz", "--out", "b.npz"])
    assert grads.backend == "numba"


# -- event-driven rows: skipped at rest, exactly ---------------------------------------------
def rest_record(name, x, monkeypatch, **kwargs):
    """For each step, which (sample, neuron) rows are at rest (every entry the synapse step reads
    holds its resting value), recorded from the fused layer's own neuron step."""
    net = network(name, backend="numba", **kwargs)
    code = net.layers[0].code
    kernel = code.kernels.kernels["synapse_events"]
    decays = code.fixed_entries(net.neuron_params(net.layers[0]))["decay"]
    of = {arg.name: arg.of for arg in kernel.args if arg.role == "decay"}  # the decay of each trace
    seen, step = [], code.neuron_step

    def recording(s, I, p):
        new, z, J = step(s, I, p)
        rest = np.ones(z.shape, bool)
        for entry, value in kernel.rests:
            rest &= J[entry] == (0.0 if value == "0" else float(decays[of[value]]))
        seen.append(rest)
        return new, z, J

    monkeypatch.setattr(code, "neuron_step", recording)
    return net, seen


@pytest.mark.parametrize("loss, kappa", [("ce", 0.8), ("ce", 0.0), ("ce_mean", 0.9), ("ce_last", 0.9),
                                         ("mse", 0.5)])
@pytest.mark.parametrize("name", ["lif", "alif", "sigma_delta"])
def test_skipping_rows_at_rest_is_exact(name, loss, kappa, monkeypatch):
    rng = np.random.default_rng(5)
    x = (rng.random((40, 3, 6)) < 0.3).astype(float)
    x[8:30] = 0.0  # a long silence: rows rest, then wake
    target = rng.standard_normal((40, 3, 4)) if loss == "mse" else rng.integers(0, 4, 3)
    reg = 0.3 if loss == "mse" else 0.0
    kwargs = dict(kappa=kappa, recurrent=True, hidden=8)
    net, seen = rest_record(name, x, monkeypatch, **kwargs)
    skipping = eprop(net, x, target, loss=loss, reg=reg)
    rest = np.array(seen)  # (T, B, N), before other networks share the layer's code
    dense = eprop(network(name, backend="numba", events=False, **kwargs), x, target, loss=loss, reg=reg)
    reference = eprop(network(name, **kwargs), x, target, loss=loss, reg=reg)
    assert skipping.spikes[0] > 0 and 0.2 < rest.mean() < 0.98, rest.mean()
    assert rest.all(axis=0).any(), "some row should rest the whole sequence"
    woke = [rest[t - 10:t].all(axis=0) & ~rest[t] for t in range(10, len(rest))]
    assert np.any(woke), "some row should wake after ten or more steps at rest"
    for key in dense.grads:
        assert relative_error(skipping.grads[key], dense.grads[key]) <= EXACT, key
        assert relative_error(skipping.grads[key], reference.grads[key]) <= EXACT, key
    assert skipping.loss == pytest.approx(reference.loss, rel=EXACT)


def test_skipping_rows_is_exact_with_online_updates_and_two_layers():
    x, labels = batch(steps=30)
    x[10:22] = 0.0
    for kwargs, options in ((dict(kappa=0.8), dict(update_every=7)), (dict(kappa=0.7, hidden=(8, 6)), {})):
        applied = {True: [], False: []}
        for events in (True, False):
            net = network("alif", backend="numba", events=events, **kwargs)
            apply = (lambda grads, events=events: applied[events].append({k: v.copy() for k, v in grads.items()}))
            result = eprop(net, x, labels, apply=apply if options else None, **options)
            applied[events].append(result.grads)
        for got, expected in zip(*applied.values()):
            for key in expected:
                assert relative_error(got[key], expected[key]) <= EXACT, key


def test_a_pass_takes_the_same_path_whatever_the_passes_before_it(monkeypatch):
    """The event policy is decided per step from that step's activity, never from an earlier
    pass: a pass after a busy one equals, bit for bit, the same pass on a fresh network (a run
    resumed from a checkpoint). Was: the next pass chose skipping or the dense step from the
    last pass's activity, so these differed in the last bits."""
    import sympy as sp

    from symgrad import NeuronModel, spike, stop_gradient, surrogates
    from symgrad.runtime.eprop import EVENTS_CROSSOVER

    v, I, a = sp.symbols("v I a")
    z = spike(v - 1 - 0.5 * a, surrogates.triangle(0.3, 2.0))  # wide: most rows active near rest
    model = NeuronModel("wide_alif", {v: 0.0, a: 0.0}, {}, {v: 0.8 * v + I - stop_gradient(z), a: 0.9 * a + z}, z)

    def run(x, net=None, seen=None):
        if net is None:
            net = network("wide_alif", model=model, backend="numba", kappa=0.9)
            net.params["W_in"] *= 5.0
        if seen is not None:
            port = net.layers[0].code.ports["I"]
            measure = port.active_fraction
            monkeypatch.setattr(port, "active_fraction", lambda J, K: seen.append(measure(J, K)) or seen[-1])
        return net, eprop(net, x, labels)

    spikes, labels = batch(steps=30, rate=0.9)
    busy, quiet = [], []
    net, _ = run(0.02 * spikes, seen=busy)  # near rest: nearly every row active, the dense step
    assert np.mean(busy) > EVENTS_CROSSOVER, "the first pass should be busy enough for the dense step"
    _, after = run(spikes, net, seen=quiet)
    assert after.spikes[0] > 0 and min(quiet) < EVENTS_CROSSOVER, "the second pass should skip rows at rest"
    _, fresh = run(spikes)
    for key, value in fresh.grads.items():
        np.testing.assert_array_equal(after.grads[key], value, err_msg=key)
