import os
from types import SimpleNamespace

import pytest

# e-prop's whole pass compiles one Numba driver per network shape and loss (seconds each): the
# suite runs e-prop's Python loop on the Numba kernels, and tests/test_whole_pass.py (with the
# CLI tests that say so) the compiled pass, on the networks it checks against NumPy.
os.environ.setdefault("SYMGRAD_WHOLE_PASS", "0")

# Generated code rendered for tests lands in a throwaway cache, never in the user's home.
@pytest.fixture(autouse=True, scope="session")
def _symgrad_cache(tmp_path_factory):
    os.environ["SYMGRAD_CACHE"] = str(tmp_path_factory.mktemp("symgrad-cache"))


@pytest.fixture
def symgrad(capsys, monkeypatch, tmp_path):
    """The command line, run in this process (fast) in ``tmp_path``: run(*args) gives its exit
    code, stdout and stderr."""
    from symgrad.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse: --help, or a malformed command line
            code = exit.code
        out, err = capsys.readouterr()
        return SimpleNamespace(code=code, out=out, err=err)
    return run
