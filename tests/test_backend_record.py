"""The runtime backends' records (symgrad/runtime/backends.py): one table says what each backend
runs, how its layer loads and what it can do, and nothing else in symgrad/ asks a backend's name.

* every backend loads a model, and what its layer does is what its record says;
* a backend added as one record is loaded, threaded and fallen back from through the record alone;
* the generator's default target is asked, not named;
* no module under symgrad/ but the registry compares a backend's name with a string literal.
"""
import ast
import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from symgrad import models, render
from symgrad.printers import DEFAULT, TARGETS
from symgrad.runtime import backends, compiled, eprop
from symgrad.runtime.parallel import FusedThreads, Sharded, gradient_pass
from helpers import batch, network, relative_error
from test_cuda import host, needs_gpu

REGISTRY = Path(backends.__file__).resolve()
SYMGRAD = REGISTRY.parent.parent
NAMES = set(backends.BACKENDS) | set(TARGETS) | {b.arrays for b in backends.BACKENDS.values()}


def _runnable(record: backends.Backend):
    if record.device:
        return pytest.param(record.name, marks=needs_gpu)
    if record.needs and importlib.util.find_spec(record.needs) is None:
        return pytest.param(record.name, marks=pytest.mark.skip(reason=f"{record.needs} is not installed"))
    return record.name


# -- every backend does what its record says -----------------------------------------------------
@pytest.mark.parametrize("name", [_runnable(b) for b in backends.BACKENDS.values()])
def test_each_backend_loads_a_model_and_does_what_its_record_says(name):
    record = backends.get(name)
    code = compiled.load(models.builtin("alif"), name)  # ALIF has rows at rest
    ports = list(code.ports.values())
    assert [port.fused for port in ports] == [record.fused] * len(ports)
    assert [port.events for port in ports] == [record.events] * len(ports)
    launched = code.kernels.kernels if record.fused else {}  # what its kernels' source defines
    assert any(kernel.startswith("synapse_events") for kernel in launched) == record.events

    net = network("alif", backend=name, recurrent=True, hidden=8)
    assert net.backend == name
    assert net.xp.__name__ == record.arrays and (net.xp is not np) == record.device
    run = gradient_pass(net, 2, shard=True)
    assert isinstance(run, FusedThreads if record.threads else Sharded)
    x, labels = batch(steps=20, size=4)
    got = run(eprop, net, x, net.xp.asarray(labels))
    expected = eprop(network("alif", backend="numpy", recurrent=True, hidden=8), x, labels)
    assert expected.spikes[0] > 0, "the network is silent: this proves nothing"
    for key, value in expected.grads.items():
        assert relative_error(host(got.grads[key]), value) <= 1e-12, key


def test_the_default_is_the_first_installed_backend():
    first = next(b for b in backends.BACKENDS.values() if b.needs is None or importlib.util.find_spec(b.needs))
    assert backends.DEFAULT == first.name and not backends.get(backends.DEFAULT).device


# -- a backend is one record ---------------------------------------------------------------------
LOADS, THREADS = [], []


def spy_layer(code, reference, backend):
    LOADS.append((code.model.name, backend.name))
    return SimpleNamespace(code=code, reference=reference, backend=backend)


def spy_threads(count):
    THREADS.append(count)


def spy(**fields) -> backends.Backend:
    return backends.Backend("spy", "Spy", "a backend that records what is asked of it", TARGETS["numpy"],
                            f"{__name__}:spy_layer", **fields)


def test_a_backend_loads_through_its_records_loader(monkeypatch):
    record = spy()
    monkeypatch.setitem(backends.BACKENDS, "spy", record)
    LOADS.clear()
    layer = compiled.load(models.builtin("lif"), "spy")
    assert LOADS == [("lif", "spy")] and layer.backend is record
    assert layer.code is compiled.generated(models.builtin("lif"))
    assert layer.reference is compiled.module(layer.code, DEFAULT), "the reference module"
    assert layer.reference.__file__.endswith(TARGETS[DEFAULT].filename)


def test_a_backend_whose_kernels_thread_themselves_is_given_the_threads(monkeypatch):
    """Its threads where a step has work to share (parallel.SHARED_FROM synapse-samples), else one."""
    import numpy as np

    from symgrad.runtime.parallel import SHARED_FROM

    monkeypatch.setitem(backends.BACKENDS, "spy", spy(threads=f"{__name__}:spy_threads"))
    THREADS.clear()
    dense = SimpleNamespace(synapses=SimpleNamespace(count=None), n_pre=100)
    net = SimpleNamespace(backend="spy", layers=[SimpleNamespace(n=100, ports=[dense])])
    batch = -(-SHARED_FROM // (100 * 100))  # the fewest samples that reach it
    x, few = np.zeros((2, batch, 100)), np.zeros((2, batch - 1, 100))
    run = gradient_pass(net, 3, shard=True)
    assert run(lambda net, x, target: "ran", net, x, None) == "ran"
    run(lambda net, x, target: None, net, few, None)
    gradient_pass(net, 3, shard=False)(lambda net, x, target: None, net, x, None)
    assert THREADS == [3, 1, 1]
    monkeypatch.setitem(backends.BACKENDS, "spy", spy(device=True))
    assert isinstance(gradient_pass(SimpleNamespace(backend="spy"), 3, shard=True), Sharded)
    from symgrad.runtime.parallel import default_workers

    assert default_workers("spy") == 1


def test_a_backend_falls_back_as_its_record_says(monkeypatch, capsys):
    monkeypatch.setitem(backends.BACKENDS, "spy", spy(needs="symgrad_no_such_module", fallback="numpy"))
    monkeypatch.setattr(backends, "_FELL_BACK", set())
    assert backends.resolve("spy") == "numpy"
    assert network("lif", backend="spy").backend == "numpy"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "symgrad: Spy is not usable (ModuleNotFoundError" in err
    assert "running the NumPy backend" in err
    with pytest.raises(ValueError, match="needs and fallback together"):
        spy(needs="symgrad_no_such_module")


def test_loading_a_backend_imports_only_what_it_needs(tmp_path):
    """Numba and CuPy are imported by their backends' loaders, never by the registry."""
    script = ("import sys\n"
              "from symgrad import cli, models\n"
              "from symgrad.runtime import backends, compiled, trainer\n"
              "compiled.load(models.builtin('lif'), 'numpy')\n"
              "assert all(b.loader and b.target for b in backends.BACKENDS.values())\n"
              "print(sorted(m for m in ('numba', 'cupy', 'symgrad.runtime.numba_layer') if m in sys.modules))\n")
    env = dict(os.environ, SYMGRAD_CACHE=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the generator's default target --------------------------------------------------------------
def test_the_default_target_is_asked_not_named(monkeypatch):
    lif = models.builtin("lif")
    assert render.regenerate(lif, "numpy") == "`symgrad generate lif`"
    assert render.regenerate(lif, "cuda") == "`symgrad generate lif --backend cuda`"
    monkeypatch.setitem(TARGETS, "numpy", dataclasses.replace(TARGETS["numpy"], default=False))
    monkeypatch.setitem(TARGETS, "cuda", dataclasses.replace(TARGETS["cuda"], default=True))
    assert render.regenerate(lif, "cuda") == "`symgrad generate lif`"
    assert render.regenerate(lif, "numpy") == "`symgrad generate lif --backend numpy`"


# -- nobody else asks a backend's name -----------------------------------------------------------
def name_tests(source: str) -> list[str]:
    """Where ``source`` compares a backend's name with a string literal, or keys a table by one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [key for key in node.keys if key is not None]
        else:
            continue
        for operand in operands:
            values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            named = [v.value for v in values if isinstance(v, ast.Constant) and v.value in NAMES]
            if named:
                found.append(f"line {node.lineno}: {', '.join(map(repr, named))}")
    return found


def test_the_scan_finds_a_backends_name_where_it_is_asked():
    assert name_tests('if net.backend == "numba":\n    pass')
    assert name_tests('gpu = backends.get(name).arrays in ("cupy",)')
    assert name_tests('LAUNCHERS = {"cuda-host": HostKernels}')
    assert not name_tests('def load(model, backend="numpy"):\n    return backends.get(backend).device')
    assert not name_tests('parser.add_argument("--backend", default="numba")')


def test_no_module_but_the_registry_asks_a_backends_name():
    found = {str(path.relative_to(SYMGRAD.parent)): name_tests(path.read_text())
             for path in sorted(SYMGRAD.rglob("*.py")) if path.resolve() != REGISTRY}
    assert {path: lines for path, lines in found.items() if lines} == {}
