"""Generated code: committed, up to date, deterministic, readable, shipped with the package."""
import ast
import re
from pathlib import Path

import pytest

from symgrad import models, render
from symgrad.layouts import LAYOUTS

ROOT = Path(__file__).resolve().parent.parent
MODELS = list(models.BUILTIN)


@pytest.mark.parametrize("name", MODELS)
def test_generated_code_is_committed_and_up_to_date(name):
    wanted = render.files(models.builtin(name), ROOT / "generated", tuple(render.BACKENDS), tuple(LAYOUTS))
    layers = {render.filename(backend, layout) for backend in render.BACKENDS for layout in LAYOUTS.values()}
    assert {path.name for path in wanted} == layers | {"numba_eprop.py", "numba_bptt.py"}
    for committed, text in wanted.items():
        assert committed.is_file(), f"run `symgrad generate --all`: {committed} is missing"
        assert committed.read_text() == text, f"{committed} is stale: run `symgrad generate --all` and commit it"


def test_generation_is_deterministic():
    model = models.builtin("brf")
    assert render.render(model) == render.render(models.builtin("brf"))


@pytest.mark.parametrize("name", MODELS)
def test_generated_module_reads_well(name):
    text = render.render(models.builtin(name))
    tree = ast.parse(text)
    doc = ast.get_docstring(tree)
    assert "Jacobian classes" in doc and "Trace plan" in doc
    for state in models.builtin(name).state_names:
        assert f"{state}_t = " in doc
    # every state update and Jacobian entry line carries the equation it comes from
    for line in text[text.index("def neuron_step"):].splitlines():
        if re.match(r"\s+(\w+_new|D_\w+|h_\w+|q_\w+|z) = ", line):
            assert "  # " in line, line
    # parameters are arguments, not literals
    model = models.builtin(name)
    code = re.sub(r"\w+_psi\([^)]*\)", "", text[text.index("def fixed_entries"):])  # surrogate shapes
    for p, value in model.params.items():
        if value not in (0.0, 1.0):
            assert not re.search(rf"[^\w.]{re.escape(repr(value))}\b", code), (p, value)


def test_no_dead_helpers_and_no_unused_names():
    for name in MODELS:
        text = render.render(models.builtin(name))
        tree = ast.parse(text)
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        entry_points = {"fixed_entries", "neuron_step", "backward_step", "param_gradients"}
        names = render.generate_code(models.builtin(name), backends=()).names
        entry_points |= {names.per_input("input_gain", i) for i in models.builtin(name).input_names}
        for helper in defined - entry_points:
            assert helper in used, f"{name}: helper {helper} is never called"
        for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            assigned = {t.id for node in ast.walk(func) if isinstance(node, ast.Assign)
                        for t in ast.walk(node.targets[0]) if isinstance(t, ast.Name)}
            read = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert assigned <= read, f"{name}.{func.name}: assigned but unused {assigned - read}"


def test_lif_stores_nothing_per_synapse_and_uses_a_matrix_product():
    text = render.render(models.builtin("lif"))
    assert "PER_SYNAPSE = []" in text
    assert "np.matmul((L * J[\"h_v\"]).T, self.eps_v, out=product)" in text
    assert "(batch, n, n_pre)" not in text


def test_templates_ship_inside_the_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert setuptools["package-dir"]["symgrad.templates"] == "templates"
    assert "symgrad.templates" in setuptools["packages"]
    shipped = setuptools["package-data"]["symgrad.templates"]
    for template in (ROOT / "templates").rglob("*.j2"):
        assert any(template.relative_to(ROOT / "templates").match(glob) for glob in shipped), template


def test_wheel_contains_the_templates(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("symgrad-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "symgrad/templates/numpy/layer.py.j2" in names


def test_every_subpackage_ships():
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "symgrad").rglob("__init__.py")}
    assert found <= set(packages), sorted(found - set(packages))
