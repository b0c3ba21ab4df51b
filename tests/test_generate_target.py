"""symgrad generate never overwrites a built-in's generated code with a user model named like it,
wherever that code lies (another checkout's generated/, a copy), and still regenerates the built-in."""
import shutil

import pytest

from symgrad import models, render
from symgrad.store import repository_generated

MINE = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient, surrogates

v, I, tau = sp.symbols("v I tau")
z = spike(v - 1, surrogate=surrogates.fast_sigmoid())
model = NeuronModel(name="lif", states={v: 0.0}, params={tau: 0.9},
                    update={v: tau * v + I - stop_gradient(z)}, output=z)
"""
BACKENDS = ("numpy", "cuda", "numba")


def contents(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("kept", ["numpy_layer.py", "cuda_layer.cu", None])
def test_a_user_model_named_like_a_built_in_never_overwrites_its_generated_code(symgrad, tmp_path, kept):
    """A copy of the built-in's committed folder (all its files, or one), as in another checkout."""
    out = tmp_path / "generated"
    shutil.copytree(repository_generated() / "lif", out / "lif", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (out / "lif").iterdir():
        if kept and path.name != kept:
            path.unlink()
    (tmp_path / "mine.py").write_text(MINE)
    before = contents(tmp_path)
    refused = symgrad("generate", "mine.py", "--out", out, "--backend", *BACKENDS)
    assert refused.code == 1, refused.out
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1, refused.err
    assert str(out / "lif") in refused.err and "another --out" in refused.err and "rename" in refused.err
    assert refused.out == "" and contents(tmp_path) == before  # nothing written

    regenerated = symgrad("generate", "lif", "--out", out, "--backend", *BACKENDS)
    assert regenerated.code == 0, regenerated.err
    for backend, (_, filename) in render.BACKENDS.items():
        assert (out / "lif" / filename).read_text() == render.render(models.builtin("lif"), backend)

    for _ in range(2):  # only a built-in's code is kept: the user's own model is written again
        mine = symgrad("generate", "mine.py", "--out", "mine", "--backend", *BACKENDS)
        assert mine.code == 0, mine.err
    assert "tau*v" in (tmp_path / "mine" / "lif" / "numpy_layer.py").read_text().replace(" ", "")
