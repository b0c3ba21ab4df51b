"""The code cache runs nothing symgrad did not write, and heals itself.

* a Numba index (.nbi) or data (.nbc) file replaced by a pickle that runs code, or truncated,
  is never unpickled: it is dropped with one warning naming it and compiled again;
* a .pyc planted beside a generated module is never run;
* a cuda-host layer.so replaced by another library is never loaded: it is rebuilt;
* a Numba cache that cannot be written (a full disk) costs one warning, not the run;
* cache folders are made private, and one others can write to is refused in one line, unless
  SYMGRAD_CACHE_SHARED=1.

Each "run" loads the generated modules anew, as a new process would (in this process, so a
kernel compiles only where its cache entry was dropped).
"""
import errno
import importlib.util
import marshal
import os
import pickle
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symgrad import NeuronModel, cli, models, spike
from symgrad.errors import UserError
from symgrad.runtime import compiled, cuda, eprop
from symgrad.runtime.cuda import build, layer
from helpers import assert_active, batch, network, relative_error

numba = pytest.importorskip("numba")


def tiny_model() -> NeuronModel:
    v, a, I, alpha = sp.symbols("v a I alpha")
    return NeuronModel("cache_integrity", {v: 0.0, a: 0.0}, {alpha: 0.9},
                       {v: alpha * v + I - spike(v - 1), a: 0.95 * a + spike(v - 1)}, spike(v - 1 - 0.2 * a))


def run(monkeypatch, backend="numba"):
    """One e-prop step of the tiny model, its generated modules loaded anew; with the compiled
    kernels' cache misses and hits (Numba's count) and the warnings about the cache."""
    monkeypatch.setattr(compiled, "_LOADED", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = network("cache_integrity", model=tiny_model(), kappa=0.8, backend=backend)
        result = eprop(net, *batch())
    assert_active(result, net)
    stats = [f.stats for f in net.layers[0].code.kernels.functions.values()]
    misses = sum(sum(s.cache_misses.values()) for s in stats)
    hits = sum(sum(s.cache_hits.values()) for s in stats)
    return result, misses, hits, [str(w.message) for w in caught if "cache" in str(w.message)]


def same_result(a, b):
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    for key in b.grads:
        assert relative_error(a.grads[key], b.grads[key]) <= 1e-12, key


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory):
    """A cache folder holding the tiny model's compiled kernels, and the result of the run
    that filled it; each test works on a copy."""
    root = tmp_path_factory.mktemp("filled")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMGRAD_CACHE", str(root))
        result, misses, _, said = run(patch)
    assert misses > 0 and said == []
    return root, result


@pytest.fixture
def cache(filled_cache, tmp_path, monkeypatch):
    """A copy of the filled cache, made this test's cache; and the run that filled it."""
    root, result = filled_cache
    copy = shutil.copytree(root, tmp_path / "cache")
    monkeypatch.setenv("SYMGRAD_CACHE", str(copy))
    return copy, result


class Runs:
    """Unpickling it runs ``code``: what a planted pickle can do."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


# -- Numba's index and data files --------------------------------------------------------------
@pytest.mark.parametrize("damage", ["replaced by a pickle that runs code", "truncated"])
@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_a_numba_cache_file_not_as_written_is_dropped_and_compiled_again(cache, tmp_path, monkeypatch,
                                                                         suffix, damage):
    root, first = cache
    target = next(root.rglob(f"numba_layer.neuron_step-*{suffix}"))
    marker = tmp_path / "ran"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:  # an index starts with Numba's version, so Numba reads on into the payload
        payload = pickle.dumps(Runs(touch(marker)))
        target.write_bytes(pickle.dumps(numba.__version__) + payload if suffix == ".nbi" else payload)

    result, misses, _, said = run(monkeypatch)
    assert not marker.exists(), "the planted pickle ran"
    assert len(said) == 1 and str(target) in said[0], said
    assert misses == 1, "only the dropped kernel compiles again"
    same_result(result, first)

    healed, misses, hits, said = run(monkeypatch)
    assert said == [] and misses == 0 and hits > 0
    same_result(healed, first)


def test_a_numba_cache_that_cannot_be_written_warns_once_and_compiles_in_memory(cache, monkeypatch):
    root, first = cache
    for compiled_file in [p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")]:
        compiled_file.unlink()  # nothing compiled yet
    replace = os.replace

    def full_disk(source, destination, *args, **kwargs):
        if str(destination).endswith((".nbi", ".nbc")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return replace(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    result, misses, _, said = run(monkeypatch)
    assert misses > 0
    assert len(said) == 1 and "No space left on device" in said[0] and str(root / "numba") in said[0], said
    same_result(result, first)
    assert not [p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")]


# -- generated modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_pyc_planted_beside_a_generated_module_is_never_run(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compiled, "_LOADED", {})
    compiled.load(tiny_model(), backend)
    path = next((tmp_path / "cache" / "generated").rglob(f"{backend}_layer.py"))
    marker = tmp_path / "ran"
    code = compile(touch(marker) + "\n" + path.read_text(), str(path), "exec")
    info = path.stat()
    header = b"".join(n.to_bytes(4, "little") for n in (0, int(info.st_mtime), info.st_size))
    pyc = Path(importlib.util.cache_from_source(str(path)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + header + marshal.dumps(code))

    monkeypatch.setattr(compiled, "_LOADED", {})
    compiled.load(tiny_model(), backend)
    assert not marker.exists(), "the planted .pyc ran"


# -- the cuda-host library -----------------------------------------------------------------------
def test_a_replaced_host_library_is_never_loaded(tmp_path, monkeypatch):
    try:
        compiler = build.host_compiler()
    except RuntimeError as err:
        pytest.skip(str(err))
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(layer, "_LAYERS", {})
    code = compiled.generated(models.builtin("lif"))
    library = cuda.build_host_library(cuda.source_file(code.model, code.texts["cuda"]),
                                      {k.name: k for k in code.kernels if not k.cpu_only})
    marker = tmp_path / "ran"
    source = tmp_path / "planted.c"
    source.write_text('#include <stdio.h>\n'
                      f'__attribute__((constructor)) static void planted(void) {{ fclose(fopen("{marker}", "w")); }}\n')
    subprocess.run(compiler + ["-shared", "-fPIC", "-o", str(library), str(source)], check=True)

    with pytest.warns(UserWarning, match=re.escape(str(library))):
        result = eprop(network("lif", backend="cuda-host"), *batch())
    assert not marker.exists(), "the planted library was loaded"
    same_result(result, eprop(network("lif", backend="numpy"), *batch()))


# -- who may write the cache ---------------------------------------------------------------------
def test_cache_folders_are_made_private(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SYMGRAD_CACHE", str(root))
    monkeypatch.setattr(compiled, "_LOADED", {})
    compiled.load(tiny_model(), "numba")
    # Numba makes a __pycache__ beside the module it compiles from, and symgrad leaves it empty
    made = [root, *(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")]
    assert {oct(p.stat().st_mode & 0o777) for p in made} == {oct(0o700)}
    assert {root / "generated", root / "numba"} < set(made)
    assert not [p for p in root.rglob("__pycache__/*")]


@pytest.mark.parametrize("level, how", [("", 0o777), ("numba", 0o770), ("numba", "another user's")])
def test_a_cache_folder_others_can_write_to_is_refused_unless_shared(tmp_path, monkeypatch, level, how):
    root = tmp_path / "cache"
    folder = root / level
    folder.mkdir(parents=True, mode=0o700)
    if how == "another user's":
        if os.getuid() != 0:
            pytest.skip("only root can give a folder to another user")
        os.chown(folder, 54321, -1)
    else:
        folder.chmod(how)
    monkeypatch.setenv("SYMGRAD_CACHE", str(root))
    monkeypatch.setattr(compiled, "_LOADED", {})
    with pytest.raises(UserError) as refused:
        compiled.load(models.builtin("alif"), "numba")
    message = str(refused.value)
    assert "\n" not in message and f"cache folder {folder} is" in message and "SYMGRAD_CACHE_SHARED=1" in message

    monkeypatch.setenv("SYMGRAD_CACHE_SHARED", "1")
    compiled.load(models.builtin("alif"), "numba")  # trusted on request


def test_the_command_line_refuses_a_shared_cache_in_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    monkeypatch.setenv("SYMGRAD_CACHE", str(root))
    monkeypatch.setattr(compiled, "_LOADED", {})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", x=(rng.random((10, 2, 6)) < 0.3).astype(float), labels=np.array([0, 1]),
             W_in=rng.standard_normal((5, 6)), W_out=rng.standard_normal((4, 5)), b_out=np.zeros(4),
             kappa=np.array(0.7))
    code = cli.main(["grads", "alif", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"),
                     "--backend", "numba"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"symgrad: error: the cache folder {root} is writable by others")
    assert err.count("\n") == 1 and not (tmp_path / "out.npz").exists()
