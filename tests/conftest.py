"""Shared test set-up.

* Every test run writes its run store and result tables under a temporary folder: the notebooks
  (nbval) and the library resolve relative ``runs/`` and ``book/generated/results`` there through
  ``$CLIPMEM_OUTPUT_DIR``, so a test never touches the user's own ``runs/`` or built book.
* ``slow`` marks the tests that train models or run notebooks; ``make test-fast`` skips them.
* The small built-in datasets several test files use are built once per session.
"""
import functools
import os
import shutil
import tempfile

import pytest
import torch

from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.store import OUTPUT_ENV

_OUTPUT = tempfile.mkdtemp(prefix="clipmem-tests-")


def pytest_configure(config):
    os.environ[OUTPUT_ENV] = _OUTPUT  # before any kernel starts: nbval's kernels inherit it


def pytest_unconfigure(config):
    shutil.rmtree(_OUTPUT, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:  # nbval's notebook cells run whole chapters
        if item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid:
            item.add_marker(pytest.mark.slow)


@functools.lru_cache(maxsize=None)
def _scenes(n: int, seed: int = 0, n_variants: int = 1, **kw):
    return make_scenes(SceneConfig(n=n, seed=seed, n_variants=n_variants, **kw))


@pytest.fixture(scope="session")
def scenes_of():
    """``scenes_of(n, seed=0, n_variants=1, **SceneConfig fields)``: a built-in dataset, built once per session."""
    return _scenes


@pytest.fixture(scope="session")
def scenes_140(scenes_of):
    return scenes_of(140, seed=2)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test that trains tiny models: on a shared 2-core machine torch's waiting
    threads slowed one such training from about 5 s to 150 s."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
