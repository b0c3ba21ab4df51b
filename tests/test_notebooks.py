"""The worked examples in notebooks/: each runs top to bottom, is committed without outputs,
leaves the repository as it was, and one of them shows the code under generated/.

Every notebook runs in a fresh "python3" kernel with notebooks/ as its working directory and
SYMGRAD_CACHE in a temporary folder, so nothing lands in the home folder.
"""
import hashlib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
GENERATED = ROOT / "generated"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_defining_a_neuron", "02_reading_generated_code", "03_training_online",
            "04_gradient_alignment", "05_speech"]
CELL_TIMEOUT = 300  # seconds per cell
SHOWN_LINES = 10  # consecutive lines of a generated file that count as "displaying" it

_executed = {}  # notebook name -> executed notebook, shared by the tests below


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment of the kernels: a throwaway cache for generated code and converted data."""
    return {"SYMGRAD_CACHE": str(tmp_path_factory.mktemp("notebook-cache"))}


def _snapshot() -> dict:
    """Content hash of every file under notebooks/ and generated/."""
    files = {}
    for folder in (NOTEBOOK_DIR, GENERATED):
        for path in folder.rglob("*"):
            if path.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(path.parts):
                files[path.relative_to(ROOT).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def execute(path: Path, env: dict):
    """Run ``path`` in a fresh kernel; fail on any error or on any file it changes in the repository."""
    notebook = nbformat.read(path, as_version=4)
    before = _snapshot()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        client.execute()  # raises CellExecutionError, with the traceback, on a failing cell
    errors = [f"{output.ename}: {output.evalue}" for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"{path.name}: {errors}"
    after = _snapshot()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"{path.name} changed files in the repository: {changed}"
    return notebook


def output_texts(notebook) -> list[str]:
    """The plain text of every output: streams, and the text/plain of displays and results."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                texts.append(output.data.get("text/plain", ""))
    return texts


def test_all_notebooks_are_there():
    missing = set(EXPECTED) - {path.stem for path in NOTEBOOKS}
    assert not missing, f"missing notebooks: {sorted(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}, cell {index}: clear its outputs before committing"
            assert cell.execution_count is None, f"{path.name}, cell {index}: execution count left in"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, kernel_env):
    _executed[path.name] = execute(path, kernel_env)


def test_a_notebook_displays_source_from_generated(kernel_env):
    files = sorted(path for path in GENERATED.glob("*/*") if path.is_file())
    assert files, f"nothing under {GENERATED}"
    # Windows of consecutive lines of every generated file; one of them shown verbatim is enough.
    windows = set()
    for path in files:
        lines = path.read_text().splitlines()
        windows.update("\n".join(lines[i:i + SHOWN_LINES]) for i in range(len(lines) - SHOWN_LINES + 1))
    candidates = [path for path in NOTEBOOKS if "generated" in path.read_text()]
    for path in candidates:
        notebook = _executed.get(path.name) or execute(path, kernel_env)
        for text in output_texts(notebook):
            lines = text.splitlines()
            if any("\n".join(lines[i:i + SHOWN_LINES]) in windows
                   for i in range(len(lines) - SHOWN_LINES + 1)):
                return
    pytest.fail("no notebook displays the source of a file under generated/")


def test_speech_notebook_runs_without_the_data(tmp_path, kernel_env):
    """Where FSDD is absent the speech notebook says so and trains on a synthetic task instead."""
    env = {**kernel_env, "SYMGRAD_FSDD": str(tmp_path / "no-fsdd-here")}
    notebook = execute(NOTEBOOK_DIR / "05_speech.ipynb", env)
    assert any("FSDD not available" in text for text in output_texts(notebook))
