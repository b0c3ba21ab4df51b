"""The command line: inspect, generate and grads, and their errors (one line, no traceback)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from symgrad import models
from symgrad.runtime import Network, bptt, eprop
from helpers import relative_error


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "symgrad.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_and_version():
    assert run("--help").returncode == 0
    assert "grads" in run("--help").stdout
    assert run("--version").stdout.startswith("symgrad ")
    bad = run("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    for flag, value in (("--hidden", "0"), ("--batch", "-4"), ("--workers", "two"), ("--epochs", "0")):
        bad = run("train", "alif", flag, value)
        assert bad.returncode == 2 and f"argument {flag}" in bad.stderr, (flag, bad.stderr)
        assert "Traceback" not in bad.stderr


def test_the_installed_command_runs_the_cli():
    """The ``symgrad`` script pip installs (pyproject's [project.scripts]) beside this Python."""
    from pathlib import Path

    script = Path(sys.executable).parent / "symgrad"
    if not script.exists():
        pytest.skip(f"no symgrad script beside {sys.executable}: the project is not installed here")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("symgrad "), done.stderr


def test_inspect_json_has_exactly_the_contract_shape():
    out = run("inspect", "alif", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data) == ["model", "states", "params", "update", "output", "jacobian", "plan"]
    assert data["model"] == "alif"
    assert data["states"] == ["v", "a"]
    assert data["params"] == {"alpha": 0.95, "rho": 0.995, "beta": 1.8, "v_th": 0.6}
    assert data["jacobian"] == {"D": [["constant", "zero"], ["dynamic", "dynamic"]],
                                "c": ["constant", "zero"], "h": ["dynamic", "dynamic"]}
    assert data["plan"] == {"v": "presynaptic", "a": "per-synapse"}
    assert data["update"]["a"] == "a*rho + spike(-a*beta + v - v_th)"
    assert json.loads(run("inspect", "lif", "--json").stdout)["plan"] == {"v": "presynaptic"}


def test_inspect_text_shows_equations_classes_plan_and_memory():
    out = run("inspect", "alif", "--batch", "8", "--hidden", "100", "--inputs", "20")
    assert out.returncode == 0
    for needle in ("v_t = ", "D[a,v]  dynamic", "eps_a: per-synapse", "trace memory", "MiB"):
        assert needle in out.stdout


MODEL_FILE = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient, surrogates

v, I = sp.symbols("v I")
tau = sp.Symbol("tau")
z = spike(v - 1, surrogate=surrogates.fast_sigmoid())
{name} = NeuronModel(name="mine", states={{v: 0.0}}, params={{tau: 0.9}},
                     update={{v: tau * v + I - stop_gradient(z)}}, output=z)
"""


def test_inspect_a_user_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(MODEL_FILE.format(name="model"))
    out = run("inspect", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["plan"] == {"v": "presynaptic"}
    both = tmp_path / "both.py"
    both.write_text(MODEL_FILE.format(name="first") + MODEL_FILE.format(name="second"))
    assert run("inspect", f"{both}:second", "--json").returncode == 0
    many = run("inspect", str(both))
    assert many.returncode == 1 and "several models" in many.stderr


USER_ERRORS = {
    "no model": ("x = 1\n", "defines no NeuronModel"),
    "undeclared": (MODEL_FILE.format(name="m").replace("tau * v", "tau * v * sp.Symbol('w')"), "undeclared symbol"),
    "syntax": ("def (:\n", "syntax error"),
    "heaviside": (MODEL_FILE.format(name="m").replace("+ I", "+ sp.Heaviside(I)"), "non-differentiable Heaviside"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_bad_model_files_get_one_line_and_exit_1(tmp_path, case):
    source, message = USER_ERRORS[case]
    path = tmp_path / "bad.py"
    path.write_text(source)
    out = run("inspect", str(path))
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unknown_model_and_missing_file():
    out = run("inspect", "nosuch")
    assert out.returncode == 1 and "unknown model 'nosuch'" in out.stderr
    out = run("inspect", "missing.py")
    assert out.returncode == 1 and "does not exist" in out.stderr


def write_inputs(path, recurrent, seed=0, **extra):
    rng = np.random.default_rng(seed)
    T, B, M, N, K = 20, 3, 6, 5, 4
    arrays = dict(x=(rng.random((T, B, M)) < 0.3).astype(float), labels=rng.integers(0, K, B),
                  W_in=rng.standard_normal((N, M)), W_out=rng.standard_normal((K, N)),
                  b_out=rng.standard_normal(K), kappa=np.array(0.7))
    if recurrent:
        arrays["W_rec"] = rng.standard_normal((N, N)) * 0.3
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("rule", ["eprop", "bptt"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_grads_contract(tmp_path, rule, recurrent):
    given = write_inputs(tmp_path / "in.npz", recurrent, param_v_th=np.array(0.5))
    out = run("grads", "alif", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"),
              "--rule", rule, "--dtype", "float64")
    assert out.returncode == 0, out.stderr
    result = np.load(tmp_path / "out.npz")
    expected = {"loss", "W_in", "W_out", "b_out"} | ({"W_rec"} if recurrent else set())
    assert set(result.files) == expected
    for key in expected - {"loss"}:
        assert result[key].shape == given[key].shape
    # the same network through the Python API, built independently of the CLI
    model = models.builtin("alif").with_params(v_th=0.5)
    net = Network(model, 6, 5, 4, recurrent=recurrent, kappa=0.7, dtype="float64")
    net.set_params({k: given[k] for k in expected - {"loss"}})
    reference = (eprop if rule == "eprop" else bptt)(net, given["x"], given["labels"])
    assert float(result["loss"]) == pytest.approx(reference.loss, rel=1e-12)
    for key in expected - {"loss"}:
        assert relative_error(result[key], reference.grads[key]) < 1e-12


def test_grads_bad_inputs_name_the_file_and_array(tmp_path):
    path = tmp_path / "in.npz"
    write_inputs(path, False)
    data = dict(np.load(path))
    cases = {
        "missing": ({k: v for k, v in data.items() if k != "W_out"}, "missing array 'W_out'"),
        "shape": ({**data, "W_in": data["W_in"][:, :3]}, "W_in has shape (5, 3), expected (5, 6)"),
        "labels": ({**data, "labels": np.array([0, 9, 1])}, "labels must be integers in [0, 4)"),
        "param": ({**data, "param_gamma": np.array(1.0)}, "param_gamma names no parameter"),
        "shared": ({**data, "param_alpha": np.ones(5)}, "alpha is shared: give a scalar"),
        "nan": ({**data, "W_in": data["W_in"] * np.nan}, "W_in must hold finite numbers"),
    }
    for case, (arrays, message) in cases.items():
        bad = tmp_path / f"{case}.npz"
        np.savez(bad, **arrays)
        out = run("grads", "alif", "--inputs", str(bad), "--out", str(tmp_path / "o.npz"))
        assert out.returncode == 1, case
        assert message in out.stderr and str(bad) in out.stderr, (case, out.stderr)
        assert "Traceback" not in out.stderr
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    out = run("grads", "lif", "--inputs", str(corrupt), "--out", str(tmp_path / "o.npz"))
    assert out.returncode == 1 and "not an .npz archive" in out.stderr
    assert not (tmp_path / "o.npz").exists()


def test_generate_writes_files(tmp_path):
    out = run("generate", "lif", "--out", str(tmp_path))
    assert out.returncode == 0
    assert (tmp_path / "lif" / "numpy_layer.py").is_file()
    assert run("generate", "--out", str(tmp_path)).returncode == 1


def test_generate_refuses_to_overwrite_a_built_in_in_the_repository(tmp_path):
    """A user model named like a built-in must not replace the built-in's committed code."""
    from symgrad.store import repository_generated

    committed = repository_generated()
    path = tmp_path / "mine.py"
    path.write_text(MODEL_FILE.format(name="model").replace('name="mine"', 'name="lif"'))
    saved = {f: f.read_bytes() for f in (committed / "lif").iterdir() if f.is_file()}
    try:
        for out_args, cwd in (([ "--out", str(committed)], tmp_path), ([], committed.parent)):
            out = run("generate", str(path), *out_args, cwd=cwd)
            assert out.returncode == 1, out.stdout
            assert "defines a model named 'lif', like the built-in model" in out.stderr
            assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
            assert all(f.read_bytes() == content for f, content in saved.items())
    finally:  # never leave the repository modified, whatever failed above
        for f, content in saved.items():
            if f.read_bytes() != content:
                f.write_bytes(content)
    elsewhere = run("generate", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "tau*v" in (tmp_path / "out" / "lif" / "numpy_layer.py").read_text().replace(" ", "")
