"""Test-session settings: a private kernel cache, so runs are hermetic."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_kernel_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMFLOW_CACHE", str(tmp_path_factory.mktemp("kernel-cache")))
    yield
    mp.undo()
