import os

import pytest

# Generated code rendered for tests lands in a throwaway cache, never in the user's home.
@pytest.fixture(autouse=True, scope="session")
def _symgrad_cache(tmp_path_factory):
    os.environ["SYMGRAD_CACHE"] = str(tmp_path_factory.mktemp("symgrad-cache"))
