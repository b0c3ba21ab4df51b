"""The README's figures come from scripts/readme_figures.py: every claim there must find its one
place in the README, and the README's first command must reproduce the figure the README gives
for it. A change that moves a result then changes the README in the same commit, or fails here."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "readme_figures.py"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("readme_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_every_claim_is_stated_once_in_the_readme(figures):
    text = figures.README.read_text()
    for claim in figures.CLAIMS:
        place = figures.locate(claim, text)
        assert all(place.groups()), claim.name


def test_the_first_command_reproduces_the_readme(figures, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_WHOLE_PASS", "1")  # as users run it (conftest.py runs the Python loop)
    claim = next(c for c in figures.CLAIMS if c.name == "randman_seed0")
    rows, measured = figures.check(claim, figures.README.read_text(), None, tmp_path, {})
    (name, stated, now, verdict), = rows
    assert now == stated, (f"`symgrad train alif` with seed 0 now ends at {now}; the README says {stated}: "
                           f"run scripts/readme_figures.py --update and commit the README with the change")
